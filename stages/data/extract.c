/*
 * extract.c -- the safe extractor and %extract (see extract.h).
 */
#include "extract.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "lib/cache.h"
#include "lib/dynbuf.h"
#include "lib/escape.h"
#include "lib/fileio.h"
#include "lib/limits.h"
#include "md5.h"
#include "lib/ring.h"
#include "lib/safepath.h"

const st_option dx_extract_opts[] = {
    {"to", 1, "DIR", "destination folder (created if missing); required"},
    {"inflater", 1, "NAME", "gzip inflater: auto (ISA-L), isal or libarchive (zlib)"},
    {"max-ratio", 1, "N",
     "most bytes extracted per archive byte (default " DX__XSTR(PK_LIMIT_EXTRACT_RATIO) "; 0: no bound)"},
    PC_COLD_OPTION,
    {NULL, 0, NULL, NULL}};

/* ---- the byte source seen by libarchive: raw, or inflated by ISA-L ----
 * gzip is inflated on a thread of its own into a ring of DX_SLOTS buffers
 * that libarchive's reader takes in order, so inflating overlaps parsing,
 * writing and hashing the members. Without that thread (it could not be
 * started) the same inflate_fill() runs inside the read callback. */
#define DX_SLOT (1u << 20)
#define DX_SLOTS 8

typedef struct {
  dx_job *j;
  int gzip;               /* inflate with ISA-L */
  const uint8_t *in;      /* pending input */
  size_t in_len;
  int in_eof;
  int64_t delivered;      /* raw: where libarchive's next read starts */
  struct inflate_state st;
  int member_done;
  ring_buf ring;            /* inflated bytes, for libarchive's reader */
  int done;               /* without the thread: 1 end of stream, -1 error */
  int ecode;              /* the inflater's error (before it closes the ring) */
  char emsg[64];
  int threaded;           /* the inflater thread runs */
  pthread_t th;
} dx_reader;

static int pull_more(dx_reader *r) {
  const void *b;
  ssize_t n = r->j->pull(r->j->ud, &b);
  if (n < 0) return -1;
  if (n == 0) { r->in_eof = 1; return 0; }
  r->in = b;
  r->in_len = (size_t)n;
  atomic_fetch_add(&r->j->in_bytes, (uint64_t)n);
  return 1;
}

static const char *isal_why(int rc) {
  switch (rc) {
  case ISAL_INCORRECT_CHECKSUM: return "gzip data is corrupt: its CRC-32 does not match";
  case ISAL_INVALID_WRAPPER: return "gzip data is corrupt: bad gzip header or trailer";
  case ISAL_UNSUPPORTED_METHOD: return "gzip member uses a method other than deflate";
  case ISAL_INVALID_BLOCK: return "gzip data is corrupt: invalid deflate block";
  case ISAL_INVALID_SYMBOL: return "gzip data is corrupt: invalid deflate symbol";
  case ISAL_INVALID_LOOKBACK: return "gzip data is corrupt: invalid back-reference";
  default: return "gzip data is corrupt";
  }
}

static int inflate_fail(dx_reader *r, int code, const char *msg) {
  r->ecode = code;
  snprintf(r->emsg, sizeof r->emsg, "%s", msg);
  return -1;
}

/* Inflate up to cap bytes into out (*got of them): 1 at the end of the
 * last gzip member, 0 when more may follow, -1 on an error (ecode, emsg). */
static int inflate_fill(dx_reader *r, uint8_t *out, size_t cap, size_t *got) {
  *got = 0;
  while (*got < cap) {
    if (st_cancelled(r->j->c)) return inflate_fail(r, ECANCELED, "interrupted");
    if (r->st.avail_in == 0) {
      if (r->in_len == 0 && !r->in_eof && pull_more(r) < 0) return inflate_fail(r, EIO, "read failed");
      r->st.next_in = (uint8_t *)(uintptr_t)r->in;
      r->st.avail_in = (uint32_t)r->in_len;
      r->in_len = 0;
    }
    if (r->member_done) {
      /* another gzip member follows? (skip NUL padding some tools add) */
      while (r->st.avail_in && r->st.next_in[0] == 0) { r->st.next_in++; r->st.avail_in--; }
      if (r->st.avail_in == 0) {
        if (r->in_eof) return 1;
        continue;
      }
      isal_inflate_reset(&r->st);
      r->st.crc_flag = ISAL_GZIP;
      r->member_done = 0;
    }
    r->st.next_out = out + *got;
    r->st.avail_out = (uint32_t)(cap - *got);
    int rc = isal_inflate(&r->st);
    if (rc != ISAL_DECOMP_OK) return inflate_fail(r, EIO, isal_why(rc));
    size_t before = *got;
    *got = cap - r->st.avail_out;
    if (r->st.block_state == ISAL_BLOCK_FINISH) r->member_done = 1;
    else if (r->st.avail_in == 0 && r->in_eof && *got == before) /* ISA-L holds nothing more */
      return inflate_fail(r, EIO, "gzip stream is truncated");
  }
  return 0;
}

static void *inflater(void *arg) {
  dx_reader *r = arg;
  for (;;) {
    uint8_t *slot = ring_acquire(&r->ring, NULL, NULL);
    if (!slot) return NULL; /* the reader wants no more */
    size_t got;
    int k = inflate_fill(r, slot, DX_SLOT, &got);
    if (got) ring_publish(&r->ring, got);
    if (k) {
      ring_close(&r->ring, k);
      return NULL;
    }
  }
}

/* Stop the inflater thread (whatever it is doing) and wait for it. */
static void inflater_stop(dx_reader *r) {
  if (!r->threaded) return;
  if (ring_stop(&r->ring) && r->j->abort) r->j->abort(r->j->ud); /* it may wait in pull */
  pthread_join(r->th, NULL);
  r->threaded = 0;
}

/* libarchive's reason for its last error; some paths (a zlib stream cut
 * short) set none. */
static const char *ar_why(struct archive *a) {
  const char *s = archive_error_string(a);
  return s && *s ? s : "the data ends early or is corrupt (libarchive gives no reason)";
}

static la_ssize_t rd_cb(struct archive *a, void *ud, const void **buf) {
  dx_reader *r = ud;
  if (r->j->tick) r->j->tick(r->j->tick_ud, atomic_load(&r->j->in_bytes));
  if (st_cancelled(r->j->c)) {
    archive_set_error(a, ECANCELED, "interrupted");
    return -1;
  }
  if (!r->gzip) {
    if (r->in_len == 0 && !r->in_eof && pull_more(r) < 0) {
      archive_set_error(a, EIO, "read failed");
      return -1;
    }
    *buf = r->in;
    la_ssize_t n = (la_ssize_t)r->in_len;
    r->in_len = 0;
    r->delivered += n;
    return n;
  }
  if (!r->threaded) { /* inflate here; an error comes after the bytes before it */
    size_t got = 0;
    if (!r->done) r->done = inflate_fill(r, r->ring.buf[0], DX_SLOT, &got);
    if (r->done < 0 && !got) {
      archive_set_error(a, r->ecode, "%s", r->emsg);
      return -1;
    }
    *buf = r->ring.buf[0];
    return (la_ssize_t)got;
  }
  la_ssize_t n = ring_take(&r->ring, buf);
  if (n < 0) archive_set_error(a, r->ecode, "%s", r->emsg);
  return n;
}

/* libarchive's seek, on a raw source that can seek: drops what was pulled
 * and not yet delivered, and reads on from the new place. */
static la_int64_t seek_cb(struct archive *a, void *ud, la_int64_t off, int whence) {
  dx_reader *r = ud;
  int64_t to;
  if (whence == SEEK_END) {
    to = r->j->seek(r->j->ud, off, 1);
  } else {
    int64_t at = whence == SEEK_CUR ? r->delivered + off : off;
    to = at < 0 ? -1 : r->j->seek(r->j->ud, at, 0);
  }
  if (to < 0) {
    archive_set_error(a, EIO, "seek failed");
    return ARCHIVE_FATAL;
  }
  r->in_len = 0;
  r->in_eof = 0;
  r->delivered = to;
  atomic_store(&r->j->in_bytes, (uint64_t)to);
  return to;
}

/* ---- path handling ---- */
/* An error about DIR/rel (the path the user can find). */
static int fail_errno(dx_job *j, int er, const char *rel, const char *what) {
  char path[PK_LIMIT_EXTRACT_PATH + 1200];
  snprintf(path, sizeof path, "%.1000s/%s", j->dest, rel);
  return st_error_errno(&j->err, er, path, what);
}

/* Records a member written at path (takes old, see keep_old). 0, or
 * ST_ENOMEM: a member that cannot be recorded could not be undone. */
static int add_member(dx_job *j, const char *path, const char *hex, char *old) {
  /* one member per entry: dx_run refuses entries past the limit first */
  if (dyn_grow_array(&j->members, &j->capmembers, j->nmembers + 1, sizeof *j->members,
                     PK_LIMIT_EXTRACT_ENTRIES))
    goto oom;
  char *p = strdup(path);
  if (!p) goto oom;
  j->members[j->nmembers].path = p;
  snprintf(j->members[j->nmembers].hex, 33, "%s", hex ? hex : "");
  j->members[j->nmembers].old = old;
  j->nmembers++;
  return 0;
oom:
  free(old);
  return st_error_set(&j->err, ST_ENOMEM, j->where, -1, "out of memory");
}

/* With undo, before a member takes the name leaf in dfd (rel: its path in
 * DIR): what is there (not a folder) is renamed aside to .LEAF.pk-old-TOKEN-N
 * (a random token per job: an archive cannot name it in advance; never over
 * an existing name), and *old gets that path relative to DIR, so a rollback
 * can put it back. st: what the caller found at leaf (NULL: nothing), so
 * the name is looked up once per member. 0 (also when nothing is there), or
 * an error code. */
static int keep_old(dx_job *j, int dfd, const char *rel, const char *leaf, const struct stat *st,
                    char **old) {
  *old = NULL;
  if (!j->undo || !st || S_ISDIR(st->st_mode)) return 0;
  if (!j->token && getrandom(&j->token, sizeof j->token, 0) != (ssize_t)sizeof j->token)
    j->token = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
  char aside[300];
  snprintf(aside, sizeof aside, ".%.200s.pk-old-%016llx-%zu", leaf, (unsigned long long)j->token,
           j->nmembers);
  int r = renameat2(dfd, leaf, dfd, aside, RENAME_NOREPLACE);
  if (r && errno == EINVAL) { /* a file system without the flag (NFS): the name is random */
    struct stat ast;
    errno = EEXIST;
    r = fstatat(dfd, aside, &ast, AT_SYMLINK_NOFOLLOW) == 0 ? -1 : renameat(dfd, leaf, dfd, aside);
  }
  if (r) return fail_errno(j, errno, rel, "cannot keep what this member replaces");
  size_t dir = (size_t)(leaf - rel); /* leaf points into rel: "a/b/" + leaf */
  *old = malloc(dir + strlen(aside) + 1);
  if (!*old) {
    renameat(dfd, aside, dfd, leaf);
    return st_error_set(&j->err, ST_ENOMEM, j->where, -1, "out of memory");
  }
  memcpy(*old, rel, dir);
  memcpy(*old + dir, aside, strlen(aside) + 1);
  return 0;
}

/* keep_old for a link member: looks at leaf itself. */
static int keep_old_at(dx_job *j, int dfd, const char *rel, const char *leaf, char **old) {
  struct stat st;
  int there = j->undo && fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0;
  return keep_old(j, dfd, rel, leaf, there ? &st : NULL, old);
}

/* Renames what keep_old kept aside (old, relative to DIR; its folder is
 * dfd) back to leaf and frees old: when the member could not be written,
 * and in a rollback. */
static void restore_old(int dfd, const char *leaf, char *old) {
  if (!old) return;
  const char *aside = strrchr(old, '/');
  renameat(dfd, aside ? aside + 1 : old, dfd, leaf);
  free(old);
}

/* Remembers a folder this run created, for dx_rollback. */
static void add_dir(dx_job *j, const char *rel, size_t len) { strv_push(&j->dirs, rel, len); }

static int cmp_member(const void *a, const void *b, void *members) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  const dx_member *m = members;
  int c = strcmp(m[x].path, m[y].path);
  return c ? c : (x > y) - (x < y);
}

const char *dx_member_md5(dx_job *j, const char *path) {
  /* an index sorted by (path, order), built on the first call: a manifest
   * of a million names against a million members is not a million scans */
  if (j->nindex != j->nmembers) {
    free(j->index);
    j->index = malloc((j->nmembers ? j->nmembers : 1) * sizeof *j->index);
    j->nindex = 0;
    if (!j->index) return NULL; /* then the file is hashed from the disk */
    for (size_t i = 0; i < j->nmembers; i++) j->index[i] = i;
    qsort_r(j->index, j->nmembers, sizeof *j->index, cmp_member, j->members);
    j->nindex = j->nmembers;
  }
  /* the last entry of that name: the member the disk holds */
  size_t lo = 0, hi = j->nindex;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(j->members[j->index[mid]].path, path) <= 0) lo = mid + 1;
    else hi = mid;
  }
  if (!lo) return NULL;
  const dx_member *m = &j->members[j->index[lo - 1]];
  return strcmp(m->path, path) == 0 && m->hex[0] ? m->hex : NULL;
}

static int open_parent(dx_job *j, int root, char *rel, const char **leaf, int create);

size_t dx_rollback(dx_job *j) {
  if (j->ended) return 0;
  j->ended = 1;
  int root = open(j->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return 0;
  size_t gone = 0;
  st_error keep = j->err;
  /* newest first: a name written twice gets its first member back, then
   * what was there before the run */
  for (size_t i = j->nmembers; i-- > 0;) {
    char rel[PK_LIMIT_EXTRACT_PATH + 2];
    snprintf(rel, sizeof rel, "%s", j->members[i].path);
    const char *leaf;
    int dfd = open_parent(j, root, rel, &leaf, 0); /* never through a symlink */
    if (dfd < 0) continue;
    gone += unlinkat(dfd, leaf, 0) == 0;
    restore_old(dfd, leaf, j->members[i].old);
    j->members[i].old = NULL;
    close(dfd);
  }
  for (size_t i = j->dirs.n; i-- > 0;) /* deepest last created first; only when empty */
    unlinkat(root, j->dirs.v[i], AT_REMOVEDIR);
  j->err = keep; /* open_parent may have noted a vanished folder */
  close(root);
  if (j->made_dest) rmdir(j->dest); /* only when empty */
  return gone;
}

void dx_commit(dx_job *j) {
  if (j->ended) return;
  j->ended = 1;
  int root = open(j->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (size_t i = 0; i < j->nmembers; i++) {
    if (!j->members[i].old) continue;
    if (root >= 0) unlinkat(root, j->members[i].old, 0);
    free(j->members[i].old);
    j->members[i].old = NULL;
  }
  if (root >= 0) close(root);
}

void dx_job_free(dx_job *j) {
  for (size_t i = 0; i < j->nmembers; i++) {
    free(j->members[i].path);
    free(j->members[i].old);
  }
  free(j->members);
  j->members = NULL;
  j->nmembers = j->capmembers = 0;
  free(j->index);
  j->index = NULL;
  j->nindex = 0;
  strv_free(&j->dirs);
}

/* Normalise a member name into out: strip "./" and trailing '/', refuse
 * absolute paths, "..", empty names, over-long or too deep paths. */
static int clean_path(dx_job *j, const char *name, char *out, size_t cap) {
  if (!name || !*name) return st_error_set(&j->err, ST_EUNSAFE, j->where, -1, "member with an empty name");
  if (name[0] == '/')
    return st_error_set(&j->err, ST_EUNSAFE, j->where, -1,
                        "member \"%.300s\" has an absolute path: refused", name);
  if (strlen(name) > PK_LIMIT_EXTRACT_PATH)
    return st_error_set(&j->err, ST_E2BIG, j->where, -1, "member name of %zu bytes, the limit is %u",
                        strlen(name), (unsigned)PK_LIMIT_EXTRACT_PATH);
  size_t o = 0;
  int depth = 0;
  const char *s = name;
  while (*s) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 2 && s[0] == '.' && s[1] == '.')
      return st_error_set(&j->err, ST_EUNSAFE, j->where, -1,
                          "member \"%.300s\" contains \"..\": refused", name);
    if (n && !(n == 1 && s[0] == '.')) {
      if (++depth > PK_LIMIT_EXTRACT_DEPTH)
        return st_error_set(&j->err, ST_E2BIG, j->where, -1, "member \"%.300s\" is nested deeper than %d",
                            name, PK_LIMIT_EXTRACT_DEPTH);
      if (o + n + 2 > cap) return st_error_set(&j->err, ST_E2BIG, j->where, -1, "member name too long");
      if (o) out[o++] = '/';
      memcpy(out + o, s, n);
      o += n;
    }
    if (!e) break;
    s = e + 1;
  }
  out[o] = 0;
  return o ? 0 : 1; /* 1: the root itself ("./") */
}

/* Open the parent folder of rel (creating folders) without following any
 * symlink; *leaf points at the last component. Returns a dirfd or -1. */
static int open_parent(dx_job *j, int root, char *rel, const char **leaf, int create) {
  int fd = dup(root);
  char *s = rel;
  for (;;) {
    char *e = strchr(s, '/');
    if (!e) break;
    *e = 0;
    if (create && mkdirat(fd, s, 0755)) {
      if (errno != EEXIST) {
        int er = errno;
        *e = '/';
        close(fd);
        fail_errno(j, er, rel, "cannot create folder");
        return -1;
      }
    } else if (create) {
      add_dir(j, rel, (size_t)(e - rel));
    }
    int nfd = openat(fd, s, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int er = errno;
    *e = '/';
    close(fd);
    if (nfd < 0) {
      if (er == ELOOP || er == ENOTDIR)
        st_error_set(&j->err, ST_EUNSAFE, j->where, -1,
                     "member \"%.300s\" goes through a symlink or a file: refused", rel);
      else
        fail_errno(j, er, rel, "cannot open folder");
      return -1;
    }
    fd = nfd;
    s = e + 1;
  }
  *leaf = s;
  return fd;
}

/* A regular member being written: where it goes, its temporary file and
 * its digest. write_file's steps fill it in turn. */
typedef struct dx_file {
  const char *rel;             /* its path in DIR */
  struct archive_entry *e;
  int64_t size;                /* the size its header declares (0 when none) */
  int dfd;                     /* its folder, -1 until opened */
  const char *leaf;            /* its name in dfd (points into rel) */
  char tmp[300];               /* the temporary name in dfd */
  int fd;                      /* the temporary file, -1 when closed */
  int made_tmp;                /* tmp was created (removed again on failure) */
  EVP_MD_CTX *md;              /* NULL without hashing */
  uint64_t written;            /* the end of the last data block */
  uint64_t on_disk;            /* the end of the last byte written (zero blocks are holes) */
  char *old;                   /* with undo: what the member replaced, kept aside */
  char hex[33];                /* its md5 ("" without hashing) */
} dx_file;

/* Feeds n zero bytes to md (a hole, or the tail of a sparse file). */
static void md_zeros(EVP_MD_CTX *md, uint64_t n) {
  static const uint8_t z[65536];
  while (n) {
    size_t k = n > sizeof z ? sizeof z : (size_t)n;
    EVP_DigestUpdate(md, z, k);
    n -= k;
  }
}

/* Writes all of b at offset off of fd; 0, or -1 with errno. */
static int pwrite_all(int fd, const uint8_t *b, size_t left, int64_t off) {
  while (left) {
    ssize_t w = pwrite(fd, b, left, off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    b += w;
    left -= (size_t)w;
    off += w;
  }
  return 0;
}

#define DX_HOLE 4096 /* zero blocks of this size, at multiples of it in the file, become holes */

static int all_zero(const uint8_t *b, size_t n) {
  return n && b[0] == 0 && !memcmp(b, b + 1, n - 1);
}

/* pwrite_all, leaving out every whole DX_HOLE block of zeros (aligned in
 * the file) past *end, the end of the last byte written so far: the file
 * was made empty, so what is left out there reads as zeros and, where the
 * file system keeps holes, takes no room. *end grows to the end of the last
 * byte written. 0, or -1 with errno. */
static int pwrite_sparse(int fd, const uint8_t *b, size_t len, int64_t off, uint64_t *end) {
  const uint64_t clean = *end; /* nothing was written from here on */
  size_t i = 0, from = 0;      /* b[from..i) is waiting to be written */
  while (i < len) {
    size_t k = DX_HOLE - (size_t)((uint64_t)(off + (int64_t)i) % DX_HOLE); /* to the next block edge */
    if (k > len - i) k = len - i;
    if (k == DX_HOLE && (uint64_t)(off + (int64_t)i) >= clean && all_zero(b + i, k)) {
      if (i > from && pwrite_all(fd, b + from, i - from, off + (int64_t)from)) return -1;
      if (i > from && (uint64_t)(off + (int64_t)i) > *end) *end = (uint64_t)(off + (int64_t)i);
      from = i + k;
    }
    i += k;
  }
  if (len > from && pwrite_all(fd, b + from, len - from, off + (int64_t)from)) return -1;
  if (len > from && (uint64_t)(off + (int64_t)len) > *end) *end = (uint64_t)(off + (int64_t)len);
  return 0;
}

/* Refuses, before anything is written, a member whose declared size is
 * over what the archive may still hold, or over the free space in DIR. */
static int file_check_size(dx_job *j, int root, const dx_file *f, uint64_t total) {
  if ((uint64_t)f->size > PK_LIMIT_EXTRACT_BYTES - total)
    return st_error_set(&j->err, ST_E2BIG, j->where, -1,
                        "member \"%.300s\" claims %lld bytes: over the limit of %llu bytes for the "
                        "whole archive; refused before writing",
                        f->rel, (long long)f->size, (unsigned long long)PK_LIMIT_EXTRACT_BYTES);
  struct statvfs vs;
  if (fstatvfs(root, &vs) == 0 && (uint64_t)f->size > (uint64_t)vs.f_bavail * vs.f_frsize)
    return st_error_set(&j->err, ST_ENOSPC, j->where, -1,
                        "member \"%.300s\" claims %lld bytes, more than the %llu bytes free in %s; "
                        "refused before writing",
                        f->rel, (long long)f->size, (unsigned long long)vs.f_bavail * vs.f_frsize, j->dest);
  return 0;
}

/* Opens the member's folder (made as needed, never through a symlink) and
 * its temporary file .LEAF.pk-tmp-PID there, and starts its md5. */
static int file_open(dx_job *j, int root, char *rel, dx_file *f) {
  f->dfd = open_parent(j, root, rel, &f->leaf, 1);
  if (f->dfd < 0) return j->err.code;
  snprintf(f->tmp, sizeof f->tmp, ".%.200s.pk-tmp-%ld", f->leaf, (long)getpid());
  struct stat st; /* never blocks on a FIFO someone left under that name */
  f->fd = fio_openat_raw(f->dfd, f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600, &st);
  if (f->fd < 0) return fail_errno(j, errno, f->rel, "cannot create");
  if (!S_ISREG(st.st_mode))
    return st_error_set(&j->err, ST_EUNSAFE, j->where, -1, "member \"%.300s\": its temporary name %s is %s",
                        f->rel, f->tmp, fio_kind(st.st_mode));
  f->made_tmp = 1;
  if (j->hash) {
    f->md = EVP_MD_CTX_new();
    if (f->md) EVP_DigestInit_ex(f->md, EVP_md5(), NULL);
  }
  return 0;
}

/* The archive may not expand past its ratio: once the members hold more
 * than PK_LIMIT_EXTRACT_RATIO_FREE bytes, at most max_ratio of them per
 * archive byte read so far (for gzip: compressed bytes), counting the n
 * bytes about to be written. 0, or ST_E2BIG naming the member. */
static int check_ratio(dx_job *j, const char *rel, size_t n) {
  uint64_t ratio = j->max_ratio ? j->max_ratio : PK_LIMIT_EXTRACT_RATIO;
  uint64_t out = atomic_load(&j->out_bytes) + n, in = atomic_load(&j->in_bytes);
  if (ratio == DX_NO_RATIO || out <= PK_LIMIT_EXTRACT_RATIO_FREE) return 0;
  if (in && out / in < ratio) return 0;
  return st_error_set(&j->err, ST_E2BIG, j->where, (long long)in,
                      "member \"%.300s\": %llu bytes extracted from %llu archive bytes, more than %llu "
                      "per byte (PK_LIMIT_EXTRACT_RATIO): an archive bomb? --max-ratio N raises the bound, "
                      "--max-ratio 0 lifts it",
                      rel, (unsigned long long)out, (unsigned long long)in, (unsigned long long)ratio);
}

/* Writes every data block of the member at its offset (holes are hashed
 * as zeros; zero blocks are written as holes); data beyond the declared
 * size counts against the limit, every byte against the ratio. */
static int file_copy_data(dx_job *j, struct archive *ar, dx_file *f, uint64_t total) {
  const char *rel = f->rel;
  for (;;) {
    const void *buf;
    size_t len;
    la_int64_t off;
    int r = archive_read_data_block(ar, &buf, &len, &off);
    if (r == ARCHIVE_EOF) return 0;
    if (r < ARCHIVE_WARN) {
      int en = archive_errno(ar);
      return st_error_set(&j->err, en == ECANCELED || st_cancelled(j->c) ? ST_ECANCELED : ST_EFORMAT,
                          j->where, -1, "member \"%.300s\": %s", rel, ar_why(ar));
    }
    if ((uint64_t)off + len > (uint64_t)f->size && (uint64_t)off + len > f->written) {
      /* data beyond the declared size (sparse or lying header): count it */
      if ((uint64_t)off + len > PK_LIMIT_EXTRACT_BYTES - total)
        return st_error_set(&j->err, ST_E2BIG, j->where, -1, "member \"%.300s\" exceeds the size limit", rel);
    }
    int rc = check_ratio(j, rel, len);
    if (rc) return rc;
    if (f->md && (uint64_t)off > f->written) md_zeros(f->md, (uint64_t)off - f->written); /* a hole */
    if (pwrite_sparse(f->fd, buf, len, off, &f->on_disk)) return fail_errno(j, errno, rel, "write failed");
    if (f->md) EVP_DigestUpdate(f->md, buf, len);
    f->written = (uint64_t)off + len;
    atomic_fetch_add(&j->out_bytes, len);
    if (st_cancelled(j->c))
      return st_error_set(&j->err, ST_ECANCELED, j->where, -1, "interrupted in member \"%.300s\"", rel);
  }
}

/* Extends the file to its declared size (hashing the zeros) or to its last
 * block (when that was a hole), and gives it the member's mode (at most
 * 0755) and time. */
static int file_complete(dx_job *j, dx_file *f) {
  uint64_t end = f->written > (uint64_t)f->size ? f->written : (uint64_t)f->size;
  if (f->on_disk < end && ftruncate(f->fd, (off_t)end)) return fail_errno(j, errno, f->rel, "truncate failed");
  if (f->written < (uint64_t)f->size && f->md) md_zeros(f->md, (uint64_t)f->size - f->written);
  fchmod(f->fd, archive_entry_perm(f->e) & 0755);
  struct timespec ts[2] = {{archive_entry_mtime(f->e), 0}, {archive_entry_mtime(f->e), 0}};
  futimens(f->fd, ts);
  return 0;
}

/* Closes the temporary file: a write error reported only now is the
 * member's error (unless it already has one). Returns rc. */
static int file_close(dx_job *j, dx_file *f, int rc) {
  if (f->fd < 0) return rc;
  if (close(f->fd) && !rc) rc = fail_errno(j, errno, f->rel, "close failed");
  f->fd = -1;
  return rc;
}

/* Renames the temporary file to the member's name; never over a folder
 * nor through a symlink, and with undo what was there is kept aside. */
static int file_place(dx_job *j, dx_file *f) {
  struct stat st;
  int there = fstatat(f->dfd, f->leaf, &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (there && S_ISDIR(st.st_mode)) return fail_errno(j, EEXIST, f->rel, "cannot replace a folder with a file");
  int rc = keep_old(j, f->dfd, f->rel, f->leaf, there ? &st : NULL, &f->old);
  if (rc) return rc;
  if (renameat(f->dfd, f->tmp, f->dfd, f->leaf)) {
    rc = fail_errno(j, errno, f->rel, "rename failed");
    restore_old(f->dfd, f->leaf, f->old);
    f->old = NULL;
  }
  return rc;
}

/* Releases what the member holds whatever step failed (a temporary file
 * left goes) and finishes its md5; returns rc. */
static int file_end(dx_file *f, int rc) {
  if (f->fd >= 0) close(f->fd);
  if (rc && f->made_tmp) unlinkat(f->dfd, f->tmp, 0);
  if (f->dfd >= 0) close(f->dfd);
  if (f->md) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl;
    EVP_DigestFinal_ex(f->md, d, &dl);
    EVP_MD_CTX_free(f->md);
    md5_hex(d, f->hex);
  }
  return rc;
}

/* A regular member: checked, written to a temporary file, completed,
 * renamed into place and recorded (*total grows by its size). */
static int write_file(dx_job *j, struct archive *ar, int root, char *rel, struct archive_entry *e,
                      uint64_t *total) {
  dx_file f;
  memset(&f, 0, sizeof f);
  f.rel = rel;
  f.e = e;
  f.size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
  if (f.size < 0) f.size = 0;
  f.dfd = -1;
  f.fd = -1;
  int rc = file_check_size(j, root, &f, *total);
  if (!rc) rc = file_open(j, root, rel, &f);
  if (!rc) rc = file_copy_data(j, ar, &f, *total);
  if (!rc) rc = file_complete(j, &f);
  rc = file_close(j, &f, rc);
  if (!rc) rc = file_place(j, &f);
  rc = file_end(&f, rc);
  if (rc) return rc;
  *total += (uint64_t)f.size > f.written ? (uint64_t)f.size : f.written;
  atomic_fetch_add(&j->files, 1);
  return add_member(j, rel, f.hex, f.old);
}

/* A hard link member (rel, named name in the archive) to hl: only to a
 * file already extracted inside DIR. */
static int entry_hardlink(dx_job *j, int root, char *rel, const char *name, const char *hl) {
  char trel[PK_LIMIT_EXTRACT_PATH + 2];
  int t = clean_path(j, hl, trel, sizeof trel);
  if (t) {
    st_error_clear(&j->err);
    return st_error_set(&j->err, ST_EUNSAFE, j->where, -1,
                        "hard link \"%.300s\" -> \"%.300s\" leads out of %s: refused", name, hl, j->dest);
  }
  const char *tleaf, *leaf;
  int tfd = open_parent(j, root, trel, &tleaf, 0);
  if (tfd < 0) return j->err.code;
  struct stat st;
  if (fstatat(tfd, tleaf, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode)) {
    close(tfd);
    return st_error_set(&j->err, ST_EUNSAFE, j->where, -1,
                        "hard link \"%.300s\" -> \"%.300s\": the target is not a file extracted here",
                        name, hl);
  }
  int dfd = open_parent(j, root, rel, &leaf, 1);
  if (dfd < 0) { close(tfd); return j->err.code; }
  char *old;
  int rc = keep_old_at(j, dfd, rel, leaf, &old);
  if (!rc) {
    unlinkat(dfd, leaf, 0);
    if (linkat(tfd, tleaf, dfd, leaf, 0)) {
      rc = fail_errno(j, errno, rel, "cannot create hard link");
      restore_old(dfd, leaf, old);
    } else {
      atomic_fetch_add(&j->files, 1);
      rc = add_member(j, rel, NULL, old);
    }
  }
  close(tfd);
  close(dfd);
  return rc;
}

/* A folder member: made unless there (recorded for a rollback when made);
 * what is there must be a real folder. */
static int entry_dir(dx_job *j, int root, char *rel) {
  const char *leaf;
  int dfd = open_parent(j, root, rel, &leaf, 1);
  if (dfd < 0) return j->err.code;
  int rc = 0;
  if (mkdirat(dfd, leaf, 0755) == 0) add_dir(j, rel, strlen(rel));
  else if (errno != EEXIST) rc = fail_errno(j, errno, rel, "cannot create folder");
  struct stat st;
  if (!rc && (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) || !S_ISDIR(st.st_mode)))
    rc = st_error_set(&j->err, ST_EUNSAFE, j->where, -1, "folder member \"%.300s\" exists as a symlink or file", rel);
  close(dfd);
  return rc;
}

/* A symlink member: only with a target that stays inside DIR. */
static int entry_symlink(dx_job *j, int root, char *rel, struct archive_entry *e) {
  const char *target = archive_entry_symlink(e);
  if (!target || !sp_link_stays(rel, target)) /* the rule %verify follows links by */
    return st_error_set(&j->err, ST_EUNSAFE, j->where, -1,
                        "symlink \"%.300s\" -> \"%.300s\" leads out of %s: refused", rel,
                        target ? target : "", j->dest);
  const char *leaf;
  int dfd = open_parent(j, root, rel, &leaf, 1);
  if (dfd < 0) return j->err.code;
  char *old;
  int rc = keep_old_at(j, dfd, rel, leaf, &old);
  if (!rc) {
    unlinkat(dfd, leaf, 0);
    if (symlinkat(target, dfd, leaf)) {
      rc = fail_errno(j, errno, rel, "cannot create symlink");
      restore_old(dfd, leaf, old);
    } else {
      rc = add_member(j, rel, NULL, old);
    }
  }
  close(dfd);
  return rc;
}

/* One archive entry: its name cleaned, then by type (hard link, folder,
 * file, symlink); device nodes, fifos, sockets and unknown types are
 * refused. */
static int do_entry(dx_job *j, struct archive *ar, int root, struct archive_entry *e, uint64_t *total) {
  char rel[PK_LIMIT_EXTRACT_PATH + 2];
  const char *name = archive_entry_pathname(e);
  int r = clean_path(j, name, rel, sizeof rel);
  if (r < 0) return r;
  mode_t type = archive_entry_filetype(e);
  const char *hl = archive_entry_hardlink(e);
  if (r == 1) return type == AE_IFDIR ? 0 : st_error_set(&j->err, ST_EUNSAFE, j->where, -1,
                                                          "member \"%.300s\" names the destination itself", name);
  if (hl) return entry_hardlink(j, root, rel, name, hl);
  switch (type) {
  case AE_IFDIR:
    return entry_dir(j, root, rel);
  case AE_IFREG:
    return write_file(j, ar, root, rel, e, total);
  case AE_IFLNK:
    return entry_symlink(j, root, rel, e);
  case AE_IFCHR: case AE_IFBLK:
    return st_error_set(&j->err, ST_EUNSAFE, j->where, -1, "member \"%.300s\" is a device node: refused", rel);
  case AE_IFIFO:
    return st_error_set(&j->err, ST_EUNSAFE, j->where, -1, "member \"%.300s\" is a fifo: refused", rel);
  case AE_IFSOCK:
    return st_error_set(&j->err, ST_EUNSAFE, j->where, -1, "member \"%.300s\" is a socket: refused", rel);
  default:
    return st_error_set(&j->err, ST_EUNSAFE, j->where, -1, "member \"%.300s\" has an unknown type: refused", rel);
  }
}

/* zip (its modes and symlinks are only in the central directory, at the
 * end) and 7-Zip (its header is at the end) are read from a file with seeks. */
static int needs_seek(const uint8_t *p, size_t n) {
  static const uint8_t zip[4] = {'P', 'K', 3, 4}, sevenzip[6] = {'7', 'z', 0xbc, 0xaf, 0x27, 0x1c};
  return (n >= sizeof zip && !memcmp(p, zip, sizeof zip)) ||
         (n >= sizeof sevenzip && !memcmp(p, sevenzip, sizeof sevenzip));
}

/* One dx_run: the byte source, libarchive's reader and DIR; run_end
 * releases them whatever step failed. */
typedef struct dx_pass {
  dx_job *j;
  dx_reader r;
  struct archive *ar;
  int root;              /* DIR, -1 until opened */
  uint64_t total;        /* member bytes so far (against PK_LIMIT_EXTRACT_BYTES) */
} dx_pass;

/* Pulls the first bytes: a zip or 7-Zip from a source that cannot seek
 * stops here with j->needs_file set. */
static int run_peek(dx_pass *p) {
  dx_job *j = p->j;
  if (pull_more(&p->r) < 0)
    return j->err.code ? j->err.code : st_error_set(&j->err, ST_EIO, j->where, -1, "read failed");
  if (!j->seek && needs_seek(p->r.in, p->r.in_len)) j->needs_file = 1;
  return 0;
}

/* Makes DIR (noting that this run made it) and opens it. */
static int run_open_dest(dx_pass *p) {
  dx_job *j = p->j;
  if (mkdir(j->dest, 0755) == 0) j->made_dest = 1;
  else if (errno != EEXIST) return st_error_errno(&j->err, errno, j->dest, "cannot create the destination");
  p->root = open(j->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (p->root < 0) return st_error_errno(&j->err, errno, j->dest, "cannot open the destination");
  return 0;
}

/* libarchive's reader on the source: for gzip (unless --inflater
 * libarchive) tar or cpio behind the ISA-L inflater thread, else every
 * format and filter libarchive has (with seeks when the source can). */
static int run_open_archive(dx_pass *p) {
  dx_job *j = p->j;
  dx_reader *r = &p->r;
  int is_gz = r->in_len >= 2 && r->in[0] == 0x1f && r->in[1] == 0x8b;
  r->gzip = is_gz && j->inflater != 2;
  struct archive *ar = p->ar = archive_read_new();
  if (!ar) return st_error_set(&j->err, ST_ENOMEM, j->where, -1, "out of memory");
  if (r->gzip) {
    if (ring_init(&r->ring, DX_SLOTS, DX_SLOT)) return st_error_set(&j->err, ST_ENOMEM, j->where, -1, "out of memory");
    isal_inflate_init(&r->st);
    r->st.crc_flag = ISAL_GZIP;
    r->threaded = pthread_create(&r->th, NULL, inflater, r) == 0;
    archive_read_support_format_tar(ar);
    archive_read_support_format_cpio(ar);
    snprintf(j->backend, sizeof j->backend, "isa-l+libarchive");
  } else {
    archive_read_support_filter_all(ar);
    archive_read_support_format_all(ar);
    snprintf(j->backend, sizeof j->backend, is_gz ? "libarchive-zlib" : "libarchive");
    if (j->seek && !is_gz) archive_read_set_seek_callback(ar, seek_cb);
  }
  if (archive_read_open(ar, r, NULL, rd_cb, NULL) == ARCHIVE_OK) return 0;
  if (r->gzip && r->ecode) /* the gzip layer failed before the tar began */
    return st_error_set(&j->err, st_cancelled(j->c) ? ST_ECANCELED : ST_EFORMAT, j->where,
                        (long long)atomic_load(&j->in_bytes), "%s", r->emsg);
  return st_error_set(&j->err, st_cancelled(j->c) ? ST_ECANCELED : ST_EFORMAT, j->where, -1,
                      "not an archive libarchive can read: %s", ar_why(ar));
}

/* Every entry in turn (at most PK_LIMIT_EXTRACT_ENTRIES), through
 * do_entry; stops at the first error or an interrupt. */
static int run_entries(dx_pass *p) {
  dx_job *j = p->j;
  uint64_t entries = 0;
  for (;;) {
    struct archive_entry *e;
    int h = archive_read_next_header(p->ar, &e);
    if (h == ARCHIVE_EOF) return 0;
    if (h < ARCHIVE_WARN)
      return st_error_set(&j->err, st_cancelled(j->c) ? ST_ECANCELED : ST_EFORMAT, j->where,
                          (long long)archive_filter_bytes(p->ar, -1), "%s", ar_why(p->ar));
    if (++entries > PK_LIMIT_EXTRACT_ENTRIES)
      return st_error_set(&j->err, ST_E2BIG, j->where, -1, "more than %u members", (unsigned)PK_LIMIT_EXTRACT_ENTRIES);
    int rc = do_entry(j, p->ar, p->root, e, &p->total);
    if (rc) return rc;
    if (st_cancelled(j->c)) return st_error_set(&j->err, ST_ECANCELED, j->where, -1, "interrupted");
  }
}

/* The tar ends before the gzip stream does: inflate what follows (the
 * tar's zero padding) to the end, so ISA-L checks the trailer (CRC-32 and
 * length) and a truncated or corrupt tail is an error, not a silent pass. */
static int run_gzip_trailer(dx_pass *p) {
  dx_job *j = p->j;
  if (!p->r.gzip) return 0;
  const void *b;
  la_ssize_t n;
  do
    n = rd_cb(p->ar, &p->r, &b);
  while (n > 0);
  if (n < 0)
    return st_error_set(&j->err, st_cancelled(j->c) ? ST_ECANCELED : ST_EFORMAT, j->where,
                        (long long)atomic_load(&j->in_bytes), "after the last member: %s", ar_why(p->ar));
  return 0;
}

/* Stops the inflater, frees the reader and closes DIR; once DIR was open,
 * a DIR this run made and left empty (nothing could be read) goes.
 * Returns rc, or the job's error. */
static int run_end(dx_pass *p, int rc) {
  dx_job *j = p->j;
  inflater_stop(&p->r);
  if (p->ar) archive_read_free(p->ar);
  ring_free(&p->r.ring);
  if (p->root < 0) return rc;
  close(p->root);
  if (!rc && j->err.code) rc = j->err.code;
  if (rc && j->made_dest && rmdir(j->dest) == 0) j->made_dest = 0;
  return rc;
}

int dx_run(dx_job *j) {
  st_error_clear(&j->err);
  dx_pass p;
  memset(&p, 0, sizeof p);
  p.j = j;
  p.r.j = j;
  p.root = -1;
  int rc = run_peek(&p);
  if (!rc && j->needs_file) return 0; /* dx_extract_file runs it again on the whole file */
  if (!rc) rc = run_open_dest(&p);
  if (!rc) rc = run_open_archive(&p);
  if (!rc) rc = run_entries(&p);
  if (!rc) rc = run_gzip_trailer(&p);
  return run_end(&p, rc);
}

/* ---- %extract ---- */
int dx_ratio_opt(const st_args *a, uint64_t *ratio, st_error *err) {
  long long r;
  int rc = st_arg_int(a, "max-ratio", PK_LIMIT_EXTRACT_RATIO, 0, 1000000000, &r, err);
  if (!rc) *ratio = r ? (uint64_t)r : DX_NO_RATIO;
  return rc;
}

typedef struct {
  int fd;
  int fifo;              /* a pipe: read with fio_read_wait */
  atomic_int stop;       /* the extractor wants no more (file_abort) */
  st_ctx *c;
  uint8_t *buf;
  st_error *err;
  const char *path;
} file_src;

/* A wait for a pipe's bytes ends at an interrupt, or once the extractor
 * stopped (an inflater thread may be waiting). */
static int file_stopped(void *ud) {
  file_src *f = ud;
  return atomic_load(&f->stop) || st_cancelled(f->c);
}

static void file_abort(void *ud) { atomic_store(&((file_src *)ud)->stop, 1); }

/* progress from the extracting thread (the stage thread here) */
static void file_tick(void *ud, uint64_t in_bytes) { st_progress_update(ud, in_bytes); }

static int64_t file_seek(void *ud, int64_t off, int from_end) {
  file_src *f = ud;
  off_t to = lseek(f->fd, (off_t)off, from_end ? SEEK_END : SEEK_SET);
  if (to < 0) st_error_errno(f->err, errno, f->path, "seek failed");
  return (int64_t)to;
}

static ssize_t file_pull(void *ud, const void **buf) {
  file_src *f = ud;
  for (;;) {
    ssize_t n = f->fifo ? fio_read_wait(f->fd, f->buf, 1u << 20, file_stopped, f) : read(f->fd, f->buf, 1u << 20);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st_error_errno(f->err, errno, f->path, "read failed");
      return -1;
    }
    *buf = f->buf;
    return n;
  }
}

void dx_report(st_ctx *c, const dx_job *j, double dt, const char *into, const char *note) {
  uint64_t out = atomic_load(&j->out_bytes), files = atomic_load(&j->files);
  char b1[32], r1[32];
  st_fmt_bytes(b1, sizeof b1, out);
  st_fmt_rate(r1, sizeof r1, out, dt);
  esc_buf ei;
  st_printf(c, "extract: %s, %llu file%s%s%s in %.2f s (%s%s%s)\n", b1, (unsigned long long)files,
            files == 1 ? "" : "s", into ? " into " : "", into ? esc_name(&ei, into) : "", dt, r1, note ? "; " : "",
            note ? note : "");
  pc_timing_add(c, j->cache, "extract", "extract", dt, out, files, j->backend, NULL);
}

int dx_extract_file(st_ctx *c, dx_job *j, const char *path, const char *name) {
  st_error ferr; /* the file's own errors (errno, path) say more than libarchive's */
  st_error_clear(&ferr);
  /* a regular file or a pipe (never waited on at the open, and read with
   * waits an interrupt ends); a device or a socket is refused */
  struct stat st;
  file_src fs = {.fd = fio_open(path, O_RDONLY, FIO_FILE | FIO_FIFO, "the archive", &st, &j->err),
                 .c = c, .err = &ferr, .path = path};
  if (fs.fd < 0) return fs.fd;
  fs.fifo = S_ISFIFO(st.st_mode);
  atomic_init(&fs.stop, 0);
  posix_fadvise(fs.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  fs.buf = malloc(1u << 20);
  if (!fs.buf) {
    close(fs.fd);
    return st_error_set(&j->err, ST_ENOMEM, path, -1, "out of memory");
  }
  j->pull = file_pull;
  j->seek = fs.fifo ? NULL : file_seek;
  j->abort = file_abort;
  j->ud = &fs;
  atomic_store(&j->in_bytes, 0);
  st_progress p;
  char label[200];
  snprintf(label, sizeof label, "extract %.180s", name);
  st_progress_begin(c, &p, label, "B", (uint64_t)st.st_size);
  j->tick = file_tick;
  j->tick_ud = &p;
  int rc = dx_run(j);
  if (rc && ferr.code) rc = (j->err = ferr).code;
  if (!rc && j->needs_file) /* a pipe cannot seek */
    rc = st_error_set(&j->err, ST_EINVAL, path, -1,
                      "a zip or 7-Zip archive keeps its directory at the end: it is read from a "
                      "regular file, with seeks, not from a pipe");
  st_progress_update(&p, atomic_load(&j->in_bytes));
  st_progress_end(&p, rc);
  j->tick = NULL;
  j->abort = NULL;
  j->pull = NULL;
  j->seek = NULL;
  j->ud = NULL;
  close(fs.fd);
  free(fs.buf);
  return rc;
}

int dx_extract(st_ctx *c, const st_args *a, st_error *err) {
  const char *path = a->pos[0], *dest = st_arg_str(a, "to", NULL);
  if (!dest) return st_error_set(err, ST_EINVAL, "extract", -1, "--to DIR is required");
  const char *inf = st_arg_str(a, "inflater", "auto");
  int inflater = !strcmp(inf, "auto") ? 0 : !strcmp(inf, "isal") ? 1 : !strcmp(inf, "libarchive") ? 2 : -1;
  if (inflater < 0)
    return st_error_set(err, ST_EINVAL, "--inflater", -1, "expected auto, isal or libarchive, got \"%.40s\"", inf);
  dx_job j;
  memset(&j, 0, sizeof j);
  int rc = dx_ratio_opt(a, &j.max_ratio, err);
  if (rc) return rc;
  j.c = c;
  j.where = path;
  j.dest = dest;
  j.inflater = inflater;
  pc_stats cache;
  pc_init(&cache, st_arg_has(a, "cold"));
  j.cache = &cache;
  pc_note_fs(&cache, path);
  pc_prepare_path(&cache, path);
  pc_report(c, "extract", &cache);
  double t0 = st_now();
  rc = dx_extract_file(c, &j, path, path);
  double dt = st_now() - t0;
  if (rc) {
    *err = j.err;
    dx_job_free(&j);
    return rc;
  }
  dx_report(c, &j, dt, NULL, NULL);
  dx_job_free(&j);
  return 0;
}
