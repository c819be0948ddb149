/*
 * download.c -- %download (see download.h).
 *
 * libcurl runs on the stage thread (so its progress callback may report and
 * poll for interrupts); the write callback appends to PATH.part, updates the
 * md5 and, with --extract, copies the bytes into a bounded queue that the
 * extractor (stages/data/extract.c) pulls from: for gzip its inflater thread,
 * which feeds the extractor thread that writes and hashes the members. So
 * receiving + md5, inflating, and writing + per-member md5 run side by side.
 */
#include "download.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "extract.h"
#include "lib/limits.h"
#include "manifest.h"
#include "md5.h"
#include "lib/ring.h"
#include "s3/s3.h"
#include "verify.h"

const st_option dl_download_opts[] = {
    {"to", 1, "PATH", "where to write (default: the URL's file name in the working folder)"},
    {"md5", 1, "HEX", "the md5 the download must have"},
    {"extract", 1, "DIR", "extract the archive into DIR while downloading"},
    {"verify", 1, "MANIFEST", "md5sum manifest to check after extracting (see %verify)"},
    {"resume", 0, NULL, "continue an earlier PATH.part with a Range request"},
    {"retries", 1, "N", "retries on connection errors and 5xx answers (default 3)"},
    {"timeout", 1, "S", "connect timeout and longest stall, seconds (default 60)"},
    {"cacert", 1, "FILE", "CA bundle to verify the server with (TLS is always verified)"},
    {"endpoint", 1, "URL", "s3:// only: the S3 endpoint (as for %upload)"},
    {"region", 1, "R", "s3:// only: region"},
    {"profile", 1, "P", "s3:// only: profile of ~/.aws/credentials and ~/.aws/config"},
    {"path-style", 0, NULL, "s3:// only: path-style addressing"},
    {"virtual-hosted", 0, NULL, "s3:// only: virtual-hosted addressing"},
    {"jobs", 1, "N", "s3:// only: ranged GETs in flight, 1-64 (default 8)"},
    {"part-size", 1, "MiB", "s3:// only: bytes of one ranged GET, 1-5120 (default 32; whole parts of a multipart object)"},
    {"integrity", 1, "md5|headers", "s3:// only: md5 (default): the ETag checked against the bytes end to end; headers: each answer's range, length and ETag only, the bytes not hashed (as boto3 and s5cmd)"},
    {NULL, 0, NULL, NULL}};

/* ---- the queue between curl and the extractor ---- */
#define DQ_CHUNK (1u << 20)
#define DQ_SLOTS 8

typedef struct {
  ring_buf ring;
  uint8_t *cur;    /* the acquired slot being filled by dq_push, or NULL */
  size_t fill;     /* bytes in it */
} dqueue;

static int dq_init(dqueue *q) {
  q->cur = NULL;
  q->fill = 0;
  return ring_init(&q->ring, DQ_SLOTS, DQ_CHUNK);
}
static void dq_free(dqueue *q) { ring_free(&q->ring); }

static int dq_cancelled(void *c) { return st_cancelled(c); }

/* producer: 0, or -1 when the consumer is gone or we were cancelled */
static int dq_push(dqueue *q, st_ctx *c, const uint8_t *b, size_t n) {
  while (n) {
    if (!q->cur) {
      q->cur = ring_acquire(&q->ring, dq_cancelled, c);
      if (!q->cur) return -1;
    }
    size_t k = DQ_CHUNK - q->fill < n ? DQ_CHUNK - q->fill : n;
    memcpy(q->cur + q->fill, b, k);
    q->fill += k;
    b += k;
    n -= k;
    if (q->fill == DQ_CHUNK) {
      ring_publish(&q->ring, q->fill);
      q->cur = NULL;
      q->fill = 0;
    }
  }
  return 0;
}

/* producer, whole buffers: hands *buf (DQ_CHUNK bytes of room, n used)
 * to the consumer and takes the free slot's buffer in exchange, so the
 * bytes are not copied. Only between whole chunks (nothing half filled). */
static int dq_give(dqueue *q, st_ctx *c, uint8_t **buf, size_t n) {
  if (q->fill) return dq_push(q, c, *buf, n);
  if (!ring_acquire(&q->ring, dq_cancelled, c)) return -1;
  ring_publish_swap(&q->ring, buf, n);
  return 0;
}

/* producer: the end of the data (how 1, after what is half filled) or an
 * error (how -1) */
static void dq_close(dqueue *q, int how) {
  if (q->cur && q->fill && how > 0) ring_publish(&q->ring, q->fill);
  q->cur = NULL;
  q->fill = 0;
  ring_close(&q->ring, how);
}

/* consumer (the extractor) */
static ssize_t dq_pull(void *ud, const void **out) { return ring_take(&((dqueue *)ud)->ring, out); }

/* ---- the transfer ---- */
typedef struct {
  st_ctx *c;
  st_error *err;
  int fd;
  const char *name;      /* safe URL for messages */
  EVP_MD_CTX *md;
  uint64_t have;         /* bytes in PATH.part */
  uint64_t skip;         /* bytes of a 200 answer to drop (server ignored Range) */
  uint64_t req_from;     /* offset requested */
  int first;             /* first write of this attempt */
  long long cr_start;    /* Content-Range start of this answer, -1: none */
  uint64_t base;         /* offset of the answer's first byte (for the progress total) */
  double last_data;      /* st_now() when bytes last arrived (or the attempt began) */
  double stall_s;        /* --timeout: the longest wait for bytes */
  int stalled;           /* aborted by us: no bytes for stall_s */
  dqueue *q;             /* NULL without --extract */
  st_progress *p;
  int write_error;
  int sink_failed;       /* the extractor stopped */
  CURL *curl;
  uint8_t *wb;           /* received bytes not yet sunk: curl hands them over */
  size_t wlen;           /* 16 KiB at a time, the file and the queue take MiBs */
} xfer;

#define DL_WBUF DQ_CHUNK /* a whole queue slot: flush() hands it over */

/* Writes (to_file), hashes and queues n bytes. `own`: b is *own, a
 * DQ_CHUNK buffer the queue may take in exchange for another. */
static int sink(xfer *x, const uint8_t *b, size_t n, int to_file, uint8_t **own) {
  if (x->have + n > PK_LIMIT_DOWNLOAD_BYTES) {
    st_error_set(x->err, ST_E2BIG, x->name, (long long)x->have, "response larger than %llu bytes",
                 (unsigned long long)PK_LIMIT_DOWNLOAD_BYTES);
    return -1;
  }
  if (to_file) {
    const uint8_t *p = b;
    size_t left = n;
    while (left) {
      ssize_t w = write(x->fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        x->write_error = errno;
        return -1;
      }
      p += w;
      left -= (size_t)w;
    }
  }
  EVP_DigestUpdate(x->md, b, n);
  if (x->q && (own ? dq_give(x->q, x->c, own, n) : dq_push(x->q, x->c, b, n))) {
    x->sink_failed = 1;
    return -1;
  }
  x->have += n;
  return 0;
}

/* Sinks what write_cb gathered: 0, or -1 as sink. Called when the buffer is
 * full and whenever an attempt ends, so PATH.part holds every byte received
 * (x->have counts them) before a retry, a resume offset or a message. */
static int flush(xfer *x) {
  size_t n = x->wlen;
  x->wlen = 0;
  return n ? sink(x, x->wb, n, 1, &x->wb) : 0;
}

/* Remembers where a 206 answer starts ("Content-Range: bytes A-B/T"). */
static size_t header_cb(char *data, size_t sz, size_t nm, void *ud) {
  xfer *x = ud;
  size_t n = sz * nm;
  if (n > 5 && !strncmp(data, "HTTP/", 5)) x->cr_start = -1; /* a new answer (redirects) */
  if (n > 14 && !strncasecmp(data, "Content-Range:", 14)) {
    const char *v = data + 14, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    if (end - v > 6 && !strncasecmp(v, "bytes ", 6)) {
      unsigned long long a = 0;
      int digits = 0;
      for (v += 6; v < end && *v >= '0' && *v <= '9' && digits < 19; v++, digits++)
        a = a * 10 + (unsigned long long)(*v - '0');
      if (digits && v < end && *v == '-') x->cr_start = (long long)a;
    }
  }
  return n;
}

static size_t write_cb(char *data, size_t sz, size_t nm, void *ud) {
  xfer *x = ud;
  size_t n = sz * nm;
  if (x->first) {
    x->first = 0;
    long code = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
    x->base = code == 200 ? 0 : code == 206 && x->cr_start >= 0 ? (uint64_t)x->cr_start : x->req_from;
    if (x->req_from > 0 && code == 200) x->skip = x->req_from; /* Range ignored */
    if (x->req_from > 0 && code == 206) {
      /* a part must start at or before the bytes we asked for, or bytes would be missing */
      if (x->cr_start < 0 || (uint64_t)x->cr_start > x->req_from) {
        char got[48] = "none";
        if (x->cr_start >= 0) snprintf(got, sizeof got, "bytes %lld-", x->cr_start);
        st_error_set(x->err, ST_EHTTP, x->name, (long long)x->req_from,
                     "asked for bytes=%llu- and the server answered 206 with Content-Range %s",
                     (unsigned long long)x->req_from, got);
        return 0;
      }
      x->skip = x->req_from - (uint64_t)x->cr_start; /* overlap: drop what we have */
    }
  }
  x->last_data = st_now();
  const uint8_t *b = (const uint8_t *)data;
  size_t len = n;
  if (x->skip) {
    size_t k = x->skip < len ? (size_t)x->skip : len;
    x->skip -= k;
    b += k;
    len -= k;
  }
  while (len) {
    size_t k = DL_WBUF - x->wlen < len ? DL_WBUF - x->wlen : len;
    memcpy(x->wb + x->wlen, b, k);
    x->wlen += k;
    b += k;
    len -= k;
    if (x->wlen == DL_WBUF && flush(x)) return 0;
  }
  if (st_cancelled(x->c)) return 0;
  return n;
}

static int xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ul, curl_off_t ulnow) {
  xfer *x = ud;
  if (dltotal > 0) st_progress_set_total(x->p, x->base + (uint64_t)dltotal);
  st_progress_update(x->p, x->have);
  if (st_cancelled(x->c)) return 1;
  /* curl's low-speed check averages over several seconds: a stall is timed here */
  if (st_now() - x->last_data > x->stall_s) {
    x->stalled = 1;
    return 1;
  }
  return 0;
}

/* URL without credentials or query, for messages. */
static void safe_url(const char *url, char *out, size_t cap) {
  const char *s = strstr(url, "://");
  const char *host = s ? s + 3 : url;
  const char *slash = strchr(host, '/');
  const char *at = strchr(host, '@');
  if (at && (!slash || at < slash)) host = at + 1;
  size_t pre = s ? (size_t)(s + 3 - url) : 0;
  size_t n = strcspn(host, "?#");
  snprintf(out, cap, "%.*s%.*s%s", (int)pre, url, (int)n, host, host[n] ? "?..." : "");
}

static int url_basename(const char *url, char *out, size_t cap) {
  const char *s = strstr(url, "://");
  s = s ? s + 3 : url;
  size_t n = strncmp(url, "s3://", 5) == 0 ? strlen(s) : strcspn(s, "?#"); /* a key may hold them */
  const char *end = s + n, *b = end;
  while (b > s && b[-1] != '/') b--;
  if (b == s || b == end) return -1;
  snprintf(out, cap, "%.*s", (int)(end - b), b);
  return strcmp(out, ".") && strcmp(out, "..") ? 0 : -1;
}

/* the extractor wants no more bytes: its inflater must not wait in dq_pull */
static void dq_abort(void *ud) { ring_stop(&((dqueue *)ud)->ring); }

static void *extract_thread(void *arg) {
  dx_job *j = arg;
  dx_run(j);
  if (j->needs_file) { /* zip, 7-Zip: extracted from the file once it is complete */
    const void *b;
    while (dq_pull(j->ud, &b) > 0) {
    }
  }
  dq_abort(j->ud); /* finished: the producer must not wait for room */
  return NULL;
}

static const char *known_member(void *ud, const char *path) { return dx_member_md5(ud, path); }

static int retryable(CURLcode cc, long code) {
  if (cc == CURLE_HTTP_RETURNED_ERROR) return code >= 500;
  switch (cc) {
  case CURLE_COULDNT_CONNECT: case CURLE_COULDNT_RESOLVE_HOST: case CURLE_PARTIAL_FILE:
  case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_GOT_NOTHING:
  case CURLE_OPERATION_TIMEDOUT: case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
    return 1;
  default:
    return 0;
  }
}

static int curl_code_to_st(CURLcode cc) {
  switch (cc) {
  case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_ISSUER_ERROR: case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    return ST_ETLS;
  case CURLE_OPERATION_TIMEDOUT: return ST_ETIMEDOUT;
  case CURLE_HTTP_RETURNED_ERROR: return ST_EHTTP;
  case CURLE_FILE_COULDNT_READ_FILE: return ST_ENOENT;
  case CURLE_UNSUPPORTED_PROTOCOL: case CURLE_URL_MALFORMAT: return ST_EINVAL;
  default: return ST_ENET;
  }
}

/* ---- the stage: options, a job, a chain of steps, one cleanup ---- */

/* The options, parsed and checked once, before anything is touched. */
typedef struct dl_opts {
  const char *url;
  const char *md5;       /* --md5, checked: 32 hex digits */
  const char *exdir;     /* --extract DIR */
  const char *manifest;  /* --verify MANIFEST */
  const char *cacert;
  long long retries, tmo;
  int resume;
  int s3;                /* an s3://BUCKET/KEY: read with ranged GETs (stages/s3/get.c) */
  char name[1024];       /* the URL without credentials or query, for messages */
  char to[4096];         /* PATH */
  char part[4200];       /* PATH.part */
} dl_opts;

/* Everything a run holds; dl_cleanup releases it whatever step failed. */
typedef struct dl_job {
  st_ctx *c;
  st_error *err;
  const dl_opts *o;
  mf_list mf;            /* --verify's manifest, read before any byte moves */
  int fd;                /* PATH.part, -1 when closed */
  int made_part;         /* PATH.part was opened (cleanup may remove it) */
  EVP_MD_CTX *md;
  dqueue q;
  int have_q;
  dx_job *xj;            /* --extract: the extractor's job */
  pthread_t xth;
  int xstarted;          /* its thread runs and must be joined */
  CURL *curl;
  st_progress p;
  int pstarted;
  int in_place;          /* the download is complete, right and renamed to PATH */
  xfer x;
  double t0;             /* st_now() when PATH.part was opened */
  char ebuf[CURL_ERROR_SIZE]; /* curl's reason for the last attempt's failure */
  char hex[33];          /* the md5 of the whole download, once complete ("" if not made) */
  const st_args *a;      /* the line: an s3:// download takes its connection options */
  s3_get_obj g;          /* an s3:// download: what was read and checked */
} dl_job;

/* Parses and checks the arguments into o; 0 or ST_EINVAL. */
static int dl_opts_parse(const st_args *a, dl_opts *o, st_error *err) {
  memset(o, 0, sizeof *o);
  o->url = a->pos[0];
  o->md5 = st_arg_str(a, "md5", NULL);
  o->exdir = st_arg_str(a, "extract", NULL);
  o->manifest = st_arg_str(a, "verify", NULL);
  o->cacert = st_arg_str(a, "cacert", NULL);
  o->resume = st_arg_has(a, "resume");
  o->s3 = strncmp(o->url, "s3://", 5) == 0;
  int rc = st_arg_int(a, "retries", 3, 0, PK_LIMIT_DOWNLOAD_RETRIES, &o->retries, err);
  if (!rc) rc = st_arg_int(a, "timeout", 60, 1, 86400, &o->tmo, err);
  if (rc) return rc;
  if (o->md5 && !md5_valid_hex(o->md5))
    return st_error_set(err, ST_EINVAL, "--md5", -1, "expected 32 hex digits, got \"%.40s\"", o->md5);
  safe_url(o->url, o->name, sizeof o->name);
  if (st_arg_has(a, "to")) snprintf(o->to, sizeof o->to, "%s", st_arg_str(a, "to", ""));
  else if (url_basename(o->url, o->to, sizeof o->to))
    return st_error_set(err, ST_EINVAL, o->name, -1, "the URL names no file: give --to PATH");
  snprintf(o->part, sizeof o->part, "%s.part", o->to);
  return 0;
}

/* Reads the manifest, opens PATH.part (kept with --resume) and starts the
 * md5 and the receive buffer. */
static int dl_open(dl_job *j) {
  const dl_opts *o = j->o;
  int rc = o->manifest ? mf_load(o->manifest, &j->mf, j->err) : 0;
  if (rc) return rc;
  j->fd = open(o->part, O_RDWR | O_CREAT | O_CLOEXEC | (o->resume ? 0 : O_TRUNC), 0644);
  if (j->fd < 0) return st_error_errno(j->err, errno, o->part, "cannot create");
  j->made_part = 1;
  j->md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(j->md, EVP_md5(), NULL);
  j->t0 = st_now();
  j->x.fd = j->fd;
  j->x.md = j->md;
  j->x.wb = malloc(DL_WBUF);
  if (!j->x.wb) return st_error_set(j->err, ST_ENOMEM, o->name, -1, "out of memory");
  return 0;
}

/* --extract: starts the extractor thread behind the queue (nothing without). */
static int dl_start_extractor(dl_job *j) {
  const dl_opts *o = j->o;
  if (!o->exdir) return 0;
  j->xj = calloc(1, sizeof *j->xj);
  if (!j->xj || dq_init(&j->q)) return st_error_set(j->err, ST_ENOMEM, o->name, -1, "out of memory");
  j->have_q = 1;
  dx_job *xj = j->xj;
  xj->c = j->c;
  xj->where = o->name; /* errors name the URL: nothing is kept under --to */
  xj->dest = o->exdir;
  xj->pull = dq_pull;
  xj->abort = dq_abort;
  xj->ud = &j->q;
  xj->hash = o->manifest != NULL;
  xj->undo = o->md5 != NULL; /* a wrong md5 puts DIR back as it was */
  j->x.q = &j->q;
  if (pthread_create(&j->xth, NULL, extract_thread, xj))
    return st_error_set(j->err, ST_EINTERNAL, o->name, -1, "cannot start the extractor thread");
  j->xstarted = 1;
  return 0;
}

/* Opens the progress bar "download NAME". */
static int dl_begin_progress(dl_job *j) {
  char label[200];
  const char *bn = strrchr(j->o->to, '/');
  snprintf(label, sizeof label, "download %.180s", bn ? bn + 1 : j->o->to);
  st_progress_begin(j->c, &j->p, label, "B", 0);
  j->pstarted = 1;
  return 0;
}

/* Why the bytes could not be sunk (a write error, the extractor stopped, or
 * an error already set); joins the extractor when it stopped. */
static int dl_sink_failed(dl_job *j) {
  if (j->x.write_error) return st_error_errno(j->err, j->x.write_error, j->o->part, "write failed");
  if (j->x.sink_failed && j->xj) {
    dq_close(&j->q, 1);
    pthread_join(j->xth, NULL);
    j->xstarted = 0;
    if (j->xj->err.code) *j->err = j->xj->err;
    else st_error_set(j->err, ST_EINTERNAL, j->o->name, -1, "the extractor stopped");
    return j->err->code;
  }
  return j->err->code ? j->err->code : ST_EIO;
}

/* --resume: hashes (and extracts) what PATH.part already holds. */
static int dl_resume(dl_job *j) {
  if (!j->o->resume || j->o->s3) return 0; /* s3_get hashes and extracts what is there itself */
  const char *part = j->o->part;
  uint8_t *b = malloc(1u << 20);
  if (!b) return st_error_set(j->err, ST_ENOMEM, part, -1, "out of memory");
  ssize_t k;
  for (;;) {
    k = read(j->fd, b, 1u << 20);
    if (k <= 0 || sink(&j->x, b, (size_t)k, 0, NULL)) break;
  }
  free(b);
  if (k < 0) return st_error_errno(j->err, errno, part, "read failed");
  if (j->x.sink_failed || j->err->code) return dl_sink_failed(j);
  if (j->x.have) st_printf(j->c, "resuming %s at byte %llu\n", part, (unsigned long long)j->x.have);
  return 0;
}

/* Sets up one attempt: curl's options, and the transfer state from the
 * bytes PATH.part holds (a Range request or an offset when there are any). */
static void dl_attempt_setup(dl_job *j) {
  const dl_opts *o = j->o;
  char *ebuf = j->ebuf;
  CURL *curl = j->curl;
  xfer *x = &j->x;
  curl_easy_reset(curl);
  ebuf[0] = 0;
  curl_easy_setopt(curl, CURLOPT_URL, o->url);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https,file");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, (long)PK_LIMIT_DOWNLOAD_REDIRECTS);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "pipekernel");
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, ebuf);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, x);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)o->tmo);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)o->tmo);
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L * 1024);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (o->cacert) curl_easy_setopt(curl, CURLOPT_CAINFO, o->cacert);
  x->req_from = x->have;
  x->first = 1;
  x->skip = 0;
  x->cr_start = -1;
  x->base = x->have;
  x->last_data = st_now();
  x->stall_s = (double)o->tmo;
  x->stalled = 0;
  x->curl = curl;
  if (x->have) {
    /* http(s): a Range header (a 200 answer is handled by skipping); file: an offset */
    if (!strncasecmp(o->url, "http", 4)) {
      char range[48];
      snprintf(range, sizeof range, "%llu-", (unsigned long long)x->have);
      curl_easy_setopt(curl, CURLOPT_RANGE, range);
    } else {
      curl_easy_setopt(curl, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)x->have);
    }
  }
}

/* The error of a failed attempt that is not retried: "HTTP 404", or curl's
 * reason, with the number of attempts made. */
static int dl_give_up(dl_job *j, CURLcode cc, long code, const char *ebuf, long long attempt) {
  st_error *err = j->err;
  int rc;
  if (cc == CURLE_HTTP_RETURNED_ERROR)
    rc = st_error_set(err, ST_EHTTP, j->o->name, -1, "HTTP %ld%s", code, attempt ? " (after retries)" : "");
  else
    rc = st_error_set(err, curl_code_to_st(cc), j->o->name, (long long)j->x.have, "%s%s%s",
                      curl_easy_strerror(cc), ebuf[0] ? ": " : "", ebuf);
  if (attempt) {
    size_t l = strlen(err->text);
    snprintf(err->text + l, sizeof err->text - l, " (%lld attempts)", attempt + 1);
  }
  return rc;
}

/* Says why attempt `attempt` failed and waits the backoff (0.5 s doubling,
 * at most 8 s), polling for interrupts; 0, or ST_ECANCELED. */
static int dl_backoff(dl_job *j, CURLcode cc, long code, const char *ebuf, long long attempt) {
  double delay = 0.5 * (double)(1u << (attempt < 5 ? attempt : 5));
  if (delay > 8) delay = 8;
  char why[CURL_ERROR_SIZE + 64];
  if (cc == CURLE_HTTP_RETURNED_ERROR) snprintf(why, sizeof why, "HTTP %ld", code);
  else snprintf(why, sizeof why, "%s%s%s", curl_easy_strerror(cc), ebuf[0] ? ": " : "", ebuf);
  st_eprintf(j->c, "download: %s; retry %lld of %lld in %.1f s from byte %llu\n", why, attempt + 1,
             j->o->retries, delay, (unsigned long long)j->x.have);
  for (double w = 0; w < delay; w += 0.1) {
    if (st_cancelled(j->c))
      return st_error_set(j->err, ST_ECANCELED, j->o->name, (long long)j->x.have, "interrupted");
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    st_progress_update(&j->p, j->x.have);
  }
  return 0;
}

/* After a failed attempt: 0 to try again (after the backoff; a refused
 * Range starts over from byte 0), or the error that ends the download. */
static int dl_attempt_failed(dl_job *j, CURLcode cc, long code, long long attempt) {
  const dl_opts *o = j->o;
  char *ebuf = j->ebuf;
  if (cc == CURLE_ABORTED_BY_CALLBACK && j->x.stalled && !st_cancelled(j->c)) {
    cc = CURLE_OPERATION_TIMEDOUT;
    snprintf(ebuf, sizeof j->ebuf, "no data for %lld s (--timeout)", o->tmo);
  }
  if (st_cancelled(j->c) || cc == CURLE_ABORTED_BY_CALLBACK)
    return st_error_set(j->err, ST_ECANCELED, o->name, (long long)j->x.have,
                        "interrupted (%s keeps %llu bytes; --resume continues)", o->part,
                        (unsigned long long)j->x.have);
  if (j->x.sink_failed || j->x.write_error || j->err->code) return dl_sink_failed(j);
  if (cc == CURLE_RANGE_ERROR || (cc == CURLE_HTTP_RETURNED_ERROR && code == 416)) {
    /* Range not satisfiable: start over */
    if (j->x.q) return st_error_set(j->err, ST_EHTTP, o->name, -1, "the server refused the Range request");
    if (ftruncate(j->fd, 0) || lseek(j->fd, 0, SEEK_SET))
      return st_error_errno(j->err, errno, o->part, "truncate failed");
    j->x.have = 0;
    EVP_DigestInit_ex(j->md, EVP_md5(), NULL);
  } else if (!retryable(cc, code) || attempt >= o->retries) {
    return dl_give_up(j, cc, code, ebuf, attempt);
  }
  return dl_backoff(j, cc, code, ebuf, attempt);
}

/* An s3:// download's bytes, in order, on get.c's taker thread: to the
 * extractor's queue (get.c writes PATH.part and hashes them itself). */
static int s3_sink(void *ud, const uint8_t *b, size_t n) {
  dl_job *j = ud;
  if (j->have_q && dq_push(&j->q, j->c, b, n)) {
    j->x.sink_failed = 1;
    return ST_ECANCELED;
  }
  j->x.have += n;
  return 0;
}

/* s3://BUCKET/KEY: ranged GETs in parallel into PATH.part, each answer and
 * the ETag checked by s3_get; the whole md5 is made when --md5 asks for it
 * (or the ETag is one). --resume continues what PATH.part holds. */
static int dl_transfer_s3(dl_job *j) {
  struct stat st;
  j->g.fd = j->fd;
  j->g.path = j->o->part;
  j->g.sink = s3_sink;
  j->g.sink_ud = j;
  j->g.want_md5 = j->o->md5 != NULL;
  j->g.md5_given = j->o->md5;
  j->g.resume = j->o->resume && fstat(j->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
  if (j->g.resume)
    st_printf(j->c, "resuming %s at byte %llu\n", j->o->part, (unsigned long long)j->g.resume);
  int rc = s3_get(j->c, j->a, j->o->url, &j->g, &j->p, j->err);
  if (rc && j->x.sink_failed && j->xj) {
    st_error_clear(j->err);
    return dl_sink_failed(j);
  }
  if (!rc) st_progress_update(&j->p, j->x.have);
  return rc;
}

/* Receives the body into PATH.part (and the queue), retrying as --retries
 * allows; 0 once curl has delivered all of it. */
static int dl_transfer(dl_job *j) {
  if (j->o->s3) return dl_transfer_s3(j);
  j->curl = curl_easy_init();
  if (!j->curl)
    return st_error_set(j->err, ST_EINTERNAL, j->o->name, -1, "curl_easy_init failed");
  for (long long attempt = 0;; attempt++) {
    dl_attempt_setup(j);
    CURLcode cc = curl_easy_perform(j->curl);
    if (flush(&j->x) && cc == CURLE_OK) cc = CURLE_WRITE_ERROR;
    long code = 0;
    curl_easy_getinfo(j->curl, CURLINFO_RESPONSE_CODE, &code);
    if (cc == CURLE_OK) break;
    int rc = dl_attempt_failed(j, cc, code, attempt);
    if (rc) return rc;
  }
  st_progress_update(&j->p, j->x.have);
  return 0;
}

/* Finishes the md5; with --md5, a mismatch removes PATH.part and undoes
 * what was extracted from the wrong bytes. */
static int dl_check_md5(dl_job *j) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int dl;
  EVP_DigestFinal_ex(j->md, d, &dl);
  md5_hex(d, j->hex);
  if (j->o->s3) snprintf(j->hex, sizeof j->hex, "%s", j->g.md5); /* s3_get made it, or "" */
  const char *md5 = j->o->md5;
  if (!md5 || !strcasecmp(md5, j->hex)) return 0;
  /* what was extracted came from the wrong bytes: it goes too */
  size_t gone = 0;
  if (j->xstarted) {
    dq_close(&j->q, 1);
    pthread_join(j->xth, NULL);
    j->xstarted = 0;
    gone = dx_rollback(j->xj);
  }
  int rc = st_error_set(j->err, ST_ECHECKSUM, j->o->name, -1,
                        "md5 mismatch: expected %.32s, got %s; nothing kept%s", md5, j->hex,
                        gone ? " (what was extracted from it is undone too)" : "");
  unlink(j->o->part);
  return rc;
}

/* Ends the queue and waits for the extractor; its error is the download's
 * (undone at cleanup: with --md5 it is all or nothing). */
static int dl_join_extractor(dl_job *j) {
  if (!j->xstarted) return 0;
  dq_close(&j->q, 1);
  pthread_join(j->xth, NULL);
  j->xstarted = 0;
  if (!j->xj->err.code) return 0;
  *j->err = j->xj->err;
  return j->err->code;
}

/* Closes PATH.part and renames it to PATH, commits a streamed extraction
 * and reports the download line and its timing. */
static int dl_place(dl_job *j) {
  const dl_opts *o = j->o;
  /* a write error some file systems report only now (NFS, quotas) must stop the rename */
  int cfd = j->fd;
  j->fd = -1;
  if (close(cfd)) return st_error_errno(j->err, errno, o->part, "write failed");
  if (rename(o->part, o->to)) return st_error_errno(j->err, errno, o->to, "rename failed");
  j->in_place = 1;
  if (j->xj && !j->xj->needs_file) dx_commit(j->xj); /* all is in place: what the members replaced goes */
  st_progress_end(&j->p, 0);
  j->pstarted = 0;
  double dt = st_now() - j->t0;
  char b1[32], r1[32];
  st_fmt_bytes(b1, sizeof b1, j->x.have);
  st_fmt_rate(r1, sizeof r1, j->x.have, dt);
  if (o->s3) { /* the ETag was checked; the md5 is made when --md5 asked for it */
    st_printf(j->c, "download: %s in %.2f s (%s), %s%s%s%s -> %s\n", b1, dt, r1,
              j->hex[0] ? "md5 " : "", j->hex, j->hex[0] ? (o->md5 ? " OK, " : ", ") : "",
              j->g.check, o->to);
    st_timing_add(j->c, "download", "download", dt, j->x.have, 1, "s3 ranged GET", j->hex[0] ? j->hex : j->g.etag);
    return 0;
  }
  st_printf(j->c, "download: %s in %.2f s (%s), md5 %s%s -> %s\n", b1, dt, r1, j->hex,
            o->md5 ? " OK" : "", o->to);
  st_timing_add(j->c, "download", "download", dt, j->x.have, 1, "libcurl", j->hex);
  return 0;
}

/* --extract: a zip or 7-Zip (directory at the end) is extracted now from
 * the whole file; a streamed extraction gets its summary line. */
static int dl_extract_after(dl_job *j) {
  dx_job *xj = j->xj;
  const dl_opts *o = j->o;
  if (!xj) return 0;
  if (!xj->needs_file) {
    char b2[32];
    st_fmt_bytes(b2, sizeof b2, atomic_load(&xj->out_bytes));
    uint64_t nf = atomic_load(&xj->files);
    st_printf(j->c, "extract: %s, %llu file%s into %s while downloading (%s)\n", b2,
              (unsigned long long)nf, nf == 1 ? "" : "s", o->exdir, xj->backend);
    return 0;
  }
  double t1 = st_now();
  xj->needs_file = 0;
  xj->where = o->to;
  const char *tb = strrchr(o->to, '/');
  if (dx_extract_file(j->c, xj, o->to, tb ? tb + 1 : o->to)) { /* undone at cleanup with --md5 */
    *j->err = xj->err;
    return j->err->code;
  }
  dx_commit(xj);
  char note[96];
  snprintf(note, sizeof note, "after the download: %s reads a zip or 7-Zip from the whole file",
           xj->backend);
  dx_report(j->c, xj, st_now() - t1, o->exdir, note);
  return 0;
}

/* --verify: checks the manifest, with the md5 of each member as extracted. */
static int dl_verify(dl_job *j) {
  const dl_opts *o = j->o;
  if (!o->manifest) return 0;
  char root[4096];
  if (o->exdir) snprintf(root, sizeof root, "%s", o->exdir);
  else {
    const char *sl = strrchr(o->manifest, '/');
    snprintf(root, sizeof root, "%.*s", sl ? (int)(sl - o->manifest) : 1, sl ? o->manifest : ".");
  }
  return vf_run(j->c, o->manifest, &j->mf, root, 0, 0, j->xj ? known_member : NULL, j->xj,
                j->xj ? "md5-while-extracting" : "openssl-evp", j->err);
}

/* Releases everything the job holds whatever step failed, and returns rc.
 * With --md5 an extraction stands only when the whole download succeeded;
 * PATH.part is kept for --resume after network errors and interrupts. */
static int dl_cleanup(dl_job *j, int rc) {
  const dl_opts *o = j->o;
  if (j->pstarted) st_progress_end(&j->p, rc);
  if (j->xstarted) {
    dq_close(&j->q, -1);
    pthread_join(j->xth, NULL);
  }
  if (j->have_q) dq_free(&j->q);
  if (j->xj) {
    /* with --md5 the extraction stands only once the md5 is right: any
     * other end puts DIR back; without it, what was extracted stays (as
     * after %extract) */
    size_t gone = rc && j->xj->undo ? dx_rollback(j->xj) : 0;
    dx_commit(j->xj);
    if (gone && j->in_place) /* a zip or 7-Zip, extracted after the download */
      st_eprintf(j->c, "download: the extraction into %s is undone (%zu file%s); the download itself "
                       "is complete and right, and kept as %s\n", o->exdir, gone, gone == 1 ? "" : "s", o->to);
    else if (gone)
      st_eprintf(j->c, "download: the extraction into %s is undone (%zu file%s): with --md5 it is "
                       "kept only when the whole download succeeds\n", o->exdir, gone, gone == 1 ? "" : "s");
    dx_job_free(j->xj);
    free(j->xj);
  }
  if (j->curl) curl_easy_cleanup(j->curl);
  EVP_MD_CTX_free(j->md);
  free(j->x.wb);
  if (j->fd >= 0) close(j->fd);
  /* keep PATH.part for --resume after network errors and interrupts, not after bad data */
  if (j->made_part && rc &&
      (j->x.have == 0 || (rc != ST_ECANCELED && rc != ST_ENET && rc != ST_ETIMEDOUT && rc != ST_EHTTP)))
    unlink(o->part);
  mf_free(&j->mf);
  return rc;
}

int dl_download(st_ctx *c, const st_args *a, st_error *err) {
  const char *url = a->pos[0];
  size_t ul = strlen(url);
  if (strncmp(url, "s3://", 5) == 0 && (url[ul - 1] == '/' || !strchr(url + 5, '/'))) {
    if (!st_arg_has(a, "to"))
      return st_error_set(err, ST_EINVAL, url, -1, "a prefix is downloaded to a folder: give --to DIR");
    return s3_get_tree(c, a, url, st_arg_str(a, "to", ""), err);
  }
  dl_opts o;
  int rc = dl_opts_parse(a, &o, err);
  if (rc) return rc;
  dl_job j;
  memset(&j, 0, sizeof j);
  j.c = c;
  j.err = err;
  j.o = &o;
  j.fd = -1;
  j.x.c = c;
  j.x.err = err;
  j.x.fd = -1;
  j.x.name = o.name;
  j.x.p = &j.p;
  j.a = a;
  if (!rc) rc = dl_open(&j);
  if (!rc) rc = dl_start_extractor(&j);
  if (!rc) rc = dl_begin_progress(&j);
  if (!rc) rc = dl_resume(&j);
  if (!rc) rc = dl_transfer(&j);
  if (!rc) rc = dl_check_md5(&j);
  if (!rc) rc = dl_join_extractor(&j);
  if (!rc) rc = dl_place(&j);
  if (!rc) rc = dl_extract_after(&j);
  if (!rc) rc = dl_verify(&j);
  return dl_cleanup(&j, rc);
}
