/*
 * get.c -- reading objects from S3 (s3.h: s3_get; tree.c: whole prefixes).
 *
 * Each object is read as ranges of --part-size bytes (of its part size, for
 * a multipart object whose layout is known), --jobs of them in flight,
 * spread over lanes: one thread per core (at most GET_MAX_LANES), each with
 * its own curl multi handle and its share of the GETs, all taking ranges
 * from one pending list. The stage thread makes the ranges, shows the
 * progress and the lanes' retry lines, and watches for the interrupt.
 *
 * When an object goes to a file and nothing needs its bytes in order (a
 * multipart object whose part size is known or guessed, without --md5; a
 * single PUT that one range holds), its answers are streamed: the lane
 * that receives them makes each part's md5 as the bytes arrive and writes
 * them at their offset, straight from curl's buffer, while they are still
 * in its cache. There is no range buffer, and the hashing is spread over
 * the cores with the receiving. --integrity headers writes so too, without
 * hashing.
 *
 * Otherwise each range is read into a buffer of its own. When a multipart
 * object's layout is known its ranges are whole parts, and hasher threads
 * make the md5 of each part as it arrives, in any order. One more thread,
 * the taker, takes the ranges in order: it writes each buffered range to
 * its file (pwrite at its offset), hashes what must be hashed in order (a
 * single PUT's md5, the whole md5 --md5 asks for, the part sizes tried when
 * the layout is not known), hands the bytes to the object's sink (the
 * extractor of %download), then gives the buffer back; for streamed ranges
 * it only keeps the order (what is checked from the start, which a resume
 * may keep). At most `window` ranges are held at once, so memory stays at
 * window x range size whatever the object's size.
 *
 * Every answer is checked before its bytes are used: 206 with exactly the
 * Content-Range asked for (start, end and the object's size), exactly that
 * many bytes, and the object's ETag (the request also carries If-Match, so
 * an object replaced meanwhile is a 412, not a splice of two versions).
 * Anything else is retried, then an error naming bucket, key and range.
 *
 * At the end of each object its ETag is checked end to end. A single PUT's
 * ETag is the md5 of the bytes. A multipart upload's is the md5 of its part
 * md5s, "-N": the part layout comes from HEAD ?partNumber=1 where the server
 * supports it (AWS, MinIO: x-amz-mp-parts-count and the part's length);
 * where it does not (Ceph RGW answers with the whole object), every part
 * size that gives N parts is a candidate, the usual ones first, and one of
 * them must match. When the object goes to a file, the first candidate is
 * hashed (by the lanes or the hashers) as if the server had said it, and only if it misses
 * are the others hashed, in order, over the bytes read back from the file;
 * otherwise (a sink only) the taker hashes them all as the bytes pass.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lib/escape.h"
#include "s3_int.h"

#define GET_MAX_LAYOUTS 8 /* part sizes hashed at once when the server does not say */
#define GET_PARALLEL_PART_MAX (64ull << 20) /* larger parts are hashed in order, in ranges */
#define GET_MAX_LANES 4 /* reading threads (one per core) */
/* Objects written by the lanes from this size up go past the page cache
 * (O_DIRECT, where the file system takes it): a download larger than RAM
 * does not evict what the page cache holds, costs no page-cache CPU (on a
 * small VM more than the copy itself), and its time is the storage's. */
#define GET_DIO_MIN (8ull << 20)

/* Range buffers are reused (with the job's lock held): fresh pages cost a
 * fault each. */
static uint8_t *get_buf(gjob *j) {
  if (j->npool) return j->pool[--j->npool];
  return malloc(j->bufsize ? (size_t)j->bufsize : 1);
}

static void put_buf(gjob *j, uint8_t *b) {
  if (b && j->npool < j->window) j->pool[j->npool++] = b;
  else free(b);
}

/* Wakes every lane from its poll (new ranges to start, or stop). */
static void wake_lanes(gjob *j) {
  for (int i = 0; i < j->nlanes; i++)
    if (j->lanes[i].multi) curl_multi_wakeup(j->lanes[i].multi);
}


/* ------------------------------------------------------------------ */
/* The part layout of a multipart object                               */
/* ------------------------------------------------------------------ */
/* N of an ETag "HEX-N" (1..S3_MAX_PARTS), 0 for a single PUT's "HEX", -1
 * when it is neither. */
int s3__etag_parts(const char *etag) {
  size_t n = strlen(etag);
  size_t h = 0;
  while (h < n && ((etag[h] >= '0' && etag[h] <= '9') || (etag[h] >= 'a' && etag[h] <= 'f'))) h++;
  if (h != 32) return -1;
  if (n == 32) return 0;
  if (etag[32] != '-' || n == 33 || n > 38) return -1;
  long v = 0;
  for (size_t i = 33; i < n; i++) {
    if (etag[i] < '0' || etag[i] > '9') return -1;
    v = v * 10 + (etag[i] - '0');
  }
  return v >= 1 && v <= S3_MAX_PARTS ? (int)v : -1;
}

static int gives_n_parts(uint64_t size, uint64_t p, int n) {
  return p > 0 && (size + p - 1) / p == (uint64_t)n && (n == 1 || p >= S3_MIN_PART || size <= p);
}

/* Part sizes that cut `size` bytes into n parts: the ones tools use first
 * (8 MiB: the AWS CLI, boto3, %upload; then 5, 16, 10, 15, 25, 32, 50, 64,
 * 100, 128 MiB and MB), then every other whole MiB and MB, at most max. */
int s3__layout_candidates(uint64_t size, int n, uint64_t *out, int max) {
  static const unsigned common[] = {8, 5, 16, 10, 15, 25, 32, 50, 64, 100, 128};
  int k = 0;
  if (n == 1) {
    out[k++] = size ? size : 1;
    return k;
  }
#define ADD(v)                                                                  \
  do {                                                                          \
    uint64_t v_ = (v);                                                          \
    int dup_ = 0;                                                               \
    for (int j_ = 0; j_ < k; j_++) dup_ |= out[j_] == v_;                       \
    if (!dup_ && k < max && gives_n_parts(size, v_, n)) out[k++] = v_;          \
  } while (0)
  for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) {
    ADD((uint64_t)common[i] << 20);
    ADD((uint64_t)common[i] * 1000000u);
  }
  /* every other whole MiB and MB between size/n and size/(n-1) */
  uint64_t lo = (size + (uint64_t)n - 1) / (uint64_t)n, hi = (size - 1) / (uint64_t)(n - 1);
  for (uint64_t m = lo >> 20; k < max && m <= (hi >> 20) + 1 && m <= 5120; m++) ADD(m << 20);
  for (uint64_t m = lo / 1000000u; k < max && m <= hi / 1000000u + 1 && m <= 5368; m++)
    ADD(m * 1000000u);
#undef ADD
  return k;
}

/* ------------------------------------------------------------------ */
/* Hashing in order (the taker)                                        */
/* ------------------------------------------------------------------ */
/* One candidate layout: the md5s of its parts (pm.psize bytes each). */
typedef struct layout {
  s3_pmd5 pm;
  uint8_t (*digests)[16];
} layout;

typedef struct ohash {
  EVP_MD_CTX *whole; /* NULL: the whole md5 is not needed */
  layout lay[GET_MAX_LAYOUTS];
  int nlay;
  int nparts;
  int parallel;      /* lay[0]'s digests come from the hashers (o->pdig) */
} ohash;

static void ohash_free(ohash *h) {
  EVP_MD_CTX_free(h->whole);
  for (int i = 0; i < h->nlay; i++) {
    s3__pmd5_free(&h->lay[i].pm);
    free(h->lay[i].digests);
  }
  memset(h, 0, sizeof *h);
}

static int ohash_init(ohash *h, const gobj *o) {
  memset(h, 0, sizeof *h);
  h->nparts = o->nparts;
  h->parallel = o->parallel;
  if (((!o->nparts && !o->headers_only) || o->pub->want_md5) && !o->one_range) {
    h->whole = EVP_MD_CTX_new();
    if (!h->whole || !EVP_DigestInit_ex(h->whole, EVP_md5(), NULL)) return -1;
  }
  for (int i = 0; o->nparts && i < o->nlayouts; i++) {
    layout *l = &h->lay[h->nlay++];
    l->digests = calloc((size_t)o->nparts, 16);
    if (!l->digests || s3__pmd5_start(&l->pm, o->layouts[i], l->digests, (size_t)o->nparts))
      return -1;
  }
  return 0;
}

static void ohash_update(ohash *h, const uint8_t *p, size_t n) {
  if (h->whole) EVP_DigestUpdate(h->whole, p, n);
  for (int i = 0; !h->parallel && i < h->nlay; i++) s3__pmd5_update(&h->lay[i].pm, p, n);
}

/* The object's end: its md5 (when hashed), and whether the ETag matched:
 * the part size whose md5 of part md5s gave it, 1 for a single PUT's md5,
 * 0 when nothing did. */
static uint64_t ohash_end(ohash *h, gobj *o) {
  if (o->one_range) s3__hex16(o->md5, o->pub->md5); /* a hasher made it */
  if (h->whole) {
    uint8_t d[16];
    unsigned dl = 0;
    EVP_DigestFinal_ex(h->whole, d, &dl);
    s3__hex16(d, o->pub->md5);
  }
  if (!o->nparts) return strcmp(o->pub->md5, o->pub->etag) == 0 ? 1 : 0; /* nonzero: matched */
  for (int i = 0; i < h->nlay; i++) {
    layout *l = &h->lay[i];
    s3__pmd5_end(&l->pm);
    if (l->pm.done != (size_t)h->nparts) continue;
    uint8_t d[16];
    unsigned dl = 0;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    if (!m) continue;
    EVP_DigestInit_ex(m, EVP_md5(), NULL);
    EVP_DigestUpdate(m, l->digests, (size_t)h->nparts * 16);
    EVP_DigestFinal_ex(m, d, &dl);
    EVP_MD_CTX_free(m);
    char hex[33], want[48];
    s3__hex16(d, hex);
    snprintf(want, sizeof want, "%s-%d", hex, h->nparts);
    if (strcmp(want, o->pub->etag) == 0) return l->pm.psize;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* The taker thread                                                    */
/* ------------------------------------------------------------------ */
static void taker_fail(gjob *j, int code, const char *where, const char *text) {
  pthread_mutex_lock(&j->mu);
  if (!j->terr_code) {
    j->terr_code = code;
    snprintf(j->terr_where, sizeof j->terr_where, "%s", where);
    snprintf(j->terr_text, sizeof j->terr_text, "%s", text);
  }
  j->stop = 1;
  pthread_cond_broadcast(&j->cv);
  pthread_mutex_unlock(&j->mu);
  wake_lanes(j);
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off) {
  while (n) {
    ssize_t w = pwrite(fd, p, n, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    p += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
  return 0;
}

/* What an earlier, resumed run left in the file: hashed and sunk again. */
static int take_resumed(gjob *j, gobj *o, ohash *h) {
  uint64_t done = 0, want = o->pub->resume;
  uint8_t *buf = malloc(1u << 20);
  if (!buf) return ST_ENOMEM;
  int rc = 0;
  while (!rc && done < want) {
    size_t k = want - done > (1u << 20) ? (1u << 20) : (size_t)(want - done);
    ssize_t n = pread(o->pub->fd, buf, k, (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      rc = n < 0 ? st_from_errno(errno) : ST_EIO;
      break;
    }
    ohash_update(h, buf, (size_t)n);
    if (o->pub->sink) rc = o->pub->sink(o->pub->sink_ud, buf, (size_t)n);
    done += (uint64_t)n;
    if (j->stop) break;
  }
  free(buf);
  return rc;
}

/* Waits for the oldest range to arrive; NULL once the job stops. */
static gchunk *next_done(gjob *j) {
  pthread_mutex_lock(&j->mu);
  while (!j->stop && !(j->q_head && j->q_head->state == CH_HASHED)) pthread_cond_wait(&j->cv, &j->mu);
  gchunk *ch = j->stop ? NULL : j->q_head;
  pthread_mutex_unlock(&j->mu);
  return ch;
}

/* The range is used: off the queue, its buffer back to the pool. */
static void release(gjob *j, gchunk *ch) {
  pthread_mutex_lock(&j->mu);
  j->q_head = ch->qnext;
  if (!j->q_head) j->q_tail = NULL;
  put_buf(j, ch->buf);
  j->live--;
  free(ch);
  pthread_cond_broadcast(&j->cv); /* room for the next range */
  pthread_mutex_unlock(&j->mu);
}

/* A guessed layout that did not give the ETag: the other candidates, each
 * hashed in order over the bytes written to the file. The part size that
 * gave it, 0 when none did, or -1 (rc set) when the file cannot be read. */
static long long rehash_others(gjob *j, gobj *o, int *rc) {
  gobj t = *o; /* the same object, its other layouts hashed in order */
  t.parallel = 0;
  t.guessed = 0;
  t.one_range = 0;
  t.nlayouts = o->nlayouts - 1;
  memmove(t.layouts, o->layouts + 1, (size_t)t.nlayouts * sizeof t.layouts[0]);
  ohash h;
  uint8_t *buf = malloc(4u << 20);
  *rc = !buf || ohash_init(&h, &t) ? ST_ENOMEM : 0;
  if (!*rc) {
    EVP_MD_CTX_free(h.whole); /* made on the first pass, when it was wanted */
    h.whole = NULL;
  }
  for (uint64_t at = 0; !*rc && at < o->pub->size && !j->stop;) {
    size_t k = o->pub->size - at > (4u << 20) ? (4u << 20) : (size_t)(o->pub->size - at);
    ssize_t n = pread(o->pub->fd, buf, k, (off_t)at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *rc = n < 0 ? st_from_errno(errno) : ST_EIO;
      break;
    }
    ohash_update(&h, buf, (size_t)n);
    at += (uint64_t)n;
  }
  long long psize = 0;
  if (!*rc && !j->stop) {
    char md5[33];
    memcpy(md5, o->pub->md5, sizeof md5); /* ohash_end writes it for a whole md5 */
    psize = (long long)ohash_end(&h, &t);
    memcpy(o->pub->md5, md5, sizeof md5);
  }
  if (buf) ohash_free(&h);
  free(buf);
  return *rc ? -1 : psize;
}

static int take_object(gjob *j, gobj *o) {
  ohash h;
  char where[1200];
  s3__where(&j->cn, o->pub->key, where, sizeof where);
  pthread_mutex_lock(&j->mu); /* the stage thread has made its file, or refused it */
  while (!j->stop && !o->began) pthread_cond_wait(&j->cv, &j->mu);
  int stop = j->stop, dropped = o->dropped;
  pthread_mutex_unlock(&j->mu);
  if (stop) return -1;
  if (dropped) {
    if (j->on_object) j->on_object(j->ud, o);
    return 0;
  }
  if (ohash_init(&h, o)) {
    ohash_free(&h);
    taker_fail(j, ST_ENOMEM, where, "out of memory");
    return -1;
  }
  int rc = o->pub->resume ? take_resumed(j, o, &h) : 0;
  if (rc) {
    ohash_free(&h);
    char text[160];
    snprintf(text, sizeof text, "reading what the earlier run left: %s", st_strerror(rc));
    taker_fail(j, rc, where, text);
    return -1;
  }
  for (uint64_t got = o->pub->resume; got < o->pub->size;) {
    gchunk *ch = next_done(j);
    if (!ch) {
      ohash_free(&h);
      return -1;
    }
    int e = o->pub->fd >= 0 && !o->direct ? write_all(o->pub->fd, ch->buf, (size_t)ch->len, ch->off) : 0;
    if (e) {
      ohash_free(&h);
      char text[160];
      snprintf(text, sizeof text, "cannot write: %s", strerror(e));
      taker_fail(j, st_from_errno(e), o->pub->path ? o->pub->path : where, text);
      release(j, ch);
      return -1;
    }
    if (ch->buf) ohash_update(&h, ch->buf, (size_t)ch->len);
    rc = o->pub->sink ? o->pub->sink(o->pub->sink_ud, ch->buf, (size_t)ch->len) : 0;
    got += ch->len;
    o->in_order = got; /* read by the stage thread once the taker has stopped */
    release(j, ch);
    if (rc) {
      ohash_free(&h);
      taker_fail(j, rc, where, "the consumer of the bytes stopped");
      return -1;
    }
  }
  if (h.parallel) { /* the hashers made every part's md5 */
    memcpy(h.lay[0].digests, o->pdig, (size_t)h.nparts * 16);
    h.lay[0].pm.done = (size_t)h.nparts;
    h.lay[0].pm.in_part = 0;
  }
  uint64_t psize = ohash_end(&h, o);
  ohash_free(&h);
  if (!psize && o->guessed && o->pub->fd >= 0) {
    int e = 0;
    long long ps = rehash_others(j, o, &e);
    if (ps < 0) {
      char text[160];
      snprintf(text, sizeof text, "reading the file back to try the other part sizes: %s",
               st_strerror(e));
      taker_fail(j, e, o->pub->path ? o->pub->path : where, text);
      return -1;
    }
    psize = (uint64_t)ps;
  }
  s3__gobj_verdict(j, o, psize);
  return 0;
}

/* Whether o's ranges go through the hashers: their parts' md5s, or a
 * single PUT's, made from the range buffer (not streamed). */
static int for_hashers(const gobj *o) { return !o->streamed && (o->parallel || o->one_range); }

/* The oldest range that arrived and is not yet written (mu held). */
static gchunk *oldest_done(gjob *j) {
  for (gchunk *ch = j->q_head; ch; ch = ch->qnext)
    if (ch->state == CH_DONE) return ch;
  return NULL;
}

/* Makes the md5 of each part of a parallel object's range as it arrives, in
 * any order (on_done hands the ranges of other objects straight to the
 * taker). */
static void *hasher(void *arg) {
  gjob *j = arg;
  pthread_mutex_lock(&j->mu);
  while (!j->stop) {
    gchunk *ch = oldest_done(j);
    if (!ch) {
      pthread_cond_wait(&j->cv, &j->mu);
      continue;
    }
    ch->state = CH_HASHING;
    pthread_mutex_unlock(&j->mu);
    gobj *o = ch->o;
    if (o->one_range) {
      unsigned dl = 0;
      EVP_Digest(ch->buf, (size_t)ch->len, o->md5, &dl, EVP_md5(), NULL);
    }
    if (o->parallel) { /* ranges start at part boundaries: each part whole */
      uint64_t ps = o->layouts[0];
      for (uint64_t at = 0; at < ch->len; at += ps) {
        uint64_t part = (ch->off + at) / ps, n = ch->len - at < ps ? ch->len - at : ps;
        unsigned dl = 0;
        if (part < (uint64_t)o->nparts)
          EVP_Digest(ch->buf + at, (size_t)n, o->pdig[part], &dl, EVP_md5(), NULL);
      }
    }
    pthread_mutex_lock(&j->mu);
    ch->state = CH_HASHED;
    pthread_cond_broadcast(&j->cv);
  }
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

static void *taker(void *arg) {
  gjob *j = arg;
  for (size_t i = 0; i < j->nobj; i++) {
    gobj *o = &j->objs[i];
    if (o->skip) continue;
    if (take_object(j, o)) break;
    pthread_mutex_lock(&j->mu);
    j->taken++;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
  }
  return NULL;
}

/* ------------------------------------------------------------------ */
/* The ranges (stage thread)                                           */
/* ------------------------------------------------------------------ */
/* The next range of the objects, in order, while the window has room. */
/* The space of a large object's file, taken before its first GET: a file
 * system without room for it says so now (ST_ENOSPC on o->err, and 1),
 * not after minutes of reading. The writes then land inside the file, on
 * blocks it already has: ext4 makes such O_DIRECT writes under a shared
 * lock, side by side, where writes that grow the file take turns. A file
 * system that cannot reserve (EOPNOTSUPP: NFS v3, some FUSE) is written as
 * before. */
static int reserve(gobj *o) {
  s3_get_obj *p = o->pub;
  if (p->fd < 0 || p->size < GET_DIO_MIN) return 0;
  int e;
  do e = fallocate(p->fd, 0, 0, (off_t)p->size) ? errno : 0;
  while (e == EINTR);
  if (!e) {
    o->reserved = 1;
    return 0;
  }
  if (st_from_errno(e) != ST_ENOSPC) return 0; /* not supported there: written as before */
  int cut = ftruncate(p->fd, (off_t)p->resume); /* what a partial reservation added */
  (void)cut; /* the error to tell is the one above */
  char need[32], have[32] = "?";
  st_fmt_bytes(need, sizeof need, p->size - p->resume);
  struct statvfs sv;
  if (fstatvfs(p->fd, &sv) == 0) st_fmt_bytes(have, sizeof have, (uint64_t)sv.f_bavail * sv.f_frsize);
  st_error_set(&o->err, ST_ENOSPC, p->path ? p->path : p->key, -1,
               "no room for the object's %s (%s free on its file system): nothing was read",
               need, have);
  return 1;
}

/* The same file again, with O_DIRECT, for the lanes (none where the file
 * system does not take it: then the page cache it is). */
static void open_dio(gjob *j, gobj *o) {
  if (!o->direct || j->page_cache || o->pub->fd < 0 || o->pub->size < GET_DIO_MIN) return;
  /* the blocks: one held by each answer in flight, and up to 10 more
   * queued or being written by four threads (a lane waits for a block
   * only while all of those are) */
  int nb = j->jobs + (j->jobs < 8 ? j->jobs : 8) + 2;
  if (!j->bw_open && blockw_open(&j->bw, 4, nb, S3_DIO_BYTES, S3_DIO_ALIGN) == 0)
    j->bw_open = 1;
  if (!j->bw_open) return;
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", o->pub->fd);
  int fd = open(self, O_WRONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return;
  o->dio_fd = fd;
  o->has_dio = 1;
}

static void close_dio(gobj *o) {
  if (o->has_dio) close(o->dio_fd);
  o->has_dio = 0;
}

static int make_ranges(gjob *j, st_error *err) {
  for (;;) {
    while (j->next_obj < j->nobj) {
      gobj *n = &j->objs[j->next_obj];
      if (!n->skip && !n->began) { /* its file is made before its first GET */
        int refused = j->on_begin && j->on_begin(j->ud, n);
        if (!refused) refused = reserve(n);
        if (!refused) open_dio(j, n);
        pthread_mutex_lock(&j->mu); /* the taker waits for this */
        n->dropped = refused;
        n->began = 1;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
      }
      if (!n->skip && !n->dropped && j->next_off < n->pub->size) break;
      j->next_obj++;
      j->next_off = j->next_obj < j->nobj ? j->objs[j->next_obj].pub->resume : 0;
    }
    if (j->next_obj >= j->nobj) return 0;
    pthread_mutex_lock(&j->mu);
    int room = j->live < j->window;
    pthread_mutex_unlock(&j->mu);
    if (!room) return 0;
    gobj *o = &j->objs[j->next_obj];
    uint64_t left = o->pub->size - j->next_off;
    gchunk *ch = calloc(1, sizeof *ch);
    if (!ch) return st_error_set(err, ST_ENOMEM, o->pub->key, -1, NULL);
    ch->o = o;
    ch->off = j->next_off;
    ch->len = left < o->chunk ? left : o->chunk;
    ch->slot = -1;
    pthread_mutex_lock(&j->mu);
    ch->buf = o->direct ? NULL : get_buf(j);
    if (ch->buf || o->direct) {
      j->live++;
      if (j->q_tail) j->q_tail->qnext = ch;
      else j->q_head = ch;
      j->q_tail = ch;
      ch->pnext = j->pend; /* newest first; dispatch starts the oldest first */
      j->pend = ch;
    }
    pthread_mutex_unlock(&j->mu);
    if (!ch->buf && !o->direct) {
      free(ch);
      return st_error_set(err, ST_ENOMEM, o->pub->key, -1, "out of memory for a %llu-byte range",
                          (unsigned long long)j->bufsize);
    }
    wake_lanes(j);
    j->next_off += ch->len;
  }
}

static void range_text(const gchunk *ch, char *out, size_t cap) {
  snprintf(out, cap, "GET bytes %llu-%llu", (unsigned long long)ch->off,
           (unsigned long long)(ch->off + ch->len - 1));
}

static int start_range(glane *L, gchunk *ch, int slot, st_error *err) {
  gjob *j = L->j;
  gobj *o = ch->o;
  char range[64], ifm[96];
  snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)ch->off,
           (unsigned long long)(ch->off + ch->len - 1));
  snprintf(ifm, sizeof ifm, "\"%s\"", o->pub->etag);
  s3_req rq = {.method = "GET", .key = o->pub->key, .payload_sha256 = SIGV4_EMPTY_SHA256,
               .range = range, .if_match = ifm};
  s3_resp *r = &L->resps[slot];
  r->dst = ch->buf; /* before the setup, which keeps it: the answer goes into memory */
  r->dst_cap = (size_t)ch->len;
  r->direct = o->direct; /* or straight into the file, at the range's offset */
  r->dst_fd = o->pub->fd;
  r->dst_off = ch->off;
  r->bw = j->bw_open ? &j->bw : NULL;
  r->dio_fd = o->has_dio ? o->dio_fd : -1;
  int rc = s3__req_setup(&j->cn, L->easies[slot], &rq, r, err);
  if (rc) return rc;
  if (o->streamed) { /* and hashed on the way: each part's md5, or the single PUT's */
    uint64_t ps = o->parallel ? o->layouts[0] : ch->len;
    uint64_t first = o->parallel ? ch->off / ps : 0;
    if (s3__resp_hash(r, ps, o->parallel ? &o->pdig[first] : &o->md5,
                      o->parallel ? (size_t)((uint64_t)o->nparts - first) : 1))
      return st_error_set(err, ST_ENOMEM, o->pub->key, -1, NULL);
  }
  curl_easy_setopt(L->easies[slot], CURLOPT_PRIVATE, (void *)ch);
  ch->lane = L;
  ch->slot = slot;
  ch->attempts++;
  L->inflight[slot] = ch;
  L->active++;
  if (curl_multi_add_handle(L->multi, L->easies[slot]) != CURLM_OK)
    return st_error_set(err, ST_EINTERNAL, o->pub->key, -1, "curl_multi_add_handle failed");
  return 0;
}

/* The oldest due range of the pending list, taken off it (NULL: none due;
 * L->next_due: when the next retry is). */
static gchunk *next_pending(glane *L, double now) {
  gjob *j = L->j;
  pthread_mutex_lock(&j->mu);
  L->next_due = 0;
  gchunk **best = NULL;
  for (gchunk **pp = &j->pend; *pp; pp = &(*pp)->pnext) {
    gchunk *ch = *pp;
    if (ch->not_before > now) {
      if (!L->next_due || ch->not_before < L->next_due) L->next_due = ch->not_before;
      continue;
    }
    if (!best || ch->o < (*best)->o || (ch->o == (*best)->o && ch->off < (*best)->off)) best = pp;
  }
  gchunk *ch = best ? *best : NULL;
  if (ch) {
    *best = ch->pnext;
    ch->pnext = NULL;
  }
  pthread_mutex_unlock(&j->mu);
  return ch;
}

/* Starts the oldest due ranges on the lane's free handles. */
static int dispatch(glane *L, st_error *err) {
  double now = st_now();
  L->next_due = 0;
  while (L->active < L->jobs) {
    gchunk *ch = next_pending(L, now);
    if (!ch) return 0;
    int slot = 0;
    while (L->inflight[slot]) slot++;
    int rc = start_range(L, ch, slot, err); /* on error it stays on the queue, freed so */
    if (rc) return rc;
  }
  return 0;
}

/* Whether the answer is exactly the range asked for; why not in `why`. */
static int answer_ok(const gjob *j, const gchunk *ch, const s3_resp *r, char *why, size_t cap) {
  char tag[80];
  s3__unquote(r->etag, tag, sizeof tag);
  uint64_t end = ch->off + ch->len - 1;
  if (r->overrun)
    snprintf(why, cap, "answered more than the %llu bytes asked for", (unsigned long long)ch->len);
  else if (r->status != 206)
    snprintf(why, cap, "answered HTTP %ld, expected 206 Partial Content", r->status);
  else if (r->cr_start != (long long)ch->off || r->cr_end != (long long)end ||
           r->cr_total != (long long)ch->o->pub->size)
    snprintf(why, cap, "answered Content-Range bytes %lld-%lld/%lld, expected %llu-%llu/%llu",
             r->cr_start, r->cr_end, r->cr_total, (unsigned long long)ch->off,
             (unsigned long long)end, (unsigned long long)ch->o->pub->size);
  else if (r->dst_len != ch->len)
    snprintf(why, cap, "sent %zu bytes of the %llu of its range", r->dst_len,
             (unsigned long long)ch->len);
  else if (strcmp(tag, ch->o->pub->etag) != 0)
    snprintf(why, cap, "answered with ETag %s, expected %s", tag, ch->o->pub->etag);
  else
    return 1;
  (void)j;
  return 0;
}

/* One finished GET: the range is done (the taker is told), retried, or the
 * job's error. */
static int on_done(glane *L, CURLMsg *msg, st_error *err) {
  gjob *j = L->j;
  CURL *e = msg->easy_handle;
  gchunk *ch = NULL;
  curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&ch);
  s3_resp *r = &L->resps[ch->slot];
  r->cc = msg->data.result;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
  curl_multi_remove_handle(L->multi, e);
  L->inflight[ch->slot] = NULL;
  ch->slot = -1;
  L->active--;
  char what[96], why[256] = "";
  range_text(ch, what, sizeof what);
  int k = s3__classify(r);
  if ((k == 0 || r->overrun) && !answer_ok(j, ch, r, why, sizeof why)) k = 1;
  if (k == 0) s3__resp_flush(r); /* what its stage still holds, and every write made */
  else s3__resp_settle(r);        /* this attempt's writes, before any other's */
  if (r->write_errno) { /* a file that cannot be written is not retried */
    char where[1200];
    s3__where(&j->cn, ch->o->pub->key, where, sizeof where);
    return st_error_set(err, st_from_errno(r->write_errno),
                        ch->o->pub->path ? ch->o->pub->path : where, (long long)ch->off,
                        "cannot write: %s", strerror(r->write_errno));
  }
  if (k == 0) {
    s3__resp_hash_end(r); /* a streamed range's last part */
    L->done_bytes += ch->len;
    pthread_mutex_lock(&j->mu);
    ch->state = for_hashers(ch->o) ? CH_DONE : CH_HASHED; /* else straight to the taker */
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return 0;
  }
  if (r->cc == CURLE_OK && r->status == 412) {
    char where[1200];
    s3__where(&j->cn, ch->o->pub->key, where, sizeof where);
    return st_error_set(err, ST_ECHECKSUM, where, (long long)ch->off,
                        "the object changed during the download (its ETag is no longer %s)",
                        ch->o->pub->etag);
  }
  if (k > 0 && ch->attempts < s3__attempts(&j->cn)) {
    double delay = s3__backoff(ch->attempts);
    if (why[0]) {
      esc_buf ek, ew; /* a key and a server's words, shown escaped (lib/escape.h) */
      char line[S3_SAY_BYTES];
      snprintf(line, sizeof line, "%s: %s of s3://%s/%s %s; retry %d of %d in %.2f s\n",
               s3__stage_name(&j->cn), what, j->cn.bucket, esc_name(&ek, ch->o->pub->key),
               esc_name(&ew, why), ch->attempts, s3__attempts(&j->cn) - 1, delay);
      s3__say(&j->cn, line);
    } else {
      s3__say_retry(&j->cn, ch->o->pub->key, what, r, ch->attempts, delay);
    }
    ch->not_before = st_now() + delay;
    pthread_mutex_lock(&j->mu);
    ch->pnext = j->pend;
    j->pend = ch;
    pthread_mutex_unlock(&j->mu);
    return 0;
  }
  if (why[0]) {
    char where[1200];
    s3__where(&j->cn, ch->o->pub->key, where, sizeof where);
    return st_error_set(err, ST_ES3, where, (long long)ch->off, "%s %s (after %d attempts)", what,
                        why, ch->attempts);
  }
  return s3__resp_error(&j->cn, ch->o->pub->key, what, r, ch->attempts, err);
}

static int turn(glane *L, st_error *err) {
  int running = 0, left, rc = 0;
  curl_multi_perform(L->multi, &running);
  for (CURLMsg *msg = curl_multi_info_read(L->multi, &left); msg && !rc;
       msg = curl_multi_info_read(L->multi, &left))
    if (msg->msg == CURLMSG_DONE) rc = on_done(L, msg, err);
  if (rc) return rc;
  uint64_t shown = L->done_bytes;
  for (int i = 0; i < L->jobs; i++)
    if (L->inflight[i]) shown += L->resps[i].dst_len;
  atomic_store_explicit(&L->shown, shown, memory_order_relaxed);
  int wait_ms = 100;
  if (L->next_due) {
    double dt = L->next_due - st_now();
    int ms = dt <= 0 ? 0 : (int)(dt * 1000) + 1;
    if (ms < wait_ms) wait_ms = ms;
  }
  curl_multi_poll(L->multi, NULL, 0, wait_ms, NULL);
  return 0;
}

/* A lane: starts the pending ranges on its handles and finishes them
 * until the job stops; its error stops the job. */
static void *lane_main(void *arg) {
  glane *L = arg;
  gjob *j = L->j;
  st_error err;
  st_error_clear(&err);
  for (;;) {
    pthread_mutex_lock(&j->mu);
    int stop = j->stop;
    pthread_mutex_unlock(&j->mu);
    if (stop) break;
    int rc = dispatch(L, &err);
    if (!rc) rc = turn(L, &err);
    if (rc) {
      pthread_mutex_lock(&j->mu);
      if (!j->lerr_set) {
        j->lerr = err;
        j->lerr_set = 1;
      }
      j->stop = 1;
      pthread_cond_broadcast(&j->cv);
      pthread_mutex_unlock(&j->mu);
      wake_lanes(j);
      break;
    }
  }
  return NULL;
}

/* cn->say of the job: a lane's retry line, kept for the stage thread (the
 * first S3_RETRY_LINES, then one that says there were more). */
static void lane_say(void *ud, const char *line) {
  gjob *j = ud;
  pthread_mutex_lock(&j->mu);
  if (j->said && j->nsaid <= S3_RETRY_LINES) {
    if (j->nsaid == S3_RETRY_LINES)
      snprintf(j->said[j->nsaid], S3_SAY_BYTES, "%s: more retries (not shown)\n",
               s3__stage_name(&j->cn));
    else
      snprintf(j->said[j->nsaid], S3_SAY_BYTES, "%s", line);
    j->nsaid++;
  }
  pthread_mutex_unlock(&j->mu);
}

/* Shows the lanes' new retry lines, and the bytes read so far (stage thread). */
static void show(gjob *j) {
  pthread_mutex_lock(&j->mu);
  size_t n = j->nsaid;
  pthread_mutex_unlock(&j->mu);
  for (; j->said_shown < n; j->said_shown++) /* lines below n are not written again */
    if (j->cn.ctx) st_eprintf(j->cn.ctx, "%s", j->said[j->said_shown]);
  if (j->pr) {
    uint64_t shown = j->resumed;
    for (int i = 0; i < j->nlanes; i++)
      shown += atomic_load_explicit(&j->lanes[i].shown, memory_order_relaxed);
    st_progress_update(j->pr, shown > j->total ? j->total : shown);
  }
}

/* ------------------------------------------------------------------ */
/* The job                                                             */
/* ------------------------------------------------------------------ */
int s3__gjob_open(gjob *j, st_error *err) {
  j->bufsize = j->chunk;
  for (size_t i = 0; i < j->nobj; i++) {
    gobj *o = &j->objs[i];
    if (!o->chunk) o->chunk = j->chunk;
    if (!o->skip && o->chunk > j->bufsize) j->bufsize = o->chunk;
  }
  if (j->bufsize && (uint64_t)j->window * j->bufsize > PK_LIMIT_S3_BUFFER_BYTES) {
    j->window = (int)(PK_LIMIT_S3_BUFFER_BYTES / j->bufsize);
    if (j->window < 2) j->window = 2;
    if (j->jobs > j->window) j->jobs = j->window;
  }
  pthread_mutex_init(&j->mu, NULL);
  pthread_cond_init(&j->cv, NULL);
  j->locks = 1;
  /* one lane per core (at most GET_MAX_LANES): the bytes of an answer are
   * hashed and written by the thread that receives them, while they are in
   * its cache, so the receiving is spread over the cores */
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int nl = ncpu < 1 ? 1 : ncpu > GET_MAX_LANES ? GET_MAX_LANES : (int)ncpu;
  if (nl > j->jobs) nl = j->jobs;
  j->lanes = calloc((size_t)nl, sizeof *j->lanes);
  j->pool = calloc((size_t)j->window, sizeof *j->pool);
  j->said = calloc(S3_RETRY_LINES + 1, sizeof *j->said);
  if (!j->lanes || !j->pool || !j->said) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
  j->nlanes = nl;
  j->cn.say = lane_say;
  j->cn.say_ud = j;
  for (int l = 0; l < nl; l++) {
    glane *L = &j->lanes[l];
    L->j = j;
    L->jobs = j->jobs / nl + (l < j->jobs % nl);
    L->easies = calloc((size_t)L->jobs, sizeof *L->easies);
    L->resps = calloc((size_t)L->jobs, sizeof *L->resps);
    L->inflight = calloc((size_t)L->jobs, sizeof *L->inflight);
    L->multi = curl_multi_init();
    if (!L->easies || !L->resps || !L->inflight || !L->multi)
      return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
    curl_multi_setopt(L->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)L->jobs);
    for (int i = 0; i < L->jobs; i++) {
      s3__resp_init(&L->resps[i]);
      L->easies[i] = curl_easy_init();
      if (!L->easies[i])
        return st_error_set(err, ST_ENOMEM, NULL, -1, "cannot create curl handles");
    }
  }
  return 0;
}

/* Every range of every object through the taker; 0 when each object was
 * read and judged (s3__gobj_verdict), else the first error. */
int s3__gjob_run(gjob *j, st_error *err) {
  size_t want = 0;
  for (size_t i = 0; i < j->nobj; i++) want += !j->objs[i].skip;
  j->next_obj = 0;
  j->next_off = j->nobj ? j->objs[0].pub->resume : 0;
  if (pthread_create(&j->taker, NULL, taker, j) != 0)
    return st_error_set(err, ST_EINTERNAL, NULL, -1, "cannot start a thread");
  j->taker_started = 1;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int want_h = ncpu < 1 ? 1 : ncpu > 4 ? 4 : (int)ncpu;
  int hashed = 0; /* objects whose ranges the hashers hash (not streamed) */
  for (size_t i = 0; i < j->nobj; i++) {
    const gobj *o = &j->objs[i];
    hashed |= !o->skip && for_hashers(o);
  }
  if (!hashed) want_h = 0;
  while (j->nhashers < want_h && pthread_create(&j->hashers[j->nhashers], NULL, hasher, j) == 0)
    j->nhashers++;
  for (int l = 0; l < j->nlanes; l++)
    if (pthread_create(&j->lanes[l].th, NULL, lane_main, &j->lanes[l]) == 0)
      j->lanes[l].started = 1;
  int rc = j->lanes[0].started ? 0 : st_error_set(err, ST_EINTERNAL, NULL, -1, "cannot start a thread");
  while (!rc) {
    show(j);
    pthread_mutex_lock(&j->mu);
    size_t taken = j->taken;
    int tcode = j->terr_code, lerr = j->lerr_set;
    pthread_mutex_unlock(&j->mu);
    if (tcode) {
      rc = st_error_set(err, tcode, j->terr_where, -1, "%s", j->terr_text);
      break;
    }
    if (lerr) {
      *err = j->lerr;
      rc = err->code;
      break;
    }
    if (taken == want) break;
    if (j->cn.ctx && st_cancelled(j->cn.ctx)) {
      rc = st_error_set(err, ST_ECANCELED, j->cn.bucket, -1, "interrupted");
      break;
    }
    rc = make_ranges(j, err);
    if (rc) break;
    /* until something changes (a range read or taken, an error), or the
     * next look at the progress and the interrupt */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100 * 1000 * 1000;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->mu);
    int more = j->next_obj < j->nobj && j->live < j->window; /* ranges to make now */
    if (!more && !j->stop && j->taken == taken && !j->terr_code && !j->lerr_set)
      pthread_cond_timedwait(&j->cv, &j->mu, &until);
    pthread_mutex_unlock(&j->mu);
  }
  pthread_mutex_lock(&j->mu);
  j->stop = 1;
  pthread_cond_broadcast(&j->cv);
  pthread_mutex_unlock(&j->mu);
  wake_lanes(j);
  for (int l = 0; l < j->nlanes; l++)
    if (j->lanes[l].started) {
      pthread_join(j->lanes[l].th, NULL);
      j->lanes[l].started = 0;
    }
  pthread_join(j->taker, NULL);
  j->taker_started = 0;
  for (int i = 0; i < j->nhashers; i++) pthread_join(j->hashers[i], NULL);
  j->nhashers = 0;
  /* the direct writes of answers cut short are made before the caller
   * cuts the file back to its checked prefix, or removes it */
  for (int l = 0; l < j->nlanes; l++)
    for (int i = 0; j->lanes[l].resps && i < j->lanes[l].jobs; i++)
      s3__resp_settle(&j->lanes[l].resps[i]);
  show(j); /* the last retry lines */
  return rc;
}

static void chunks_free(gchunk *ch, int by_queue) {
  while (ch) {
    gchunk *n = by_queue ? ch->qnext : ch->pnext;
    free(ch->buf);
    free(ch);
    ch = n;
  }
}

void s3__gjob_close(gjob *j) {
  for (size_t i = 0; j->objs && i < j->nobj; i++) {
    free(j->objs[i].pdig);
    j->objs[i].pdig = NULL;
  }
  if (j->taker_started || j->nhashers) { /* s3__gjob_run joins them; this is for its errors */
    pthread_mutex_lock(&j->mu);
    j->stop = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (j->taker_started) pthread_join(j->taker, NULL);
    for (int i = 0; i < j->nhashers; i++) pthread_join(j->hashers[i], NULL);
  }
  for (int l = 0; j->lanes && l < j->nlanes; l++) {
    glane *L = &j->lanes[l];
    for (int i = 0; L->inflight && i < L->jobs; i++)
      if (L->inflight[i]) curl_multi_remove_handle(L->multi, L->easies[i]);
  }
  chunks_free(j->q_head, 1); /* every live range is on the queue */
  j->q_head = j->q_tail = NULL;
  for (int l = 0; j->lanes && l < j->nlanes; l++) {
    glane *L = &j->lanes[l];
    for (int i = 0; L->easies && i < L->jobs; i++) {
      if (L->resps) s3__resp_free(&L->resps[i]);
      if (L->easies[i]) curl_easy_cleanup(L->easies[i]);
    }
    free(L->easies);
    free(L->resps);
    free(L->inflight);
    if (L->multi) curl_multi_cleanup(L->multi);
  }
  free(j->lanes);
  j->lanes = NULL;
  j->nlanes = 0;
  if (j->bw_open) blockw_close(&j->bw); /* after the answers, which wait for their writes */
  j->bw_open = 0;
  for (size_t i = 0; j->objs && i < j->nobj; i++) close_dio(&j->objs[i]);
  for (int i = 0; j->pool && i < j->npool; i++) free(j->pool[i]);
  free(j->pool);
  free(j->said);
  j->said = NULL;
  j->cn.say = NULL;
  if (j->locks) {
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
  }
  s3__conn_close(&j->cn);
}

/* ------------------------------------------------------------------ */
/* Size, ETag and part layout                                          */
/* ------------------------------------------------------------------ */
/* HEAD ?partNumber=1 of a multipart object: the part size where the server
 * says it (its answer is part 1 and gives the part count). */
static int server_layout(gjob *j, gobj *o, st_error *err) {
  if (j->no_layout_heads) return 0; /* this server said no part count for an earlier object */
  s3_resp r;
  s3__resp_init(&r);
  s3_req rq = {.method = "HEAD", .key = o->pub->key, .payload_sha256 = SIGV4_EMPTY_SHA256};
  rq.query[rq.nquery++] = (sigv4_kv){"partNumber", "1"};
  int rc = s3__call(&j->cn, &rq, &r, "HeadObject", PK_LIMIT_S3_ATTEMPTS, 0, err);
  if (!rc && r.parts_count == o->nparts && r.clen > 0 &&
      gives_n_parts(o->pub->size, (uint64_t)r.clen, o->nparts)) {
    o->layouts[0] = (uint64_t)r.clen;
    o->nlayouts = 1;
    o->server_said = 1;
  }
  if (!rc && r.parts_count <= 0) j->no_layout_heads = 1; /* it ignores partNumber */
  s3__resp_free(&r);
  return rc;
}

/* Whether o's answers can go straight to its file and be hashed as they
 * come: the parts' md5s (no whole md5 wanted) or a single PUT's in one
 * range, no sink, a file to read back. */
static int plan_streamed(const gjob *j, gobj *o) {
  o->streamed = !o->pub->sink && j->rereadable &&
                (o->one_range || (o->parallel && !o->pub->want_md5));
  if (o->streamed) o->direct = 1;
  /* no buffer to hold: ranges of one part each, so the last ones in flight
   * end together and no lane idles at the end */
  if (o->streamed && o->parallel) o->chunk = o->layouts[0];
  return 0;
}

int s3__gobj_plan(gjob *j, gobj *o, st_error *err) {
  char where[1200];
  s3__where(&j->cn, o->pub->key, where, sizeof where);
  o->nparts = s3__etag_parts(o->pub->etag);
  if (o->nparts < 0)
    return st_error_set(err, ST_EFORMAT, where, -1,
                        "ETag '%.80s' is neither an md5 nor an md5 of part md5s (HEX-N)",
                        o->pub->etag);
  o->pub->nparts = o->nparts;
  o->headers_only = j->headers_only;
  /* nothing to hash and no one to hand the bytes to: each answer goes
   * straight from curl's buffer to the file, with no range buffer between */
  o->direct = o->headers_only && !o->pub->sink && !o->pub->want_md5 && j->rereadable;
  o->in_order = o->pub->resume;
  if (o->pub->resume > o->pub->size)
    return st_error_set(err, ST_EINVAL, where, -1,
                        "the file to resume holds %llu bytes; the object has %llu",
                        (unsigned long long)o->pub->resume, (unsigned long long)o->pub->size);
  /* a single PUT that one range holds: its md5 is made by a hasher, so the
   * objects of a prefix are hashed side by side */
  if (!o->nparts && (!o->headers_only || o->pub->want_md5) && !o->pub->resume &&
      o->pub->size > 0 && o->pub->size <= j->chunk)
    o->one_range = 1;
  if (!o->nparts || o->headers_only) return plan_streamed(j, o);
  int rc = server_layout(j, o, err);
  if (rc) return rc;
  if (!o->nlayouts)
    o->nlayouts = s3__layout_candidates(o->pub->size, o->nparts, o->layouts, GET_MAX_LAYOUTS);
  if (!o->nlayouts)
    return st_error_set(err, ST_EFORMAT, where, -1,
                        "ETag %s says %d parts, which %llu bytes cannot be cut into", o->pub->etag,
                        o->nparts, (unsigned long long)o->pub->size);
  /* one layout: each range one part, hashed by the hashers out of order (a
   * resumed file, or parts too big to hold a window of, are hashed in order).
   * Several candidates and a file to read back: the first (the usual sizes
   * come first; 8 MiB is what the AWS CLI, boto3 and %upload use) is hashed
   * so, and only if it does not give the ETag are the others tried, on the
   * bytes written (one parallel pass instead of one serial pass per
   * candidate) */
  int guess = o->nlayouts > 1 && j->rereadable;
  if ((o->nlayouts == 1 || guess) && !o->pub->resume && o->layouts[0] <= GET_PARALLEL_PART_MAX) {
    uint64_t ps = o->layouts[0], k = j->chunk / ps; /* ranges of whole parts, about --part-size */
    o->pdig = calloc((size_t)o->nparts, 16);
    if (!o->pdig) return st_error_set(err, ST_ENOMEM, where, -1, NULL);
    o->parallel = 1;
    o->guessed = guess;
    o->chunk = (k ? k : 1) * ps;
  }
  return plan_streamed(j, o);
}

/* The taker's judgement of one object: its ETag matched (psize: the part
 * size that gave it, or the size of a single PUT), or a ChecksumError. */
void s3__gobj_verdict(gjob *j, gobj *o, uint64_t psize) {
  s3_get_obj *p = o->pub;
  close_dio(o); /* every answer is written */
  char where[1200];
  s3__where(&j->cn, p->key, where, sizeof where);
  st_error_clear(&o->err);
  if (o->headers_only) {
    snprintf(p->check, sizeof p->check, "each answer's range, length and ETag checked; "
             "the bytes not hashed (--integrity headers)");
    if (j->on_object) j->on_object(j->ud, o);
    return;
  }
  if (psize && !p->nparts) {
    snprintf(p->check, sizeof p->check, "ETag = md5");
  } else if (psize) {
    char ps[32];
    if (psize % (1u << 20) == 0) snprintf(ps, sizeof ps, "%llu MiB", (unsigned long long)(psize >> 20));
    else if (psize % 1000000u == 0) snprintf(ps, sizeof ps, "%llu MB", (unsigned long long)(psize / 1000000u));
    else snprintf(ps, sizeof ps, "%llu-byte", (unsigned long long)psize);
    snprintf(p->check, sizeof p->check, "ETag = md5 of %d part md5s (%s parts)", p->nparts, ps);
  } else if (!p->nparts) {
    st_error_set(&o->err, ST_ECHECKSUM, where, -1,
                 "the md5 of the bytes read is %s; the object's ETag says %s", p->md5, p->etag);
  } else if (o->server_said) {
    st_error_set(&o->err, ST_ECHECKSUM, where, -1,
                 "the md5 of the %d part md5s (%llu-byte parts, as the server says) does not give "
                 "the ETag %s: the bytes read are not the bytes uploaded", p->nparts,
                 (unsigned long long)o->layouts[0], p->etag);
  } else {
    char sizes[200] = "";
    size_t sl = 0;
    for (int i = 0; i < o->nlayouts && sl < sizeof sizes - 24; i++)
      sl += (size_t)snprintf(sizes + sl, sizeof sizes - sl, "%s%llu", i ? ", " : "",
                             (unsigned long long)o->layouts[i]);
    st_error_set(&o->err, ST_ECHECKSUM, where, -1,
                 "no part size that cuts %llu bytes into %d parts (tried %s bytes) gives the md5 "
                 "of part md5s of the ETag %s: the bytes read differ from the bytes uploaded, or "
                 "the upload used parts of unequal sizes (this server does not say its layout: "
                 "give --md5 to check the bytes instead)",
                 (unsigned long long)p->size, p->nparts, sizes, p->etag);
  }
  if (o->err.code && p->want_md5 && p->md5_given && p->nparts) {
    /* the user's md5 decides: an md5 that matches is the end-to-end check */
    if (strcmp(p->md5, p->md5_given) == 0) {
      st_error_clear(&o->err);
      snprintf(p->check, sizeof p->check, "md5 = --md5 (the part layout is not known)");
    }
  }
  if (j->on_object) j->on_object(j->ud, o);
}

/* ------------------------------------------------------------------ */
/* One object (s3.h)                                                   */
/* ------------------------------------------------------------------ */
int s3__get_options(st_ctx *c, const st_args *a, gjob *j, st_error *err) {
  long long jobs, psize_mib, retries, timeout;
  const char *integ = st_arg_str(a, "integrity", "md5");
  if (strcmp(integ, "md5") && strcmp(integ, "headers"))
    return st_error_set(err, ST_EINVAL, "--integrity", -1,
                        "expected md5 (the ETag checked against the bytes, the default) or "
                        "headers (each answer's range, length and ETag only), got '%.40s'", integ);
  j->headers_only = strcmp(integ, "headers") == 0;
  j->page_cache = st_arg_has(a, "page-cache");
  int rc = st_arg_int(a, "jobs", 8, 1, 64, &jobs, err);
  if (!rc) rc = st_arg_int(a, "part-size", 32, 1, 5120, &psize_mib, err);
  if (!rc) rc = st_arg_int(a, "retries", 3, 0, PK_LIMIT_DOWNLOAD_RETRIES, &retries, err);
  if (!rc) rc = st_arg_int(a, "timeout", 60, 1, 86400, &timeout, err);
  if (rc) return rc;
  j->c = c;
  j->jobs = (int)jobs;
  j->chunk = (uint64_t)psize_mib * MiB;
  /* ranges held at once: those in flight and two being hashed or taken */
  j->window = j->jobs + 2;
  if ((uint64_t)j->window * j->chunk > PK_LIMIT_S3_BUFFER_BYTES)
    j->window = (int)(PK_LIMIT_S3_BUFFER_BYTES / j->chunk);
  if (j->window < 2) j->window = 2;
  if (j->jobs > j->window) j->jobs = j->window;
  j->cn.max_attempts = (int)retries + 1;
  j->cn.stall_s = (long)timeout;
  return 0;
}

/* HEAD: size and ETag. */
static int head(gjob *j, s3_get_obj *p, st_error *err) {
  s3_resp r;
  s3__resp_init(&r);
  s3_req rq = {.method = "HEAD", .key = p->key, .payload_sha256 = SIGV4_EMPTY_SHA256};
  int rc = s3__call(&j->cn, &rq, &r, "HeadObject", s3__attempts(&j->cn), 0, err);
  if (!rc) {
    char where[1200];
    s3__where(&j->cn, p->key, where, sizeof where);
    s3__unquote(r.etag, p->etag, sizeof p->etag);
    if (r.clen < 0 || !p->etag[0])
      rc = st_error_set(err, ST_EFORMAT, where, -1,
                        "HeadObject answered without %s", r.clen < 0 ? "Content-Length" : "ETag");
    else p->size = (uint64_t)r.clen;
  }
  s3__resp_free(&r);
  return rc;
}

static void on_one(void *ud, gobj *o) { *(st_error *)ud = o->err; }

int s3_get(st_ctx *c, const st_args *a, const char *url, s3_get_obj *p, st_progress *pr,
           st_error *err) {
  char bucket[64], key[PK_LIMIT_S3_KEY_BYTES + 1];
  int rc = s3_parse_url(url, bucket, sizeof bucket, key, sizeof key, err);
  if (rc) return rc;
  if (!key[0] || key[strlen(key) - 1] == '/')
    return st_error_set(err, ST_EINVAL, url, -1, "expected s3://BUCKET/KEY (a prefix ends with '/')");
  gjob j;
  memset(&j, 0, sizeof j);
  gobj o;
  memset(&o, 0, sizeof o);
  st_error verdict;
  st_error_clear(&verdict);
  p->key = key;
  o.pub = p;
  o.in_order = p->resume; /* what fd holds until the taker moves on */
  j.objs = &o;
  j.nobj = 1;
  j.pr = pr;
  j.on_object = on_one;
  j.ud = &verdict;
  j.rereadable = p->fd >= 0; /* %download's PATH.part is opened for reading and writing */
  rc = s3__conn_open(&j.cn, c, a, bucket, err);
  if (!rc) rc = s3__get_options(c, a, &j, err);
  if (!rc) rc = head(&j, p, err);
  if (!rc) rc = s3__gobj_plan(&j, &o, err);
  if (!rc && pr) st_progress_set_total(pr, p->size);
  j.total = p->size;
  j.resumed = p->resume;
  if (!rc) rc = s3__gjob_open(&j, err);
  if (!rc) rc = s3__gjob_run(&j, err);
  /* written out of order: what a resume may keep is the checked prefix only */
  p->done = o.in_order;
  if (rc && (o.direct || o.reserved) && p->fd >= 0 && ftruncate(p->fd, (off_t)o.in_order) != 0 && !err->code)
    st_error_errno(err, errno, p->path ? p->path : url, "cannot truncate");
  if (!rc && verdict.code) rc = st_error_set(err, verdict.code, verdict.where, -1, "%s", verdict.text);
  p->key = NULL; /* it was this function's */
  s3__gjob_close(&j);
  return rc;
}
