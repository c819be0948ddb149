/*
 * cache.c -- the page cache and the file system of a stage's input (cache.h).
 */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

void pc_init(pc_stats *s, int cold) {
  memset(s, 0, sizeof *s);
  s->cold = cold;
  atomic_init(&s->files, 0);
  atomic_init(&s->bytes, 0);
  atomic_init(&s->resident_found, 0);
  atomic_init(&s->resident_read, 0);
  atomic_init(&s->unmeasured, 0);
}

/* mincore asks about one window of the mapping at a time, so its vector
 * stays small whatever the file's size. */
#define PC_WINDOW (256ull << 20)

long long pc_resident(int fd, uint64_t size) {
  long pg = sysconf(_SC_PAGESIZE);
  if (pg <= 0) pg = 4096;
  uint64_t ps = (uint64_t)pg, pages_max = PC_WINDOW / ps;
  unsigned char *vec = malloc((size_t)pages_max);
  if (!vec) return -1;
  long long resident = 0;
  for (uint64_t off = 0; off < size; off += PC_WINDOW) {
    uint64_t len = size - off < PC_WINDOW ? size - off : PC_WINDOW;
    void *m = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, (off_t)off);
    if (m == MAP_FAILED) {
      resident = -1;
      break;
    }
    uint64_t pages = (len + ps - 1) / ps;
    int ok = mincore(m, (size_t)len, vec) == 0;
    munmap(m, (size_t)len);
    if (!ok) {
      resident = -1;
      break;
    }
    for (uint64_t i = 0; i < pages; i++)
      if (vec[i] & 1) resident += (long long)(i + 1 < pages ? ps : len - i * ps);
  }
  free(vec);
  return resident;
}

int pc_drop(int fd) {
  /* dirty pages cannot be dropped: write them out first (a file that was
   * just written, as %extract's members are) */
  if (fdatasync(fd) != 0 && errno != EINVAL && errno != EROFS) return -1;
  int e = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (e) {
    errno = e;
    return -1;
  }
  return 0;
}

void pc_prepare(pc_stats *s, int fd, uint64_t size) {
  atomic_fetch_add(&s->files, 1);
  atomic_fetch_add(&s->bytes, size);
  if (size == 0) return;
  long long found = pc_resident(fd, size);
  if (found < 0) {
    atomic_fetch_add(&s->unmeasured, size);
  } else {
    atomic_fetch_add(&s->resident_found, (unsigned long long)found);
    long long now = found;
    if (s->cold && found > 0) {
      pc_drop(fd);
      now = pc_resident(fd, size);
      if (now < 0) now = found;
    }
    atomic_fetch_add(&s->resident_read, (unsigned long long)now);
  }
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
}

void pc_prepare_path(pc_stats *s, const char *path) {
  /* never open anything but a regular file: opening a fifo would let its
   * writer go on, and closing it again would cut the writer off */
  struct stat pre;
  if (stat(path, &pre) != 0 || !S_ISREG(pre.st_mode)) return;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return;
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) pc_prepare(s, fd, (uint64_t)st.st_size);
  close(fd);
}

/* ---- the file system ---------------------------------------------------- */

static const struct {
  unsigned long magic;
  const char *name;
} k_fs[] = {
    {0xEF53, "ext2/3/4"},  {0x58465342, "xfs"},     {0x9123683E, "btrfs"},
    {0x01021994, "tmpfs"}, {0x6969, "nfs"},         {0x65735546, "fuse"},
    {0x794C7630, "overlay"}, {0x2FC12FC1, "zfs"},   {0xFF534D42, "cifs"},
    {0xFE534D42, "smb2"},  {0x00C36400, "ceph"},    {0x0BD00BD0, "lustre"},
    {0x47504653, "gpfs"},  {0x858458F6, "ramfs"},   {0x4D44, "vfat"},
    {0x5346544E, "ntfs"},  {0xF2F52010, "f2fs"},    {0x73717368, "squashfs"},
    {0x9660, "iso9660"},   {0x01021997, "9p"},      {0x62656572, "sysfs"},
    {0x9FA0, "proc"},      {0x4244, "hfs"},         {0x2011BAB0, "exfat"},
};

const char *pc_fs_type_name(unsigned long magic) {
  for (size_t i = 0; i < sizeof k_fs / sizeof k_fs[0]; i++)
    if (k_fs[i].magic == magic) return k_fs[i].name;
  return NULL;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
        p[3] <= '7') {
      *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
      p += 3;
    } else {
      *o++ = *p;
    }
  }
  *o = 0;
}

/* The mount holding `real` (a resolved path on device dev): among the
 * mountinfo lines of that device the one with the longest mount point that
 * is a prefix of real, else the longest prefix of any device. The last
 * such line wins a tie (a later mount over an earlier one). */
static int find_mount(const char *real, dev_t dev, char *type, size_t tcap, char *src,
                      size_t scap) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return -1;
  char line[8192];
  size_t best = 0;
  int best_dev = 0, found = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned maj, min;
    char mnt[4096], ty[256], so[1024];
    char *dash = strstr(line, " - ");
    if (!dash) continue;
    if (sscanf(line, "%*s %*s %u:%u %*s %4095s", &maj, &min, mnt) != 3) continue;
    if (sscanf(dash + 3, "%255s %1023s", ty, so) != 2) continue;
    unescape(mnt);
    unescape(so);
    size_t ml = strlen(mnt);
    int prefix = strncmp(real, mnt, ml) == 0 && (real[ml] == '/' || real[ml] == 0 || ml == 1);
    if (!prefix) continue;
    int same = makedev(maj, min) == dev;
    if (found && (best_dev > same || (best_dev == same && ml < best))) continue;
    best = ml;
    best_dev = same;
    found = 1;
    snprintf(type, tcap, "%s", ty);
    snprintf(src, scap, "%s", so);
  }
  fclose(f);
  return found ? 0 : -1;
}

int pc_fs_describe(const char *path, char *out, size_t cap) {
  struct stat st;
  struct statfs sf;
  if (stat(path, &st) != 0) return -1;
  const char *name = statfs(path, &sf) == 0 ? pc_fs_type_name((unsigned long)sf.f_type) : NULL;
  char real[PATH_MAX], mtype[256] = "", msrc[1024] = "?";
  int have_mount = realpath(path, real) && find_mount(real, st.st_dev, mtype, sizeof mtype, msrc,
                                                      sizeof msrc) == 0;
  /* mountinfo names ext4 where statfs can only say ext2/3/4, and names the
   * fuse file system (fuse.sshfs); statfs decides when they disagree */
  const char *type = name ? name : "?";
  if (have_mount && mtype[0] &&
      (!name || (strcmp(name, "ext2/3/4") == 0 && strncmp(mtype, "ext", 3) == 0) ||
       (strcmp(name, "fuse") == 0 && strncmp(mtype, "fuse", 4) == 0) ||
       (strcmp(name, "nfs") == 0 && strncmp(mtype, "nfs", 3) == 0) || strcmp(name, mtype) == 0))
    type = mtype;
  snprintf(out, cap, "%s %s", type, have_mount ? msrc : "?");
  return 0;
}

void pc_note_fs(pc_stats *s, const char *path) {
  if (s->fs[0] || !path) return;
  if (pc_fs_describe(path, s->fs, sizeof s->fs) != 0) s->fs[0] = 0;
}

/* ---- what it comes to --------------------------------------------------- */

double pc_resident_fraction(const pc_stats *s) {
  uint64_t b = atomic_load(&s->bytes), un = atomic_load(&s->unmeasured);
  if (b == 0 || un >= b) return -1;
  return (double)atomic_load(&s->resident_read) / (double)(b - un);
}

const char *pc_cache_word(const pc_stats *s) {
  if (atomic_load(&s->files) == 0) return "";
  double f = pc_resident_fraction(s);
  if (f < 0) return s->cold ? "cold" : "warm"; /* unmeasured: what was asked for */
  return f < 0.5 ? "cold" : "warm";
}

void pc_report(st_ctx *c, const char *what, const pc_stats *s) {
  if (!s->cold) return;
  uint64_t files = atomic_load(&s->files), b = atomic_load(&s->bytes);
  uint64_t un = atomic_load(&s->unmeasured);
  if (files == 0) return;
  char bs[32];
  st_fmt_bytes(bs, sizeof bs, b);
  const char *fs = s->fs[0] ? s->fs : "an unknown file system";
  if (un >= b) {
    st_printf(c, "%s: --cold: %llu file%s, %s on %s; residency cannot be measured here (mincore "
                 "failed): the pages were dropped, not checked\n",
              what, (unsigned long long)files, files == 1 ? "" : "s", bs, fs);
    return;
  }
  double m = (double)(b - un);
  double found = 100.0 * (double)atomic_load(&s->resident_found) / m;
  double left = 100.0 * (double)atomic_load(&s->resident_read) / m;
  st_printf(c, "%s: --cold: %llu file%s, %s on %s; %.1f %% cached before, %.1f %% after the drop\n",
            what, (unsigned long long)files, files == 1 ? "" : "s", bs, fs, found, left);
  if (left >= 50.0)
    st_printf(c, "%s: the drop had no effect (%s keeps its pages in memory): these are "
                 "page-cache figures, not the storage's\n", what, fs);
}

void pc_timing_add(st_ctx *c, const pc_stats *s, const char *stage, const char *magic,
                   double seconds, uint64_t bytes, uint64_t items, const char *backend,
                   const char *hash) {
  st_timing t;
  memset(&t, 0, sizeof t);
  snprintf(t.stage, sizeof t.stage, "%s", stage ? stage : "");
  snprintf(t.magic, sizeof t.magic, "%s", magic ? magic : "");
  t.seconds = seconds;
  t.bytes = bytes;
  t.items = items;
  snprintf(t.backend, sizeof t.backend, "%s", backend ? backend : "");
  snprintf(t.hash, sizeof t.hash, "%s", hash ? hash : "");
  if (s) {
    snprintf(t.cache, sizeof t.cache, "%s", pc_cache_word(s));
    snprintf(t.fs, sizeof t.fs, "%s", s->fs);
    double f = pc_resident_fraction(s);
    t.resident = f;
  } else {
    t.resident = -1;
  }
  st_record_timing(c, &t);
}
