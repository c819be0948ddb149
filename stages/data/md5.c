/*
 * md5.c -- %md5 and md5 helpers (see md5.h).
 */
#include "md5.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/escape.h"
#include "lib/fileio.h"
#include "lib/cache.h"
#include "lib/mapguard.h"

const st_option md5_opts[] = {
    {"expect", 1, "HEX", "the md5 the file must have (32 hex digits)"},
    PC_COLD_OPTION,
    {NULL, 0, NULL, NULL}};

void md5_hex(const unsigned char d[16], char out[33]) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[2 * i] = hx[d[i] >> 4];
    out[2 * i + 1] = hx[d[i] & 15];
  }
  out[32] = 0;
}

void md5_hex_of(const void *b, size_t n, char out[33]) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int dl = 0;
  EVP_Digest(b, n, d, &dl, EVP_md5(), NULL);
  md5_hex(d, out);
}

int md5_valid_hex(const char *s) {
  size_t i = 0;
  for (; s[i]; i++)
    if (!isxdigit((unsigned char)s[i])) return 0;
  return i == 32;
}

/* ---- hashing from a mapping ---- */
int md5_mapped(int fd, uint64_t size, const char *where, size_t step, st_ctx *c,
                  atomic_uint_fast64_t *bytes, char out[33], st_error *err) {
  if (!step) step = 1u << 20;
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  if (!m || EVP_DigestInit_ex(m, EVP_md5(), NULL) != 1) {
    EVP_MD_CTX_free(m);
    return st_error_set(err, ST_EINTERNAL, where, -1, "OpenSSL md5 unavailable");
  }
  const unsigned char *map = NULL;
  if (size) {
    void *v = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (v == MAP_FAILED) {
      int e = errno;
      EVP_MD_CTX_free(m);
      return st_error_errno(err, e, where, "cannot map");
    }
    madvise(v, (size_t)size, MADV_SEQUENTIAL);
    map = v;
  }
  int rc = 0;
  mapguard g;
  if (size && mapguard_begin(&g, map, (size_t)size))
    rc = st_error_set(err, ST_EINTERNAL, where, -1, "cannot guard the mapping (sigaction failed)");
  uint64_t off = 0;
  while (!rc && off < size) {
    if (c && st_cancelled(c)) {
      rc = st_error_set(err, ST_ECANCELED, where, (long long)off, "interrupted");
      break;
    }
    size_t n = size - off < step ? (size_t)(size - off) : step;
    EVP_DigestUpdate(m, map + off, n);
    off += n;
    if (bytes) atomic_fetch_add(bytes, (uint64_t)n);
  }
  size_t lost = 0;
  if (size && mapguard_end(&g, &lost) && !rc)
    rc = st_error_set(err, ST_EIO, where, (long long)lost,
                      "the file shrank while it was being read (expected %llu bytes)",
                      (unsigned long long)size);
  if (map) munmap((void *)map, (size_t)size);
  if (!rc) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(m, d, &dl);
    md5_hex(d, out);
  }
  EVP_MD_CTX_free(m);
  return rc;
}

/* ---- %md5: a reader thread fills a ring of chunks, the stage thread hashes ----
 * 4 x 1 MiB: the hashing is as fast as with larger chunks, and fewer fresh
 * pages to fault in (measured: 3 % less CPU than 4 x 4 MiB). */
#define MD5_CHUNK (1u << 20)
#define MD5_RING 4

typedef struct {
  int fd;
  st_ctx *c;
  unsigned char *buf[MD5_RING];
  size_t len[MD5_RING];
  int head, tail, count; /* filled slots: [tail, tail+count) */
  int eof, error, stop;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} ring;

static void *reader(void *arg) {
  ring *r = arg;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    while (r->count == MD5_RING && !r->stop) pthread_cond_wait(&r->cv, &r->mu);
    int slot = r->head, stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    if (stop) return NULL;
    size_t got = 0;
    int e = 0;
    while (got < MD5_CHUNK) {
      ssize_t k = read(r->fd, r->buf[slot] + got, MD5_CHUNK - got);
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) { e = errno; break; }
      if (k == 0) break;
      got += (size_t)k;
    }
    pthread_mutex_lock(&r->mu);
    if (e) r->error = e;
    else if (got == 0) r->eof = 1;
    else {
      r->len[slot] = got;
      r->head = (r->head + 1) % MD5_RING;
      r->count++;
      if (got < MD5_CHUNK) r->eof = 1;
    }
    pthread_cond_broadcast(&r->cv);
    int done = r->eof || r->error;
    pthread_mutex_unlock(&r->mu);
    if (done) return NULL;
  }
}

/* Everything one %md5 holds; md5_cleanup releases it whatever step failed. */
typedef struct md5_job {
  st_ctx *c;
  st_error *err;
  const char *path;
  const char *expect;    /* --expect, checked: 32 hex digits */
  int fd;
  uint64_t size;
  ring r;                /* filled by the reader thread */
  int ring_ready;        /* r's lock and condition are initialised */
  EVP_MD_CTX *m;
  pthread_t th;
  int started;           /* the reader thread runs and must be stopped */
  st_progress p;
  int pstarted;
  double t0, dt;
  uint64_t done;         /* bytes hashed */
  char hex[33];
  pc_stats cache;        /* where FILE is read from (--cold) */
} md5_job;

/* Opens FILE (a regular file, without blocking on anything else), read
 * ahead sequentially. */
static int md5_open(md5_job *j) {
  struct stat st;
  j->fd = fio_open(j->path, O_RDONLY, FIO_FILE, NULL, &st, j->err); /* never blocks (a FIFO) */
  if (j->fd < 0) return j->fd;
  j->size = (uint64_t)st.st_size;
  pc_note_fs(&j->cache, j->path);
  pc_prepare(&j->cache, j->fd, j->size);
  pc_report(j->c, "md5", &j->cache);
  posix_fadvise(j->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  posix_fadvise(j->fd, 0, 0, POSIX_FADV_WILLNEED);
  return 0;
}

/* Opens the progress bar "md5 FILE"; the time counts from here. */
static int md5_begin_progress(md5_job *j) {
  j->t0 = st_now();
  char label[160];
  snprintf(label, sizeof label, "md5 %s", j->path);
  st_progress_begin(j->c, &j->p, label, "B", j->size);
  j->pstarted = 1;
  return 0;
}

/* The ring's chunks, the md5 and the reader thread that fills the ring. */
static int md5_start(md5_job *j) {
  j->r.fd = j->fd;
  j->r.c = j->c;
  pthread_mutex_init(&j->r.mu, NULL);
  pthread_cond_init(&j->r.cv, NULL);
  j->ring_ready = 1;
  int rc = 0;
  for (int i = 0; i < MD5_RING; i++) {
    j->r.buf[i] = malloc(MD5_CHUNK);
    if (!j->r.buf[i]) rc = st_error_set(j->err, ST_ENOMEM, j->path, -1, "out of memory");
  }
  if (rc) return rc;
  j->m = EVP_MD_CTX_new();
  if (!j->m || EVP_DigestInit_ex(j->m, EVP_md5(), NULL) != 1)
    return st_error_set(j->err, ST_EINTERNAL, j->path, -1, "OpenSSL md5 unavailable");
  if (pthread_create(&j->th, NULL, reader, &j->r) != 0)
    return st_error_set(j->err, ST_EINTERNAL, j->path, -1, "cannot start the reader thread");
  j->started = 1;
  return 0;
}

/* Hashes the ring's chunks in order until the end of the file, a read
 * error (at its offset) or an interrupt. */
static int md5_hash(md5_job *j) {
  ring *r = &j->r;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    while (r->count == 0 && !r->eof && !r->error) pthread_cond_wait(&r->cv, &r->mu);
    if (r->count == 0) {
      int e = r->error;
      pthread_mutex_unlock(&r->mu);
      if (!e) return 0;
      st_error_errno(j->err, e, j->path, "read failed");
      j->err->offset = (long long)j->done;
      return j->err->code;
    }
    int slot = r->tail;
    size_t n = r->len[slot];
    pthread_mutex_unlock(&r->mu);
    EVP_DigestUpdate(j->m, r->buf[slot], n);
    j->done += n;
    pthread_mutex_lock(&r->mu);
    r->tail = (r->tail + 1) % MD5_RING;
    r->count--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    st_progress_update(&j->p, j->done);
    if (st_cancelled(j->c)) return st_error_set(j->err, ST_ECANCELED, j->path, (long long)j->done, "interrupted");
  }
}

/* Stops the reader thread (wherever it is) and waits for it. */
static void md5_stop_reader(md5_job *j) {
  if (!j->started) return;
  pthread_mutex_lock(&j->r.mu);
  j->r.stop = 1;
  pthread_cond_broadcast(&j->r.cv);
  pthread_mutex_unlock(&j->r.mu);
  pthread_join(j->th, NULL);
  j->started = 0;
}

/* Stops the reader, finishes the digest and closes the progress bar. */
static int md5_finish(md5_job *j) {
  md5_stop_reader(j);
  j->dt = st_now() - j->t0;
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int dl = 0;
  EVP_DigestFinal_ex(j->m, d, &dl);
  md5_hex(d, j->hex);
  st_progress_end(&j->p, 0);
  j->pstarted = 0;
  return 0;
}

/* The "HEX  FILE" line, the "integrity" timing and the summary; with
 * --expect a different digest is a ChecksumError. */
static int md5_report(md5_job *j) {
  char b1[32], r1[32];
  st_fmt_bytes(b1, sizeof b1, j->done);
  st_fmt_rate(r1, sizeof r1, j->done, j->dt);
  esc_buf eb;
  st_printf(j->c, "%s  %s\n", j->hex, esc_name(&eb, j->path));
  pc_timing_add(j->c, &j->cache, "integrity", "md5", j->dt, j->done, 1, "openssl-evp", j->hex);
  if (j->expect && strcasecmp(j->expect, j->hex) != 0) {
    st_printf(j->c, "integrity: %s in %.2f s (%s), MISMATCH\n", b1, j->dt, r1);
    return st_error_set(j->err, ST_ECHECKSUM, j->path, -1, "md5 mismatch: expected %.32s, got %s",
                        j->expect, j->hex);
  }
  st_printf(j->c, "integrity: %s in %.2f s (%s)%s\n", b1, j->dt, r1, j->expect ? ", md5 OK" : "");
  return 0;
}

/* Releases everything the job holds whatever step failed; returns rc. */
static int md5_cleanup(md5_job *j, int rc) {
  md5_stop_reader(j);
  if (j->pstarted) st_progress_end(&j->p, rc);
  EVP_MD_CTX_free(j->m);
  for (int i = 0; i < MD5_RING; i++) free(j->r.buf[i]);
  if (j->ring_ready) {
    pthread_mutex_destroy(&j->r.mu);
    pthread_cond_destroy(&j->r.cv);
  }
  if (j->fd >= 0) close(j->fd);
  return rc;
}

int md5_stage(st_ctx *c, const st_args *a, st_error *err) {
  md5_job j;
  memset(&j, 0, sizeof j);
  j.c = c;
  j.err = err;
  j.path = a->pos[0];
  j.expect = st_arg_str(a, "expect", NULL);
  j.fd = -1;
  pc_init(&j.cache, st_arg_has(a, "cold"));
  if (j.expect && !md5_valid_hex(j.expect))
    return st_error_set(err, ST_EINVAL, "--expect", -1, "expected 32 hex digits, got \"%.40s\"", j.expect);
  int rc = md5_open(&j);
  if (!rc) rc = md5_begin_progress(&j);
  if (!rc) rc = md5_start(&j);
  if (!rc) rc = md5_hash(&j);
  if (!rc) rc = md5_finish(&j);
  if (!rc) rc = md5_report(&j);
  return md5_cleanup(&j, rc);
}
