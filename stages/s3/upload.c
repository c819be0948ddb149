/*
 * upload.c -- %upload (s3.h).
 *
 * Requests are signed with SigV4 (sigv4.c) and sent with libcurl: one easy
 * handle for the control requests (bucket check, CreateMultipartUpload,
 * Complete, HEAD, Abort, listings) and a curl multi loop on the stage thread
 * for the data (single PUTs and UploadPart). Worker threads read each part
 * and hash it (MD5 for Content-MD5 and the ETag check, SHA-256 for the signed
 * payload) in one pass; the stage thread sends what is ready, at most --jobs
 * at once. Responses are XML, read with expat. Secrets never leave
 * aws_config: errors carry the HTTP status, S3's Code and Message, bucket
 * and key.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lib/escape.h"
#include "lib/fileio.h"
#include "lib/cache.h"
#include "lib/table.h"
#include "s3_int.h"

const st_option s3_upload_opts[] = {
    {"endpoint", 1, "URL", "S3 endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, config, AWS)"},
    {"region", 1, "R", "region (default: AWS_REGION, AWS_DEFAULT_REGION, config, us-east-1)"},
    {"profile", 1, "P", "profile of ~/.aws/credentials and ~/.aws/config (default: AWS_PROFILE)"},
    {"part-size", 1, "MiB", "multipart part size, 5-5120 (default 8)"},
    {"threshold", 1, "MiB", "larger files go up in parts, the others in one PUT, 5-5120 (default 32)"},
    {"jobs", 1, "N", "requests in flight, 1-64 (default 8)"},
    {"create-bucket", 0, NULL, "create the bucket when it does not exist"},
    {"path-style", 0, NULL, "path-style addressing (http://HOST/BUCKET/KEY)"},
    {"virtual-hosted", 0, NULL, "virtual-hosted addressing (http://BUCKET.HOST/KEY)"},
    {"skip-existing", 0, NULL, "skip objects whose size and ETag already match"},
    {"integrity", 1, "sha256|md5", "sha256 (default): Content-MD5 and the signed SHA-256 of every payload; md5: Content-MD5 only (UNSIGNED-PAYLOAD), half the hashing; ETags are checked either way"},
    {"cacert", 1, "FILE", "CA bundle for a private TLS certificate authority"},
    PC_COLD_OPTION,
    {NULL, 0, NULL, NULL}};

typedef struct up_task {
  size_t obj;
  int part; /* 1-based; 0: single PUT */
  uint64_t off, len;
  uint8_t *buf;
  uint8_t md5[16];
  char md5_b64[32];
  char sha[65];
  int attempts;
  double not_before;
  int slot; /* easy handle index while in flight, else -1 */
  struct up_task *next;
} up_task;

#define POOL_MIN (1u << 20) /* smaller bodies are malloc'd as they come */

/* Called with u->mu held. */
static uint8_t *pool_get(upload *u, uint64_t len) {
  if (len < POOL_MIN) return malloc(len ? len : 1);
  if (u->npool) return u->pool[--u->npool];
  return malloc(u->pool_size);
}

static void pool_put(upload *u, uint8_t *b, uint64_t len) {
  if (len < POOL_MIN || !b || u->npool >= u->max_buffers) {
    free(b);
    return;
  }
  u->pool[u->npool++] = b;
}

/* Reads [off, off+len) of path and hashes it (md5 and, when sha != NULL,
 * sha256) in one pass. buf may be NULL (hash only, streaming). */
static int read_hash(const char *path, uint64_t off, uint64_t len, uint8_t *buf, uint8_t md5[16],
                     char *sha, char *ewhere, size_t wcap, char *etext, size_t tcap) {
  struct stat st; /* a FIFO put in the file's place is refused, never waited on */
  int fd = fio_openat_raw(AT_FDCWD, path, O_RDONLY, 0, &st);
  if (fd < 0) {
    snprintf(ewhere, wcap, "%s", path);
    snprintf(etext, tcap, "cannot open: %s", strerror(errno));
    return st_from_errno(errno);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    snprintf(ewhere, wcap, "%s", path);
    snprintf(etext, tcap, "it is %s now, not a regular file (the file changed during the upload?)",
             fio_kind(st.st_mode));
    return ST_EINVAL;
  }
  EVP_MD_CTX *m5 = EVP_MD_CTX_new(), *m2 = sha ? EVP_MD_CTX_new() : NULL;
  EVP_DigestInit_ex(m5, EVP_md5(), NULL);
  if (m2) EVP_DigestInit_ex(m2, EVP_sha256(), NULL);
  const size_t chunk = 1 << 20;
  uint8_t *tmp = buf ? NULL : malloc(chunk);
  int rc = 0;
  uint64_t done = 0;
  while (done < len) {
    size_t want = len - done > chunk ? chunk : (size_t)(len - done);
    uint8_t *dst = buf ? buf + done : tmp;
    if (!dst) {
      rc = ST_ENOMEM;
      snprintf(etext, tcap, "out of memory");
      break;
    }
    ssize_t n = pread(fd, dst, want, (off_t)(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      rc = n < 0 ? st_from_errno(errno) : ST_EIO;
      snprintf(ewhere, wcap, "%s", path);
      snprintf(etext, tcap, "%s at byte %llu (the file changed during the upload?)",
               n < 0 ? strerror(errno) : "unexpected end of file",
               (unsigned long long)(off + done));
      break;
    }
    EVP_DigestUpdate(m5, dst, (size_t)n);
    if (m2) EVP_DigestUpdate(m2, dst, (size_t)n);
    done += (uint64_t)n;
  }
  if (!rc) {
    unsigned int l = 0;
    EVP_DigestFinal_ex(m5, md5, &l);
    if (m2) {
      uint8_t d[32];
      EVP_DigestFinal_ex(m2, d, &l);
      static const char hexd[] = "0123456789abcdef";
      for (int i = 0; i < 32; i++) {
        sha[2 * i] = hexd[d[i] >> 4];
        sha[2 * i + 1] = hexd[d[i] & 15];
      }
      sha[64] = 0;
    }
  }
  EVP_MD_CTX_free(m5);
  if (m2) EVP_MD_CTX_free(m2);
  free(tmp);
  close(fd);
  return rc;
}

static void *worker(void *arg) {
  upload *u = arg;
  for (;;) {
    pthread_mutex_lock(&u->mu);
    while (!u->stop && u->buffers >= u->max_buffers) pthread_cond_wait(&u->cv, &u->mu);
    /* next part to read */
    while (!u->stop && u->cur_obj < u->nobj && u->objs[u->cur_obj].state != OBJ_PENDING) {
      u->cur_obj++;
      u->cur_part = 0;
    }
    if (u->stop || u->cur_obj >= u->nobj) {
      pthread_mutex_unlock(&u->mu);
      return NULL;
    }
    size_t oi = u->cur_obj;
    up_obj *o = &u->objs[oi];
    int part = o->nparts ? u->cur_part + 1 : 0;
    u->cur_part++;
    if (!o->nparts || u->cur_part >= o->nparts) {
      u->cur_obj++;
      u->cur_part = 0;
    }
    u->buffers++;
    pthread_mutex_unlock(&u->mu);

    up_task *t = calloc(1, sizeof *t);
    uint64_t off = part ? (uint64_t)(part - 1) * o->psize : 0;
    uint64_t len = part ? (o->size - off < o->psize ? o->size - off : o->psize) : o->size;
    int rc = 0;
    char ew[1024] = "", et[512] = "";
    if (t) {
      t->obj = oi;
      t->part = part;
      t->off = off;
      t->len = len;
      t->slot = -1;
      pthread_mutex_lock(&u->mu);
      t->buf = pool_get(u, len);
      pthread_mutex_unlock(&u->mu);
    }
    if (!t || !t->buf) {
      rc = ST_ENOMEM;
      snprintf(ew, sizeof ew, "%s", o->path);
      snprintf(et, sizeof et, "out of memory for a %llu-byte part", (unsigned long long)len);
    } else {
      rc = read_hash(o->path, off, len, t->buf, t->md5, u->unsigned_payload ? NULL : t->sha, ew,
                     sizeof ew, et, sizeof et);
      s3__md5_b64(t->md5, t->md5_b64);
    }
    pthread_mutex_lock(&u->mu);
    if (rc) {
      if (!u->werr_code) {
        u->werr_code = rc;
        snprintf(u->werr_where, sizeof u->werr_where, "%s", ew);
        snprintf(u->werr_text, sizeof u->werr_text, "%s", et);
      }
      u->stop = 1;
      u->buffers--;
      if (t) pool_put(u, t->buf, t->len);
      free(t);
      pthread_cond_broadcast(&u->cv);
    } else {
      u->hashed += len;
      if (u->ready_tail) u->ready_tail->next = t;
      else u->ready_head = t;
      u->ready_tail = t;
    }
    pthread_mutex_unlock(&u->mu);
    curl_multi_wakeup(u->multi);
  }
}

static int add_obj(upload *u, const char *path, const char *key, uint64_t size, st_error *err) {
  if (u->nobj >= PK_LIMIT_S3_FILES)
    return st_error_set(err, ST_E2BIG, path, -1, "more than %d files", PK_LIMIT_S3_FILES);
  if (strlen(key) > PK_LIMIT_S3_KEY_BYTES)
    return st_error_set(err, ST_E2BIG, path, -1, "key '%.80s...' longer than %d bytes", key,
                        PK_LIMIT_S3_KEY_BYTES);
  if (u->nobj == u->cap) {
    size_t cap = u->cap ? u->cap * 2 : 64;
    up_obj *n = realloc(u->objs, cap * sizeof *n);
    if (!n) return st_error_set(err, ST_ENOMEM, path, -1, NULL);
    u->objs = n;
    u->cap = cap;
  }
  up_obj *o = &u->objs[u->nobj];
  memset(o, 0, sizeof *o);
  o->path = strdup(path);
  o->key = strdup(key);
  if (!o->path || !o->key) {
    free(o->path);
    free(o->key);
    return st_error_set(err, ST_ENOMEM, path, -1, NULL);
  }
  o->size = size;
  o->psize = u->psize;
  if (size > u->threshold) {
    /* at most 10000 parts: grow the part size like the AWS CLI does */
    while ((size + o->psize - 1) / o->psize > S3_MAX_PARTS) o->psize *= 2;
    o->nparts = (int)((size + o->psize - 1) / o->psize);
  }
  u->nobj++;
  return 0;
}

static int obj_cmp(const void *a, const void *b) {
  return strcmp(((const up_obj *)a)->key, ((const up_obj *)b)->key);
}

typedef struct {
  char *rel;
  int dir;
} dent;

static int dent_cmp(const void *a, const void *b) {
  return strcmp(((const dent *)a)->rel, ((const dent *)b)->rel);
}

/* Every regular file below root/rel, in key order; symlinks and special
 * files are skipped and counted. */
static int walk_tree(upload *u, const char *root, const char *rel, const char *prefix,
                     size_t *skipped, int depth, st_error *err) {
  if (depth > 64) return st_error_set(err, ST_E2BIG, root, -1, "directory tree deeper than 64");
  char dir[8192];
  snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel);
  DIR *d = opendir(dir);
  if (!d) return st_error_errno(err, errno, dir, "cannot read directory");
  dent *ents = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  for (struct dirent *e = readdir(d); e; e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char full[8192];
    if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, e->d_name) >= sizeof full) {
      rc = st_error_set(err, ST_E2BIG, dir, -1, "path longer than %zu bytes", sizeof full);
      break;
    }
    struct stat st;
    if (lstat(full, &st) != 0) {
      rc = st_error_errno(err, errno, full, "cannot stat");
      break;
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
      (*skipped)++;
      continue;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      dent *ne = realloc(ents, cap * sizeof *ne);
      if (!ne) {
        rc = st_error_set(err, ST_ENOMEM, dir, -1, NULL);
        break;
      }
      ents = ne;
    }
    size_t rl = strlen(rel) + strlen(e->d_name) + 2;
    ents[n].rel = malloc(rl);
    if (!ents[n].rel) {
      rc = st_error_set(err, ST_ENOMEM, dir, -1, NULL);
      break;
    }
    snprintf(ents[n].rel, rl, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    ents[n].dir = S_ISDIR(st.st_mode);
    n++;
  }
  closedir(d);
  if (!rc) qsort(ents, n, sizeof *ents, dent_cmp);
  for (size_t i = 0; i < n && !rc; i++) {
    if (ents[i].dir) {
      rc = walk_tree(u, root, ents[i].rel, prefix, skipped, depth + 1, err);
    } else {
      char full[8192], key[PK_LIMIT_S3_KEY_BYTES + 4096];
      snprintf(full, sizeof full, "%s/%s", root, ents[i].rel);
      snprintf(key, sizeof key, "%s%s", prefix, ents[i].rel);
      struct stat st;
      if (stat(full, &st) != 0) rc = st_error_errno(err, errno, full, "cannot stat");
      else rc = add_obj(u, full, key, (uint64_t)st.st_size, err);
    }
  }
  for (size_t i = 0; i < n; i++) free(ents[i].rel);
  free(ents);
  return rc;
}

/* The expected ETag of a local file (for --skip-existing). */
static int local_etag(upload *u, up_obj *o, char *out, size_t cap, st_error *err) {
  char ew[1024] = "", et[512] = "";
  if (!o->nparts) {
    uint8_t d[16];
    int rc = read_hash(o->path, 0, o->size, NULL, d, NULL, ew, sizeof ew, et, sizeof et);
    if (rc) return st_error_set(err, rc, ew, -1, "%s", et);
    char h[33];
    s3__hex16(d, h);
    snprintf(out, cap, "%s", h);
    return 0;
  }
  uint8_t(*pm)[16] = malloc((size_t)o->nparts * 16);
  if (!pm) return st_error_set(err, ST_ENOMEM, o->path, -1, NULL);
  for (int p = 0; p < o->nparts; p++) {
    uint64_t off = (uint64_t)p * o->psize;
    uint64_t len = o->size - off < o->psize ? o->size - off : o->psize;
    int rc = read_hash(o->path, off, len, NULL, pm[p], NULL, ew, sizeof ew, et, sizeof et);
    if (rc) {
      free(pm);
      return st_error_set(err, rc, ew, -1, "%s", et);
    }
    if (st_cancelled(u->c)) {
      free(pm);
      return st_error_set(err, ST_ECANCELED, o->path, -1, "interrupted");
    }
  }
  o->pmd5 = pm;
  s3__multipart_etag(o, out, cap);
  o->pmd5 = NULL;
  free(pm);
  return 0;
}

static int cmp_info_key(const void *k, const void *e) {
  return strcmp((const char *)k, ((const s3_obj_info *)e)->key);
}

static int mark_existing(upload *u, const char *prefix, st_error *err) {
  s3_listing ls;
  int rc = s3__list(&u->cn, prefix, &ls, err);
  if (rc) return rc;
  for (size_t i = 0; i < u->nobj && !rc; i++) {
    up_obj *o = &u->objs[i];
    s3_obj_info *hit = ls.n ? bsearch(o->key, ls.items, ls.n, sizeof *ls.items, cmp_info_key) : NULL;
    if (!hit || hit->size != o->size) continue;
    char want[80], have[80];
    rc = local_etag(u, o, want, sizeof want, err);
    if (rc) break;
    s3__unquote(hit->etag, have, sizeof have);
    if (strcmp(want, have) == 0) {
      o->state = OBJ_SKIPPED;
      snprintf(o->etag, sizeof o->etag, "%s", have);
      snprintf(o->expect, sizeof o->expect, "%s", want);
    }
  }
  s3__list_free(&ls);
  return rc;
}

/* Starts task t on easy handle slot. */
static int task_start(upload *u, up_task *t, CURL **easies, s3_resp *resps, int slot,
                      st_error *err) {
  up_obj *o = &u->objs[t->obj];
  char pn[16];
  snprintf(pn, sizeof pn, "%d", t->part);
  const char *sha = u->unsigned_payload ? "UNSIGNED-PAYLOAD" : t->sha;
  s3_req rq = {.method = "PUT", .key = o->key, .payload_sha256 = sha, .content_md5 = t->md5_b64,
               .body = (const char *)t->buf, .body_len = (size_t)t->len};
  if (t->part) {
    rq.query[rq.nquery++] = (sigv4_kv){"partNumber", pn};
    rq.query[rq.nquery++] = (sigv4_kv){"uploadId", o->upload_id};
  }
  int rc = s3__req_setup(&u->cn, easies[slot], &rq, &resps[slot], err);
  if (rc) return rc;
  curl_easy_setopt(easies[slot], CURLOPT_PRIVATE, (void *)t);
  t->slot = slot;
  t->attempts++;
  if (curl_multi_add_handle(u->multi, easies[slot]) != CURLM_OK)
    return st_error_set(err, ST_EINTERNAL, o->key, -1, "curl_multi_add_handle failed");
  return 0;
}

static void task_free(upload *u, up_task *t) {
  pthread_mutex_lock(&u->mu);
  u->buffers--;
  pool_put(u, t->buf, t->len);
  pthread_cond_broadcast(&u->cv);
  pthread_mutex_unlock(&u->mu);
  free(t);
}

/* Threads that read and hash parts: one per core, at most 8. */
static int hashing_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return (int)(n < 1 ? 1 : n > 8 ? 8 : n);
}

/* The transfer loop of one upload: `jobs` easy handles on u->multi, the
 * parts the hashing threads made ready, those waiting for a retry, and what
 * the server has acknowledged. */
typedef struct xfer {
  upload *u;
  int jobs;
  CURL **easies;
  s3_resp *resps;
  up_task **inflight; /* by easy handle; NULL: free */
  int active;         /* handles in flight */
  pthread_t th[16];
  int nworkers;
  up_task *pend;      /* ready, or waiting for a retry (not_before) */
  double next_due;    /* earliest not_before of a waiting task, 0: none */
  size_t objs_left;   /* objects not yet uploaded */
  uint64_t done_bytes; /* parts and objects the server has acknowledged */
  uint64_t total;
  st_progress *pr;
} xfer;

/* Handles, responses and the hashing threads. */
static int xfer_open(xfer *x, st_error *err) {
  x->easies = calloc((size_t)x->jobs, sizeof *x->easies);
  x->resps = calloc((size_t)x->jobs, sizeof *x->resps);
  x->inflight = calloc((size_t)x->jobs, sizeof *x->inflight);
  if (!x->easies || !x->resps || !x->inflight) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
  for (int i = 0; i < x->jobs; i++) {
    s3__resp_init(&x->resps[i]);
    x->easies[i] = curl_easy_init();
    if (!x->easies[i])
      return st_error_set(err, ST_ENOMEM, NULL, -1, "cannot create curl handles");
  }
  int want = hashing_threads();
  if (want > x->jobs) want = x->jobs;
  for (int i = 0; i < want; i++)
    if (pthread_create(&x->th[x->nworkers], NULL, worker, x->u) == 0) x->nworkers++;
  if (!x->nworkers) return st_error_set(err, ST_EINTERNAL, NULL, -1, "cannot start threads");
  return 0;
}

/* Moves what the hashing threads made ready to the end of x->pend, in
 * order; a reading error of theirs becomes the upload's. */
static int take_ready(xfer *x, st_error *err) {
  upload *u = x->u;
  pthread_mutex_lock(&u->mu);
  if (u->werr_code) {
    int rc = st_error_set(err, u->werr_code, u->werr_where, -1, "%s", u->werr_text);
    pthread_mutex_unlock(&u->mu);
    return rc;
  }
  up_task *got = u->ready_head;
  u->ready_head = u->ready_tail = NULL;
  pthread_mutex_unlock(&u->mu);
  up_task **tail = &x->pend;
  while (*tail) tail = &(*tail)->next;
  *tail = got;
  return 0;
}

/* Starts every pending task that is due, while handles are free (a first
 * part opens its object's multipart upload). */
static int dispatch(xfer *x, st_error *err) {
  double now = st_now();
  x->next_due = 0;
  for (up_task **pp = &x->pend; *pp && x->active < x->jobs;) {
    up_task *t = *pp;
    if (t->not_before > now) {
      if (!x->next_due || t->not_before < x->next_due) x->next_due = t->not_before;
      pp = &t->next;
      continue;
    }
    up_obj *o = &x->u->objs[t->obj];
    int rc = t->part && !o->upload_id && !o->pmd5 ? s3__create_mpu(x->u, o, err) : 0;
    if (rc) return rc;
    int slot = 0;
    while (x->inflight[slot]) slot++;
    *pp = t->next;
    t->next = NULL;
    x->inflight[slot] = t;
    x->active++;
    rc = task_start(x->u, t, x->easies, x->resps, slot, err);
    if (rc) return rc;
  }
  return 0;
}

static void task_what(const up_task *t, char *what, size_t cap) {
  if (t->part) snprintf(what, cap, "UploadPart %d", t->part);
  else snprintf(what, cap, "PutObject");
}

/* A part or object the server took: its ETag must be its md5; the last
 * part of an object completes the multipart upload. */
static int on_stored(xfer *x, up_task *t, const s3_resp *r, st_error *err) {
  upload *u = x->u;
  up_obj *o = &u->objs[t->obj];
  char h[33], got_etag[80];
  s3__hex16(t->md5, h);
  s3__unquote(r->etag, got_etag, sizeof got_etag);
  if (strcmp(got_etag, h) != 0) {
    char where[1200];
    s3__where(&u->cn, o->key, where, sizeof where);
    return st_error_set(err, ST_ECHECKSUM, where, (long long)t->off,
                        "%s answered ETag '%s', expected the md5 %s",
                        t->part ? "UploadPart" : "PutObject", got_etag, h);
  }
  x->done_bytes += t->len;
  if (!t->part) {
    snprintf(o->etag, sizeof o->etag, "%s", got_etag);
    snprintf(o->expect, sizeof o->expect, "%s", h);
    o->state = OBJ_UPLOADED;
    x->objs_left--;
    return 0;
  }
  memcpy(o->pmd5[t->part - 1], t->md5, 16);
  if (--o->parts_left || o->state != OBJ_PENDING) return 0;
  int rc = s3__complete_mpu(u, o, err);
  if (!rc) x->objs_left--;
  return rc;
}

/* One finished transfer: stored, retried later (back on x->pend), or the
 * upload's error. The task is freed unless it is retried. */
static int on_done(xfer *x, CURLMsg *msg, st_error *err) {
  CURL *e = msg->easy_handle;
  up_task *t = NULL;
  curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&t);
  s3_resp *r = &x->resps[t->slot];
  r->cc = msg->data.result;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
  curl_multi_remove_handle(x->u->multi, e);
  x->inflight[t->slot] = NULL;
  t->slot = -1;
  x->active--;
  int k = s3__classify(r), rc = 0;
  char what[64];
  task_what(t, what, sizeof what);
  const char *key = x->u->objs[t->obj].key;
  if (k > 0 && t->attempts < PK_LIMIT_S3_ATTEMPTS) {
    double delay = s3__backoff(t->attempts);
    s3__say_retry(&x->u->cn, key, what, r, t->attempts, delay);
    t->not_before = st_now() + delay;
    t->next = x->pend;
    x->pend = t;
    return 0;
  }
  if (k == 0) rc = on_stored(x, t, r, err);
  else rc = s3__resp_error(&x->u->cn, key, what, r, t->attempts, err);
  task_free(x->u, t);
  return rc;
}

/* Runs the transfers a little, handles what finished, shows the bytes
 * acknowledged plus those in flight, and waits for the next event. */
static int turn(xfer *x, st_error *err) {
  int running = 0, left, rc = 0;
  curl_multi_perform(x->u->multi, &running);
  for (CURLMsg *msg = curl_multi_info_read(x->u->multi, &left); msg && !rc;
       msg = curl_multi_info_read(x->u->multi, &left))
    if (msg->msg == CURLMSG_DONE) rc = on_done(x, msg, err);
  if (rc) return rc;
  uint64_t shown = x->done_bytes;
  for (int i = 0; i < x->jobs; i++)
    if (x->inflight[i]) shown += x->resps[i].sent;
  st_progress_update(x->pr, shown > x->total ? x->total : shown);
  int wait_ms = 100;
  if (x->next_due) {
    double dt = x->next_due - st_now();
    int ms = dt <= 0 ? 0 : (int)(dt * 1000) + 1;
    if (ms < wait_ms) wait_ms = ms;
  }
  curl_multi_poll(x->u->multi, NULL, 0, wait_ms, NULL);
  return 0;
}

static void tasks_free(up_task *t) {
  while (t) {
    up_task *n = t->next;
    free(t->buf);
    free(t);
    t = n;
  }
}

/* Stops the hashing threads and drops whatever is in flight or queued. */
static void xfer_close(xfer *x) {
  upload *u = x->u;
  pthread_mutex_lock(&u->mu);
  u->stop = 1;
  pthread_cond_broadcast(&u->cv);
  pthread_mutex_unlock(&u->mu);
  for (int i = 0; i < x->nworkers; i++) pthread_join(x->th[i], NULL);
  for (int i = 0; x->inflight && i < x->jobs; i++)
    if (x->inflight[i]) {
      curl_multi_remove_handle(u->multi, x->easies[i]);
      tasks_free(x->inflight[i]);
    }
  tasks_free(x->pend);
  tasks_free(u->ready_head);
  u->ready_head = u->ready_tail = NULL;
  for (int i = 0; x->easies && i < x->jobs; i++) {
    if (x->resps) s3__resp_free(&x->resps[i]);
    if (x->easies[i]) curl_easy_cleanup(x->easies[i]);
  }
  free(x->easies);
  free(x->resps);
  free(x->inflight);
}

/* Every pending object to S3: the hashing threads read and hash parts, this
 * thread keeps up to --jobs of them in flight on one curl multi handle. */
static int run_transfers(upload *u, uint64_t total, st_progress *pr, st_error *err) {
  xfer x = {.u = u, .jobs = u->jobs, .total = total, .pr = pr};
  for (size_t i = 0; i < u->nobj; i++) x.objs_left += u->objs[i].state == OBJ_PENDING;
  int rc = xfer_open(&x, err);
  while (!rc && x.objs_left > 0) {
    if (st_cancelled(u->c))
      rc = st_error_set(err, ST_ECANCELED, u->cn.bucket, -1,
                        "interrupted; unfinished multipart uploads aborted");
    if (!rc) rc = take_ready(&x, err);
    if (!rc) rc = dispatch(&x, err);
    if (!rc) rc = turn(&x, err);
  }
  /* a failed upload's bar ends at what the server acknowledged, not at
   * what was sent (a rejected last part would read 100 %) */
  if (rc) st_progress_update(pr, x.done_bytes);
  xfer_close(&x);
  return rc;
}

static void show_table(upload *u, const char *url) {
  const char *hd[] = {"key", "size", "ETag", "parts", "status"};
  int right[] = {0, 1, 0, 1, 0};
  tbl *t = tbl_new(5, hd, right);
  if (!t) return;
  size_t shown = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < u->nobj; i++) {
    up_obj *o = &u->objs[i];
    bytes += o->size;
    if (shown >= PK_LIMIT_S3_TABLE_ROWS) continue;
    char size[32], parts[16];
    snprintf(size, sizeof size, "%llu", (unsigned long long)o->size);
    snprintf(parts, sizeof parts, "%d", o->nparts ? o->nparts : 1);
    const char *row[] = {o->key, size, o->etag, parts,
                         o->state == OBJ_SKIPPED ? "skipped" : o->state == OBJ_UPLOADED ? "uploaded" : "-"};
    tbl_add(t, row, 0);
    shown++;
  }
  char more[64] = "", total[32], nf[128];
  if (u->nobj > shown) snprintf(more, sizeof more, " (%zu rows not shown)", u->nobj - shown);
  snprintf(total, sizeof total, "%llu", (unsigned long long)bytes);
  snprintf(nf, sizeof nf, "%zu objects%s", u->nobj, more);
  const char *tr[] = {nf, total, "", "", ""};
  tbl_add(t, tr, 1);
  char cap[1400];
  snprintf(cap, sizeof cap, "upload to %s", url);
  tbl_display(u->c, t, cap, NULL, 0);
  tbl_free(t);
}

static void upload_free(upload *u) {
  for (size_t i = 0; i < u->nobj; i++) {
    free(u->objs[i].path);
    free(u->objs[i].key);
    free(u->objs[i].upload_id);
    free(u->objs[i].pmd5);
  }
  free(u->objs);
  for (int i = 0; i < u->npool; i++) free(u->pool[i]);
  free(u->pool);
  if (u->multi) curl_multi_cleanup(u->multi);
  pthread_mutex_destroy(&u->mu);
  pthread_cond_destroy(&u->cv);
  s3__conn_close(&u->cn);
}

/* What the line asks for, checked once. */
typedef struct up_opts {
  const char *src, *url;
  char bucket[64], key[PK_LIMIT_S3_KEY_BYTES + 1];
  uint64_t psize, threshold;
  int jobs;
  int unsigned_payload; /* --integrity md5 */
  struct stat st; /* of src */
} up_opts;

static int parse_opts(const st_args *a, up_opts *o, st_error *err) {
  o->src = a->pos[0];
  o->url = a->pos[1];
  long long psize_mib, threshold_mib, jobs;
  int rc = s3_parse_url(o->url, o->bucket, sizeof o->bucket, o->key, sizeof o->key, err);
  if (!rc) rc = st_arg_int(a, "part-size", 8, 5, 5120, &psize_mib, err);
  if (!rc) rc = st_arg_int(a, "threshold", 32, 5, 5120, &threshold_mib, err);
  if (!rc) rc = st_arg_int(a, "jobs", 8, 1, 64, &jobs, err);
  if (rc) return rc;
  const char *integ = st_arg_str(a, "integrity", "sha256");
  if (strcmp(integ, "sha256") && strcmp(integ, "md5"))
    return st_error_set(err, ST_EINVAL, "--integrity", -1,
                        "expected sha256 (Content-MD5 and the signed SHA-256 of each payload, the "
                        "default) or md5 (Content-MD5 only), got '%.40s'", integ);
  o->unsigned_payload = strcmp(integ, "md5") == 0;
  o->psize = (uint64_t)psize_mib * MiB;
  o->threshold = (uint64_t)threshold_mib * MiB;
  o->jobs = (int)jobs;
  if (stat(o->src, &o->st) != 0) return st_error_errno(err, errno, o->src, "cannot upload");
  if (!S_ISREG(o->st.st_mode) && !S_ISDIR(o->st.st_mode))
    return st_error_set(err, ST_EINVAL, o->src, -1, "it is %s, not a regular file or a folder",
                        fio_kind(o->st.st_mode));
  return 0;
}

/* The objects to upload: every regular file of a tree, as PREFIX/relative
 * path in key order, or the one file, at the key the URL names or at
 * PREFIX/NAME when it ends with '/'. prefix receives the key prefix. */
static int collect(upload *u, const up_opts *o, char *prefix, size_t pcap, st_error *err) {
  const char *key = o->key;
  size_t kl = strlen(key);
  size_t skipped_special = 0;
  int rc;
  if (S_ISDIR(o->st.st_mode)) {
    snprintf(prefix, pcap, "%s%s", key, kl && key[kl - 1] != '/' ? "/" : "");
    char root[4096];
    snprintf(root, sizeof root, "%s", o->src);
    size_t rl = strlen(root);
    while (rl > 1 && root[rl - 1] == '/') root[--rl] = 0;
    rc = walk_tree(u, root, "", prefix, &skipped_special, 0, err);
    if (!rc) qsort(u->objs, u->nobj, sizeof *u->objs, obj_cmp); /* binary key order */
  } else {
    char k2[PK_LIMIT_S3_KEY_BYTES + 4096];
    if (!kl || key[kl - 1] == '/') {
      const char *base = strrchr(o->src, '/');
      snprintf(k2, sizeof k2, "%s%s", key, base ? base + 1 : o->src);
    } else {
      snprintf(k2, sizeof k2, "%s", key);
    }
    snprintf(prefix, pcap, "%.*s", PK_LIMIT_S3_KEY_BYTES, k2);
    rc = add_obj(u, o->src, k2, (uint64_t)o->st.st_size, err);
  }
  if (rc) return rc;
  if (skipped_special)
    st_eprintf(u->c, "upload: skipped %zu symbolic links or special files\n", skipped_special);
  if (u->nobj == 0) return st_error_set(err, ST_EINVAL, o->src, -1, "no regular files to upload");
  return 0;
}

/* Part buffers in memory: enough for every job and every hashing thread,
 * each holding the largest body sent (a part, or a file up to --threshold),
 * within PK_LIMIT_S3_BUFFER_BYTES; and the curl multi handle. */
static int plan_buffers(upload *u, st_error *err) {
  uint64_t maxp = POOL_MIN;
  for (size_t i = 0; i < u->nobj; i++) {
    uint64_t body = u->objs[i].nparts ? u->objs[i].psize : u->objs[i].size;
    if (body > maxp) maxp = body;
  }
  long long nb = (long long)u->jobs + hashing_threads() + 2;
  if ((long long)maxp * nb > PK_LIMIT_S3_BUFFER_BYTES) nb = PK_LIMIT_S3_BUFFER_BYTES / (long long)maxp;
  u->max_buffers = (int)(nb < 1 ? 1 : nb);
  u->pool_size = maxp;
  u->pool = calloc((size_t)u->max_buffers, sizeof *u->pool);
  if (!u->pool) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
  u->multi = curl_multi_init();
  if (!u->multi) return st_error_set(err, ST_ENOMEM, NULL, -1, "cannot create a curl multi handle");
  curl_multi_setopt(u->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)u->jobs);
  return 0;
}

/* Each file to send measured in the page cache (and with --cold dropped
 * from it); returns the seconds it took, which the stage's time leaves
 * out (writing out dirty pages is not uploading). */
static double prepare_files(const upload *u, pc_stats *cache, const char *path) {
  double t0 = st_now();
  pc_note_fs(cache, path);
  for (size_t i = 0; i < u->nobj; i++)
    if (u->objs[i].state != OBJ_SKIPPED) pc_prepare_path(cache, u->objs[i].path);
  pc_report(u->c, "upload", cache);
  return st_now() - t0;
}

/* What will be sent: bytes, objects, multipart objects, skipped ones. */
typedef struct up_plan {
  uint64_t total;
  size_t nup, nskip, nmulti;
} up_plan;

static void plan(const upload *u, up_plan *p) {
  memset(p, 0, sizeof *p);
  for (size_t i = 0; i < u->nobj; i++) {
    if (u->objs[i].state == OBJ_SKIPPED) {
      p->nskip++;
    } else {
      p->nup++;
      p->total += u->objs[i].size;
      p->nmulti += u->objs[i].nparts > 0;
    }
  }
}

/* The transfers under a progress bar; after a failure or an interrupt the
 * multipart uploads still open are aborted. */
static int send_all(upload *u, const up_plan *p, const char *prefix, st_error *err) {
  st_progress pr;
  char label[128];
  if ((size_t)snprintf(label, sizeof label, "upload s3://%s/%s", u->cn.bucket, prefix) >=
      sizeof label)
    snprintf(label + sizeof label - 4, 4, "...");
  st_progress_begin(u->c, &pr, label, "B", p->total);
  int rc = p->nup ? run_transfers(u, p->total, &pr, err) : 0;
  if (rc) s3__abort_open(u, err);
  st_progress_end(&pr, rc);
  return rc;
}

int s3_upload(st_ctx *c, const st_args *a, st_error *err) {
  up_opts o;
  memset(&o, 0, sizeof o);
  int rc = parse_opts(a, &o, err);
  if (rc) return rc;
  upload u;
  memset(&u, 0, sizeof u);
  u.c = c;
  u.jobs = o.jobs;
  u.psize = o.psize;
  u.threshold = o.threshold;
  u.unsigned_payload = o.unsigned_payload;
  pthread_mutex_init(&u.mu, NULL);
  pthread_cond_init(&u.cv, NULL);
  double t0 = st_now();
  char prefix[PK_LIMIT_S3_KEY_BYTES + 2];
  up_plan p;
  rc = collect(&u, &o, prefix, sizeof prefix, err);
  if (!rc) rc = s3__conn_open(&u.cn, c, a, o.bucket, err);
  if (!rc) rc = s3__bucket_ready(&u.cn, st_arg_has(a, "create-bucket"), err);
  if (!rc && st_arg_has(a, "skip-existing")) rc = mark_existing(&u, prefix, err);
  if (!rc && st_arg_has(a, "skip-existing")) rc = s3__abort_stale(&u, prefix, err);
  pc_stats cache;
  pc_init(&cache, st_arg_has(a, "cold"));
  if (!rc) t0 += prepare_files(&u, &cache, a->pos[0]);
  if (!rc) plan(&u, &p);
  if (!rc) rc = plan_buffers(&u, err);
  if (!rc) rc = send_all(&u, &p, prefix, err);
  if (!rc) {
    double dt = st_now() - t0;
    show_table(&u, o.url);
    char sz[32], rate[32];
    st_fmt_bytes(sz, sizeof sz, p.total);
    st_fmt_rate(rate, sizeof rate, p.total, dt);
    esc_buf ep;
    st_printf(c, "upload: %s, %zu file%s (%zu multipart, %zu skipped) to s3://%s/%s in %.2f s (%s)\n",
              sz, p.nup, p.nup == 1 ? "" : "s", p.nmulti, p.nskip, o.bucket, esc_name(&ep, prefix), dt, rate);
    pc_timing_add(c, &cache, "upload", "upload", dt, p.total, p.nup, "libcurl-multi+openssl-evp", NULL);
  }
  upload_free(&u);
  return rc;
}
