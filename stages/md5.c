/*
 * md5.c -- %md5 and md5 helpers (see md5.h).
 */
#include "md5.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const st_option dk_md5_opts[] = {
    {"expect", 1, "HEX", "the md5 the file must have (32 hex digits)"},
    {NULL, 0, NULL, NULL}};

void dk_md5_hex(const unsigned char d[16], char out[33]) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[2 * i] = hx[d[i] >> 4];
    out[2 * i + 1] = hx[d[i] & 15];
  }
  out[32] = 0;
}

void dk_md5_hex_of(const void *b, size_t n, char out[33]) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int dl = 0;
  EVP_Digest(b, n, d, &dl, EVP_md5(), NULL);
  dk_md5_hex(d, out);
}

int dk_md5_valid_hex(const char *s) {
  size_t i = 0;
  for (; s[i]; i++)
    if (!isxdigit((unsigned char)s[i])) return 0;
  return i == 32;
}

int dk_md5_fd(int fd, const char *where, unsigned char *buf, size_t cap, st_ctx *c,
              atomic_uint_fast64_t *bytes, char out[33], st_error *err) {
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  if (!m || EVP_DigestInit_ex(m, EVP_md5(), NULL) != 1) {
    EVP_MD_CTX_free(m);
    return st_error_set(err, ST_EINTERNAL, where, -1, "OpenSSL md5 unavailable");
  }
  long long off = 0;
  for (;;) {
    if (c && st_cancelled(c)) {
      EVP_MD_CTX_free(m);
      return st_error_set(err, ST_ECANCELED, where, off, "interrupted");
    }
    ssize_t k = read(fd, buf, cap);
    if (k < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      EVP_MD_CTX_free(m);
      st_error_errno(err, e, where, "read failed");
      err->offset = off;
      return err->code;
    }
    if (k == 0) break;
    EVP_DigestUpdate(m, buf, (size_t)k);
    off += k;
    if (bytes) atomic_fetch_add(bytes, (uint64_t)k);
  }
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int dl = 0;
  EVP_DigestFinal_ex(m, d, &dl);
  EVP_MD_CTX_free(m);
  dk_md5_hex(d, out);
  return 0;
}

/* ---- hashing from a mapping, with a guard against SIGBUS ----
 * A mapped file that another process truncates raises SIGBUS on the pages
 * it lost. The handler, installed once, jumps back into dk_md5_mapped when
 * the faulting address lies in the mapping this thread is hashing; any
 * other SIGBUS goes to the disposition that was there before (by default:
 * the fault repeats with SIG_DFL and ends the process, as it would have). */
static _Thread_local sigjmp_buf *tl_bus_jmp;
static _Thread_local const char *tl_bus_lo, *tl_bus_hi;
static struct sigaction g_bus_prev;
static pthread_once_t g_bus_once = PTHREAD_ONCE_INIT;
static int g_bus_ok;

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
  const char *a = si ? (const char *)si->si_addr : NULL;
  sigjmp_buf *j = tl_bus_jmp;
  if (j && a >= tl_bus_lo && a < tl_bus_hi) {
    tl_bus_jmp = NULL;
    siglongjmp(*j, 1);
  }
  if ((g_bus_prev.sa_flags & SA_SIGINFO) && g_bus_prev.sa_sigaction)
    g_bus_prev.sa_sigaction(sig, si, uc);
  else if (g_bus_prev.sa_handler != SIG_DFL && g_bus_prev.sa_handler != SIG_IGN)
    g_bus_prev.sa_handler(sig);
  else
    signal(SIGBUS, SIG_DFL); /* the faulting access runs again and ends the process */
}

static void bus_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  g_bus_ok = sigaction(SIGBUS, &sa, &g_bus_prev) == 0;
}

/* What dk_md5_mapped needs after a jump lives on the heap, not in locals
 * that siglongjmp may leave indeterminate. */
typedef struct {
  EVP_MD_CTX *m;
  const unsigned char *p;
  uint64_t off;
} mapped_state;

__attribute__((noinline)) static int md5_mapped_steps(mapped_state *s, uint64_t size, size_t step, st_ctx *c,
                            atomic_uint_fast64_t *bytes) {
  while (s->off < size) {
    if (c && st_cancelled(c)) return ST_ECANCELED;
    size_t n = size - s->off < step ? (size_t)(size - s->off) : step;
    EVP_DigestUpdate(s->m, s->p + s->off, n);
    s->off += n;
    if (bytes) atomic_fetch_add(bytes, (uint64_t)n);
  }
  return 0;
}

/* md5_mapped_steps under the guard: its result, or 1 after a SIGBUS in the
 * mapping (s->off then says how far the hashing got). */
__attribute__((noinline)) static int md5_mapped_guarded(mapped_state *s, uint64_t size,
                                                         size_t step, st_ctx *c,
                                                         atomic_uint_fast64_t *bytes) {
  sigjmp_buf jb;
  if (sigsetjmp(jb, 1)) return 1;
  tl_bus_lo = (const char *)s->p;
  tl_bus_hi = (const char *)s->p + size;
  tl_bus_jmp = &jb;
  int rc = md5_mapped_steps(s, size, step, c, bytes);
  tl_bus_jmp = NULL;
  return rc;
}

int dk_md5_mapped(int fd, uint64_t size, const char *where, size_t step, st_ctx *c,
                  atomic_uint_fast64_t *bytes, char out[33], st_error *err) {
  pthread_once(&g_bus_once, bus_install);
  if (!step) step = 1u << 20;
  mapped_state *s = calloc(1, sizeof *s);
  if (!s) return st_error_set(err, ST_ENOMEM, where, -1, "out of memory");
  s->m = EVP_MD_CTX_new();
  int rc = 0;
  if (!s->m || EVP_DigestInit_ex(s->m, EVP_md5(), NULL) != 1)
    rc = st_error_set(err, ST_EINTERNAL, where, -1, "OpenSSL md5 unavailable");
  else if (size && !g_bus_ok)
    rc = st_error_set(err, ST_EINTERNAL, where, -1, "cannot guard a mapping (sigaction failed)");
  void *map = MAP_FAILED;
  if (!rc && size) {
    map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) rc = st_error_errno(err, errno, where, "cannot map");
    else {
      madvise(map, (size_t)size, MADV_SEQUENTIAL);
      s->p = map;
    }
  }
  if (!rc) {
    rc = md5_mapped_guarded(s, size, step, c, bytes);
    if (rc == ST_ECANCELED)
      rc = st_error_set(err, ST_ECANCELED, where, (long long)s->off, "interrupted");
    else if (rc == 1)
      rc = st_error_set(err, ST_EIO, where, (long long)s->off,
                        "the file shrank while it was being read (expected %llu bytes)",
                        (unsigned long long)size);
  }
  if (map != MAP_FAILED) munmap(map, (size_t)size);
  if (!rc) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(s->m, d, &dl);
    dk_md5_hex(d, out);
  }
  EVP_MD_CTX_free(s->m);
  free(s);
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

int dk_md5(st_ctx *c, const st_args *a, st_error *err) {
  const char *path = a->pos[0];
  const char *expect = st_arg_str(a, "expect", NULL);
  if (expect && !dk_md5_valid_hex(expect))
    return st_error_set(err, ST_EINVAL, "--expect", -1,
                        "expected 32 hex digits, got \"%.40s\"", expect);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return st_error_errno(err, errno, path, "cannot open");
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return st_error_set(err, ST_EINVAL, path, -1, "not a regular file");
  }
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);

  ring r;
  memset(&r, 0, sizeof r);
  r.fd = fd;
  r.c = c;
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);
  int rc = 0;
  for (int i = 0; i < MD5_RING; i++)
    if (!(r.buf[i] = malloc(MD5_CHUNK))) rc = st_error_set(err, ST_ENOMEM, path, -1, "out of memory");
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  if (!rc && (!m || EVP_DigestInit_ex(m, EVP_md5(), NULL) != 1))
    rc = st_error_set(err, ST_EINTERNAL, path, -1, "OpenSSL md5 unavailable");
  pthread_t th;
  int started = 0;
  if (!rc) {
    if (pthread_create(&th, NULL, reader, &r) == 0) started = 1;
    else rc = st_error_set(err, ST_EINTERNAL, path, -1, "cannot start the reader thread");
  }
  st_progress p;
  double t0 = st_now();
  char label[160];
  snprintf(label, sizeof label, "md5 %s", path);
  st_progress_begin(c, &p, label, "B", (uint64_t)st.st_size);
  uint64_t done = 0;
  while (!rc) {
    pthread_mutex_lock(&r.mu);
    while (r.count == 0 && !r.eof && !r.error) pthread_cond_wait(&r.cv, &r.mu);
    if (r.count == 0) {
      int e = r.error;
      pthread_mutex_unlock(&r.mu);
      if (e) {
        st_error_errno(err, e, path, "read failed");
        err->offset = (long long)done;
        rc = err->code;
      }
      break;
    }
    int slot = r.tail;
    size_t n = r.len[slot];
    pthread_mutex_unlock(&r.mu);
    EVP_DigestUpdate(m, r.buf[slot], n);
    done += n;
    pthread_mutex_lock(&r.mu);
    r.tail = (r.tail + 1) % MD5_RING;
    r.count--;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    st_progress_update(&p, done);
    if (st_cancelled(c)) rc = st_error_set(err, ST_ECANCELED, path, (long long)done, "interrupted");
  }
  if (started) {
    pthread_mutex_lock(&r.mu);
    r.stop = 1;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    pthread_join(th, NULL);
  }
  double dt = st_now() - t0;
  char hex[33] = "";
  if (!rc) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(m, d, &dl);
    dk_md5_hex(d, hex);
  }
  st_progress_end(&p, rc);
  EVP_MD_CTX_free(m);
  for (int i = 0; i < MD5_RING; i++) free(r.buf[i]);
  pthread_mutex_destroy(&r.mu);
  pthread_cond_destroy(&r.cv);
  close(fd);
  if (rc) return rc;
  char b1[32], r1[32];
  st_fmt_bytes(b1, sizeof b1, done);
  st_fmt_rate(r1, sizeof r1, done, dt);
  st_printf(c, "%s  %s\n", hex, path);
  st_timing_add(c, "integrity", "md5", dt, done, 1, "openssl-evp", hex);
  if (expect && strcasecmp(expect, hex) != 0) {
    st_printf(c, "integrity: %s in %.2f s (%s), MISMATCH\n", b1, dt, r1);
    return st_error_set(err, ST_ECHECKSUM, path, -1, "md5 mismatch: expected %.32s, got %s",
                        expect, hex);
  }
  st_printf(c, "integrity: %s in %.2f s (%s)%s\n", b1, dt, r1, expect ? ", md5 OK" : "");
  return 0;
}
