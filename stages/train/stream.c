/*
 * stream.c -- the reader thread of %train --from (stream.h).
 *
 * One lock guards the queue of finished windows, the count of files whose
 * images are held (queued, being assembled, or handed to the trainer and
 * not yet released) and the reader's state; two conditions: `room` (the
 * reader waits for a file's worth of room) and `ready` (the trainer waits
 * for a window). The reader reads outside the lock.
 */
#include "stream.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "cnn.h"
#include "lib/dynbuf.h"
#include "lib/limits.h"
#include "lib/strv.h"
#include "lib/session.h"
#include "load/load.h"
#include "s3/s3.h"

/* The context the reader gives s3_get: what is written is kept for the
 * stage thread, nothing is displayed, and the stage's interrupt is its. */
typedef struct relay {
  st_ctx ctx;
  st_ctx *real;
  pthread_mutex_t mu;
  dynbuf text;
} relay;

struct tr_stream {
  tr_stream_opts o;
  int s3;                  /* the files are S3 objects (paths are s3:// URLs) */
  relay rl;
  ld_file *files;          /* path and num only; opened one at a time by the reader */
  size_t nf;
  uint64_t set_bytes;
  pc_stats cache;

  pthread_t th;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t room, ready;
  tr_window *head, *tail;  /* finished windows, in order */
  size_t held;             /* files whose images are held */
  size_t peak;
  int stop;                /* the trainer is gone: stop at the next file */
  int done;                /* the reader finished every epoch */
  int failed;              /* the reader stopped on rerr */
  st_error rerr;
  uint64_t bytes;          /* of the files read */
  double busy;             /* seconds spent reading */
};

/* The file order of one epoch: a generator seeded from the seed (apart
 * from the weights' and the images' generators) serves every epoch in
 * turn. */
static uint64_t order_seed(uint64_t seed) { return seed ^ 0xF11E5F11E5F11E5Full; }

static void relay_write(st_ctx *c, int stream, const char *buf, size_t len) {
  (void)stream;
  relay *r = c->fe;
  pthread_mutex_lock(&r->mu);
  dyn_add(&r->text, buf, len); /* past its cap, later lines are dropped */
  pthread_mutex_unlock(&r->mu);
}

static void relay_display(st_ctx *c, const st_mime *items, int n, const char *id, int update) {
  (void)c, (void)items, (void)n, (void)id, (void)update;
}

static void relay_progress(st_ctx *c, const st_progress *p) { (void)c, (void)p; }

static int relay_cancelled(st_ctx *c) {
  relay *r = c->fe;
  return st_cancelled(r->real);
}

static void relay_init(relay *r, st_ctx *real) {
  memset(r, 0, sizeof *r);
  r->real = real;
  r->ctx.fe = r;
  r->ctx.write = relay_write;
  r->ctx.display = relay_display;
  r->ctx.progress = relay_progress;
  r->ctx.cancelled = relay_cancelled;
  r->ctx.cur_magic = "train";
  pthread_mutex_init(&r->mu, NULL);
  dyn_init(&r->text, 1u << 20);
}

static int sink_add(void *ud, const uint8_t *p, size_t n) {
  dynbuf *b = ud;
  return dyn_add(b, p, n);
}

/* Reads S3 object url (size bytes, as listed) whole into b through ctx. */
static int s3_read(st_ctx *ctx, const st_args *a, const char *url, uint64_t size, dynbuf *b,
                   st_error *err) {
  if (size > PK_LIMIT_PICKLE_FILE_BYTES)
    return st_error_set(err, ST_E2BIG, url, -1, "%llu bytes; at most %llu (PK_LIMIT_PICKLE_FILE_BYTES)",
                        (unsigned long long)size, (unsigned long long)PK_LIMIT_PICKLE_FILE_BYTES);
  dyn_init(b, (size_t)PK_LIMIT_PICKLE_FILE_BYTES);
  if (size && !dyn_reserve(b, (size_t)size)) return st_error_set(err, ST_ENOMEM, url, -1, "out of memory");
  s3_get_obj o;
  memset(&o, 0, sizeof o);
  o.path = url;
  o.fd = -1;
  o.sink = sink_add;
  o.sink_ud = b;
  int rc = s3_get(ctx, a, url, &o, NULL, err);
  if (!rc && b->err) rc = st_error_set(err, b->err, url, -1, "cannot hold the object in memory");
  return rc;
}

int tr_s3_fetch(st_ctx *c, const st_args *a, const char *url, uint8_t **buf, size_t *len,
                st_error *err) {
  dynbuf b;
  int rc = s3_read(c, a, url, 0, &b, err);
  if (rc) {
    dyn_free(&b);
    return rc;
  }
  *buf = (uint8_t *)dyn_take(&b, len);
  if (!*buf) *buf = malloc(1);
  return *buf ? 0 : st_error_set(err, ST_ENOMEM, url, -1, "out of memory");
}

void tr_stream_flush(tr_stream *s, st_ctx *c) {
  if (!s || !s->s3) return;
  pthread_mutex_lock(&s->rl.mu);
  if (s->rl.text.len) st_write(c, 2, s->rl.text.p, s->rl.text.len);
  dyn_reset(&s->rl.text);
  pthread_mutex_unlock(&s->rl.mu);
}

static void window_free(tr_window *w) {
  if (!w) return;
  if (w->pixels) munmap(w->pixels, w->cap);
  free(w->labels);
  free(w->files);
  free(w);
}

/* Waits until one more file's images may be held (or the trainer is
 * gone): 0, or 1 to stop. */
static int wait_room(tr_stream *s) {
  size_t cap = (size_t)s->o.window + (size_t)s->o.prefetch;
  pthread_mutex_lock(&s->mu);
  while (!s->stop && s->held >= cap) pthread_cond_wait(&s->room, &s->mu);
  int stop = s->stop;
  if (!stop) {
    s->held++;
    if (s->held > s->peak) s->peak = s->held;
  }
  pthread_mutex_unlock(&s->mu);
  return stop;
}

/* Room for `bytes` pixel bytes in w: an anonymous mapping with huge pages
 * advised (the trainer reads its images in random order, as it reads a
 * %load'ed split), sized at first for the files' sizes, which bound their
 * pixels, and moved to a larger one only if a file grew since. */
static int window_room(tr_window *w, size_t bytes) {
  if (bytes <= w->cap && w->pixels) return 0;
  size_t cap = bytes > w->cap ? bytes : w->cap;
  if (cap == 0) cap = 1;
  void *m = w->pixels ? mremap(w->pixels, w->cap, cap, MREMAP_MAYMOVE)
                      : mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return -1;
  madvise(m, cap, MADV_HUGEPAGE);
  w->pixels = m;
  w->cap = cap;
  return 0;
}

/* Appends file fi's images to w: open (map, parse, check), grow the
 * window, copy the pixels and labels, drop the mapping. */
static int read_file(tr_stream *s, tr_window *w, size_t fi, st_error *err) {
  double t0 = st_now();
  ld_file f;
  memset(&f, 0, sizeof f);
  f.path = s->files[fi].path;
  dynbuf obj = DYN_INIT(0);
  int rc = s->s3 ? s3_read(&s->rl.ctx, s->o.a, f.path, s->files[fi].size, &obj, err)
                 : ld_file_open(&f, s->o.n_classes, &s->cache, err);
  if (!rc && s->s3) rc = ld_file_open_mem(&f, (const uint8_t *)obj.p, obj.len, s->o.n_classes, err);
  size_t n = rc ? 0 : f.b.n, at = w->n;
  if (!rc && n > (SIZE_MAX / SS_IMAGE_BYTES) - at)
    rc = st_error_set(err, ST_E2BIG, f.path, -1, "too many images in one window");
  uint8_t *px = NULL, *lb = NULL;
  tr_wfile *wf = NULL;
  if (!rc) {
    px = window_room(w, (at + n) * SS_IMAGE_BYTES) == 0 ? w->pixels : NULL;
    lb = realloc(w->labels, at + n + 1);
    if (lb) w->labels = lb;
    wf = realloc(w->files, (w->nfiles + 1) * sizeof *wf);
    if (wf) w->files = wf;
    if (!px || !lb || !wf) rc = st_error_set(err, ST_ENOMEM, f.path, -1, "out of memory");
  }
  if (!rc) rc = ld_file_copy(&f, w->pixels + at * SS_IMAGE_BYTES, err);
  if (!rc) {
    memcpy(w->labels + at, f.b.labels, n);
    w->files[w->nfiles++] = (tr_wfile){fi, at, n};
    w->n += n;
    w->file_bytes += f.size;
  }
  uint64_t size = f.size;
  ld_file_release(&f);
  dyn_free(&obj);
  pthread_mutex_lock(&s->mu);
  if (!rc) s->bytes += size;
  s->busy += st_now() - t0;
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* Ends the reader's work: done, or failed with err; wakes the trainer. */
static void reader_end(tr_stream *s, int rc, const st_error *err) {
  pthread_mutex_lock(&s->mu);
  if (rc && rc != 1) {
    s->failed = 1;
    s->rerr = *err;
    if (!s->rerr.code) s->rerr.code = rc;
  } else {
    s->done = 1;
  }
  pthread_cond_broadcast(&s->ready);
  pthread_mutex_unlock(&s->mu);
}

/* Assembles one window of the files order[k .. k+W) of epoch ep and
 * queues it. 0, 1 (stopped), or an error. */
static int reader_window(tr_stream *s, const uint32_t *order, size_t k, long long ep,
                         st_error *err) {
  size_t W = (size_t)s->o.window, end = k + W < s->nf ? k + W : s->nf;
  tr_window *w = calloc(1, sizeof *w);
  if (!w) return st_error_set(err, ST_ENOMEM, s->o.root, -1, "out of memory");
  w->epoch = ep;
  w->last = end == s->nf;
  size_t guess = 0; /* the files' sizes bound their pixels */
  for (size_t f = k; f < end; f++) guess += s->files[order[f]].size;
  w->cap = guess;
  int rc = 0;
  size_t taken = 0;
  for (size_t f = k; f < end && !rc; f++) {
    rc = wait_room(s);
    if (!rc) {
      taken++;
      rc = read_file(s, w, order[f], err);
    }
  }
  pthread_mutex_lock(&s->mu);
  if (rc) {
    s->held -= taken; /* never handed on */
    pthread_cond_broadcast(&s->room);
  } else {
    if (s->tail) s->tail->next = w;
    else s->head = w;
    s->tail = w;
    pthread_cond_broadcast(&s->ready);
  }
  pthread_mutex_unlock(&s->mu);
  if (rc) window_free(w);
  return rc;
}

static void *reader_main(void *arg) {
  tr_stream *s = arg;
  st_error err;
  st_error_clear(&err);
  uint32_t *order = malloc((s->nf ? s->nf : 1) * sizeof *order);
  int rc = order ? 0 : st_error_set(&err, ST_ENOMEM, s->o.root, -1, "out of memory");
  cnn_rng rng = {order_seed(s->o.seed)};
  for (long long ep = 0; !rc && ep < s->o.epochs; ep++) {
    cnn_shuffle(&rng, order, s->nf);
    for (size_t k = 0; !rc && k < s->nf; k += (size_t)s->o.window)
      rc = reader_window(s, order, k, ep, &err);
  }
  free(order);
  reader_end(s, rc, &err);
  return NULL;
}

static int cmp_file(const void *a, const void *b) {
  const ld_file *x = a, *y = b;
  if (x->num != y->num) return x->num < y->num ? -1 : 1;
  return strcmp(x->path, y->path);
}

/* The data_batch_<digits> objects right below the prefix, in numeric
 * order, with their listed sizes (as ld_list_batches lists files). */
static int s3_list_batches(tr_stream *s, st_error *err) {
  strv keys = {0};
  uint64_t *sizes = NULL;
  char bucket[64], prefix[PK_LIMIT_S3_KEY_BYTES + 1];
  int rc = s3_parse_url(s->o.root, bucket, sizeof bucket, prefix, sizeof prefix, err);
  if (!rc) rc = s3_list_prefix(s->o.c, s->o.a, s->o.root, &keys, &sizes, err);
  size_t cap = 0, pl = strlen(prefix);
  for (size_t i = 0; !rc && i < keys.n; i++) {
    const char *rest = keys.v[i] + pl;
    if (strncmp(rest, "data_batch_", 11) != 0) continue;
    const char *p = rest + 11;
    size_t k = strspn(p, "0123456789");
    if (k == 0 || p[k] || k > 18) continue;
    if (s->nf >= PK_LIMIT_LOAD_FILES) {
      rc = st_error_set(err, ST_E2BIG, s->o.root, -1, "more than %d data_batch objects (PK_LIMIT_LOAD_FILES)",
                        PK_LIMIT_LOAD_FILES);
      break;
    }
    size_t ul = strlen(keys.v[i]) + strlen(bucket) + 7;
    char *url = malloc(ul);
    if (!url || dyn_grow_array(&s->files, &cap, s->nf + 1, sizeof *s->files, PK_LIMIT_LOAD_FILES)) {
      free(url);
      rc = st_error_set(err, ST_ENOMEM, s->o.root, -1, "out of memory");
      break;
    }
    snprintf(url, ul, "s3://%s/%s", bucket, keys.v[i]);
    ld_file *f = &s->files[s->nf++];
    memset(f, 0, sizeof *f);
    f->path = url;
    f->num = strtoull(p, NULL, 10);
    f->size = (size_t)sizes[i];
  }
  if (!rc && s->nf) qsort(s->files, s->nf, sizeof *s->files, cmp_file);
  strv_free(&keys);
  free(sizes);
  return rc;
}

int tr_stream_open(tr_stream **out, const tr_stream_opts *o, st_error *err) {
  *out = NULL;
  tr_stream *s = calloc(1, sizeof *s);
  if (!s) return st_error_set(err, ST_ENOMEM, o->root, -1, "out of memory");
  s->o = *o;
  s->s3 = strncmp(o->root, "s3://", 5) == 0;
  pc_init(&s->cache, o->cold);
  if (s->s3) snprintf(s->cache.fs, sizeof s->cache.fs, "s3 %.150s", o->root);
  else pc_note_fs(&s->cache, o->root);
  relay_init(&s->rl, o->c);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->room, NULL);
  pthread_cond_init(&s->ready, NULL);
  int rc = s->s3 ? s3_list_batches(s, err) : ld_list_batches(o->root, &s->files, &s->nf, err);
  if (!rc && s->nf == 0)
    rc = st_error_set(err, ST_ENOENT, o->root, -1, "no data_batch_* files to train from");
  if (!rc && s->nf > UINT32_MAX) rc = st_error_set(err, ST_E2BIG, o->root, -1, "too many files");
  /* the sizes, for the progress bar (a file that changes afterwards only
   * moves the bar; the reader checks each file when it opens it) */
  for (size_t i = 0; !rc && !s->s3 && i < s->nf; i++) {
    struct stat st;
    s->files[i].size = 0;
    if (stat(s->files[i].path, &st) == 0 && S_ISREG(st.st_mode)) s->files[i].size = (size_t)st.st_size;
    s->set_bytes += s->files[i].size;
  }
  for (size_t i = 0; !rc && s->s3 && i < s->nf; i++) s->set_bytes += s->files[i].size;
  if (!rc && pthread_create(&s->th, NULL, reader_main, s) != 0)
    rc = st_error_set(err, ST_EINTERNAL, o->root, -1, "cannot start the reader thread");
  if (rc) {
    tr_stream_close(s);
    return rc;
  }
  s->started = 1;
  *out = s;
  return 0;
}

int tr_stream_next(tr_stream *s, st_ctx *c, tr_window **w, double *stall, st_error *err) {
  *w = NULL;
  double t0 = st_now();
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->head) {
      *w = s->head;
      s->head = s->head->next;
      if (!s->head) s->tail = NULL;
      (*w)->next = NULL;
      break;
    }
    if (s->failed) {
      rc = st_error_set(err, s->rerr.code, s->rerr.where, s->rerr.offset, "%s", s->rerr.text);
      break;
    }
    if (s->done) {
      rc = 1;
      break;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->ready, &s->mu, &ts);
    if (!s->head && st_cancelled(c)) {
      rc = ST_ECANCELED;
      break;
    }
  }
  pthread_mutex_unlock(&s->mu);
  *stall += st_now() - t0;
  return rc;
}

void tr_stream_release(tr_stream *s, tr_window *w) {
  if (!w) return;
  pthread_mutex_lock(&s->mu);
  s->held -= w->nfiles <= s->held ? w->nfiles : s->held;
  pthread_cond_broadcast(&s->room);
  pthread_mutex_unlock(&s->mu);
  window_free(w);
}

void tr_stream_close(tr_stream *s) {
  if (!s) return;
  if (s->started) {
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
  }
  while (s->head) {
    tr_window *n = s->head->next;
    window_free(s->head);
    s->head = n;
  }
  ld_files_free(s->files, s->nf);
  pthread_mutex_destroy(&s->rl.mu);
  dyn_free(&s->rl.text);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->room);
  pthread_cond_destroy(&s->ready);
  free(s);
}

size_t tr_stream_files(const tr_stream *s) { return s->nf; }

const char *tr_stream_file_name(const tr_stream *s, size_t i) {
  const char *p = s->files[i].path, *slash = strrchr(p, '/');
  return slash ? slash + 1 : p;
}

uint64_t tr_stream_set_bytes(const tr_stream *s) { return s->set_bytes; }

void tr_stream_stats(tr_stream *s, uint64_t *bytes, double *busy, size_t *peak_files) {
  pthread_mutex_lock(&s->mu);
  if (bytes) *bytes = s->bytes;
  if (busy) *busy = s->busy;
  if (peak_files) *peak_files = s->peak;
  pthread_mutex_unlock(&s->mu);
}

const pc_stats *tr_stream_cache(const tr_stream *s) { return &s->cache; }
