/*
 * fuzz_extract.c -- hostile archives through the extractor %extract and
 * %download --extract use (dx_run: ISA-L or libarchive gzip, libarchive's
 * readers, our own path walking and writing).
 *
 * One temporary root per process (pk-fuzz-extract-XXXXXX in $TMPDIR, else
 * /dev/shm, else /tmp) holds `out`, the destination, made fresh for each
 * input and removed after it, and `sentinel`, an empty sibling folder.
 * After each input the root must hold nothing but `sentinel`, still empty:
 * nothing may be written outside the destination, whatever the archive says
 * (absolute paths, "..", symlinks and hard links leading out, writes
 * through symlinks). The last byte of the input picks the gzip inflater,
 * whether members are hashed, the read size, whether what members
 * replace is kept for an undo, and whether the source can seek (as a file
 * can: zip and 7-Zip are then read from their directories at the end); then the run is undone (nothing of it may
 * remain) or, with undo and bit 16, committed (nothing kept aside may
 * remain). Seeds ending in a 0 byte (tar, gzip, zip) run the default path.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/extract.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_root[512], g_out[600], g_sentinel[600];

typedef struct {
  const uint8_t *base, *p;
  size_t size, left, chunk;
} mem_src;

/* Hands the archive out in pieces, so readers see split headers too. */
static ssize_t mem_pull(void *ud, const void **buf) {
  mem_src *m = ud;
  size_t n = m->left < m->chunk ? m->left : m->chunk;
  *buf = m->p;
  m->p += n;
  m->left -= n;
  return (ssize_t)n;
}

/* As a file source seeks (zip's central directory, 7-Zip's header). */
static int64_t mem_seek(void *ud, int64_t off, int from_end) {
  mem_src *m = ud;
  int64_t to = from_end ? (int64_t)m->size + off : off;
  if (to < 0 || to > (int64_t)m->size) return -1;
  m->p = m->base + to;
  m->left = m->size - (size_t)to;
  return to;
}

static int never(st_ctx *c) {
  (void)c;
  return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if (flag == FTW_DP) return rmdir(path) ? -1 : 0;
  return unlink(path) ? -1 : 0;
}

static void rm_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st)) return;
  if (!S_ISDIR(st.st_mode)) {
    if (unlink(path)) abort();
    return;
  }
  if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS)) {
    fprintf(stderr, "fuzz_extract: cannot remove %s: %s\n", path, strerror(errno));
    abort();
  }
}

static void remove_root(void) {
  if (!g_root[0]) return;
  rm_tree(g_out);
  rmdir(g_sentinel);
  rmdir(g_root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; /* tmpfs: faster */
  snprintf(g_root, sizeof g_root, "%s/pk-fuzz-extract-XXXXXX", tmp);
  if (!mkdtemp(g_root)) {
    perror("fuzz_extract: mkdtemp");
    abort();
  }
  snprintf(g_out, sizeof g_out, "%s/out", g_root);
  snprintf(g_sentinel, sizeof g_sentinel, "%s/sentinel", g_root);
  if (mkdir(g_sentinel, 0755)) abort();
  atexit(remove_root);
  return 0;
}

/* The root holds exactly `sentinel`, and it is empty. */
static void check_root(void) {
  DIR *d = opendir(g_root);
  if (!d) abort();
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "sentinel")) {
      fprintf(stderr, "fuzz_extract: \"%s\" was written beside the destination\n", e->d_name);
      abort();
    }
  closedir(d);
  d = opendir(g_sentinel);
  if (!d) abort();
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      fprintf(stderr, "fuzz_extract: \"%s\" was written into the sentinel folder\n", e->d_name);
      abort();
    }
  closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static st_ctx c = {.cancelled = never};
  uint8_t last = size ? data[size - 1] : 0;
  mem_src src = {data, data, size, size, last & 4 ? 7 : 1u << 16};
  dx_job j;
  memset(&j, 0, sizeof j);
  j.c = &c;
  j.where = "fuzz.tar";
  j.dest = g_out;
  j.pull = mem_pull;
  if (last & 32) j.seek = mem_seek;
  j.ud = &src;
  j.inflater = last & 1 ? 2 : 0;
  j.hash = (last & 2) != 0;
  j.undo = (last & 8) != 0;
  int rc = dx_run(&j);
  if (rc && !j.err.code) abort(); /* a failure says why */
  if (!rc && j.err.code) abort();
  if (atomic_load(&j.files) > j.nmembers) abort(); /* members: files, hard and symbolic links */
  /* the md5 the fused verify takes for a name is that of its last member */
  for (size_t i = 0; i < j.nmembers; i++) {
    size_t final = i;
    for (size_t k = i + 1; k < j.nmembers; k++)
      if (!strcmp(j.members[k].path, j.members[i].path)) final = k;
    const char *want = j.members[final].hex[0] ? j.members[final].hex : NULL;
    const char *got = dx_member_md5(&j, j.members[i].path);
    if ((want == NULL) != (got == NULL) || (want && strcmp(want, got))) abort();
  }
  for (size_t i = 0; i < j.nmembers; i++) {
    const char *p = j.members[i].path;
    size_t pl = strlen(p);
    if (!pl || p[0] == '/' || strcmp(p, "..") == 0 || strncmp(p, "../", 3) == 0 ||
        strstr(p, "/../") || (pl >= 3 && strcmp(p + pl - 3, "/..") == 0))
      abort(); /* what was written is inside the destination */
  }
  if (j.undo && (last & 16)) {
    /* what a download whose md5 is right does: nothing kept aside is left */
    char **kept = calloc(j.nmembers + 1, sizeof *kept);
    size_t nk = 0;
    for (size_t i = 0; kept && i < j.nmembers; i++)
      if (j.members[i].old) kept[nk++] = strdup(j.members[i].old);
    dx_commit(&j);
    for (size_t i = 0; i < nk; i++) {
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", g_out, kept[i]);
      struct stat st;
      if (kept[i] && lstat(p, &st) == 0) {
        fprintf(stderr, "fuzz_extract: %s was left after the commit\n", p);
        abort();
      }
      free(kept[i]);
    }
    free(kept);
  } else {
    /* what a download that failed its md5 does: afterwards nothing of this
     * run is left, and the destination (created by the run) is gone too */
    dx_rollback(&j);
    if (access(g_out, F_OK) == 0) {
      fprintf(stderr, "fuzz_extract: the rollback left %s behind\n", g_out);
      abort();
    }
  }
  dx_job_free(&j);
  rm_tree(g_out);
  check_root();
  return 0;
}
