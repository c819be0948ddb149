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
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "extract.h"
#include "lib/escape.h"
#include "lib/fileio.h"
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
    {"max-ratio", 1, "N", "--extract: most bytes extracted per archive byte (as for %extract)"},
    {"endpoint", 1, "URL", "s3:// only: the S3 endpoint (as for %upload)"},
    {"region", 1, "R", "s3:// only: region"},
    {"profile", 1, "P", "s3:// only: profile of ~/.aws/credentials and ~/.aws/config"},
    {"path-style", 0, NULL, "s3:// only: path-style addressing"},
    {"virtual-hosted", 0, NULL, "s3:// only: virtual-hosted addressing"},
    {"jobs", 1, "N", "s3:// only: ranged GETs in flight, 1-64 (default 8)"},
    {"part-size", 1, "MiB", "s3:// only: bytes of one ranged GET, 1-5120 (default 32; whole parts of a multipart object)"},
    {"integrity", 1, "md5|headers", "s3:// only: md5 (default): the ETag checked against the bytes end to end; headers: each answer's range, length and ETag only, the bytes not hashed (as boto3 and s5cmd)"},
    {"page-cache", 0, NULL, "s3:// only: write through the page cache (default: objects of 8 MiB or more that go straight to their file are written with O_DIRECT where the file system takes it)"},
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
  int compare;           /* ... each checked against PATH.part (with --extract) */
  uint64_t req_from;     /* offset requested */
  dl_resource res;       /* what the first answer said (--resume: kept with PATH.part) */
  dl_answer ans;         /* this attempt's answer, as its headers arrive */
  long long expect;      /* body bytes this answer must carry, -1: not known */
  uint64_t body;         /* body bytes of this answer so far */
  int restart;           /* the answer is not the rest of the resource: start over */
  int drop_part;         /* PATH.part holds bytes of a resource that changed: not kept */
  char why[600];         /* why, for restart */
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

/* ---- the checks of a resumed answer ---- */
const char *dl__if_range(const dl_resource *r) {
  if (r->etag[0] && strncmp(r->etag, "W/", 2) != 0) return r->etag; /* If-Range needs a strong one */
  if (r->lastmod[0]) return r->lastmod;
  return NULL;
}

int dl__check_answer(const dl_answer *a, unsigned long long from, const dl_resource *r, char *why,
                     size_t cap) {
  why[0] = 0;
  if (!from) {
    if (a->code != 206) return DL_TAKE;
    snprintf(why, cap, "asked for the whole file and the server answered 206");
    return DL_FAIL;
  }
  if (a->code == 200) return DL_WHOLE;
  if (a->code != 206) {
    snprintf(why, cap, "asked for bytes=%llu- and the server answered %d", from, a->code);
    return DL_RESTART;
  }
  char cr[96] = "none", bad[300] = "";
  if (a->has_range && a->cr_start >= 0 && a->cr_end >= 0 && a->cr_total >= 0)
    snprintf(cr, sizeof cr, "bytes %lld-%lld/%lld", a->cr_start, a->cr_end, a->cr_total);
  else if (a->has_range && a->cr_start >= 0 && a->cr_end >= 0)
    snprintf(cr, sizeof cr, "bytes %lld-%lld/*", a->cr_start, a->cr_end);
  else if (a->has_range)
    snprintf(cr, sizeof cr, "(not bytes A-B/T)");
  if (!a->has_range || a->cr_start < 0 || a->cr_end < 0)
    snprintf(bad, sizeof bad, "no range that can be checked");
  else if ((unsigned long long)a->cr_start != from)
    snprintf(bad, sizeof bad, "it starts at byte %lld, not at %llu", a->cr_start, from);
  else if (a->cr_end < a->cr_start)
    snprintf(bad, sizeof bad, "it ends before it starts");
  else if (a->cr_total < 0)
    snprintf(bad, sizeof bad, "it does not say the file's length");
  else if (r->total >= 0 && a->cr_total != r->total)
    snprintf(bad, sizeof bad, "the file is %lld bytes long, the first answer's was %lld: another file",
             a->cr_total, r->total);
  else if (a->cr_end != a->cr_total - 1)
    snprintf(bad, sizeof bad, "it ends at byte %lld, not at the last byte, %lld", a->cr_end, a->cr_total - 1);
  else if (a->clen >= 0 && a->clen != a->cr_end - a->cr_start + 1)
    snprintf(bad, sizeof bad, "its Content-Length %lld is not the %lld bytes of that range", a->clen,
             a->cr_end - a->cr_start + 1);
  else if (r->etag[0] && a->etag[0] && strcmp(r->etag, a->etag) != 0)
    snprintf(bad, sizeof bad, "its ETag %.100s is not the first answer's %.100s: another file", a->etag, r->etag);
  else if (!r->etag[0] && r->lastmod[0] && a->lastmod[0] && strcmp(r->lastmod, a->lastmod) != 0)
    snprintf(bad, sizeof bad, "its Last-Modified %.100s is not the first answer's %.100s: another file",
             a->lastmod, r->lastmod);
  if (!bad[0]) return DL_TAKE;
  snprintf(why, cap, "asked for bytes=%llu- and the server answered 206 with Content-Range %s (%s)", from, cr,
           bad);
  return DL_RESTART;
}

/* The decimal number at s[0..n) (at most 18 digits), or -1. */
static long long parse_num(const char **s, const char *end) {
  long long v = 0;
  int digits = 0;
  for (; *s < end && **s >= '0' && **s <= '9' && digits < 18; (*s)++, digits++) v = v * 10 + (**s - '0');
  return digits ? v : -1;
}

/* "bytes A-B/T" (T may be a star: not known) into a. */
static void parse_content_range(dl_answer *a, const char *v, const char *end) {
  a->has_range = 1;
  if (end - v < 6 || strncasecmp(v, "bytes ", 6)) return;
  v += 6;
  long long s0 = parse_num(&v, end);
  if (s0 < 0 || v >= end || *v++ != '-') return;
  long long e0 = parse_num(&v, end);
  if (e0 < 0 || v >= end || *v++ != '/') return;
  a->cr_start = s0;
  a->cr_end = e0;
  a->cr_total = v < end && *v == '*' ? -1 : parse_num(&v, end);
}

/* The value of header line data[0..n) when it is `name`: *v .. *end,
 * without surrounding blanks and the line end. */
static int header_is(const char *data, size_t n, const char *name, const char **v, const char **end) {
  size_t k = strlen(name);
  if (n <= k || strncasecmp(data, name, k) || data[k] != ':') return 0;
  const char *p = data + k + 1, *e = data + n;
  while (p < e && (*p == ' ' || *p == '\t')) p++;
  while (e > p && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) e--;
  *v = p;
  *end = e;
  return 1;
}

/* Writes its length and validators beside PATH.part (an extended
 * attribute), so that a later --resume can ask for the rest of the same
 * file; where the file system keeps none, --resume checks the range only. */
#define DL_XATTR "user.pipekernel.resource"
static void save_resource(xfer *x) {
  char v[3 * DL_TAG_MAX];
  int n = snprintf(v, sizeof v, "%lld\n%s\n%s", x->res.total, x->res.etag, x->res.lastmod);
  if (n > 0 && (size_t)n < sizeof v) fsetxattr(x->fd, DL_XATTR, v, (size_t)n, 0);
}

static void load_resource(xfer *x) {
  char v[3 * DL_TAG_MAX + 1];
  ssize_t n = fgetxattr(x->fd, DL_XATTR, v, sizeof v - 1);
  if (n <= 0) return;
  v[n] = 0;
  char *e1 = strchr(v, '\n'), *e2 = e1 ? strchr(e1 + 1, '\n') : NULL;
  if (!e2) return;
  *e1 = *e2 = 0;
  char *end;
  long long t = strtoll(v, &end, 10);
  if (*end || t < -1) return;
  x->res.total = t;
  snprintf(x->res.etag, sizeof x->res.etag, "%s", e1 + 1);
  snprintf(x->res.lastmod, sizeof x->res.lastmod, "%s", e2 + 1);
}

/* This answer describes the resource from now on (the first one, or the
 * one that replaced it). */
static void take_resource(xfer *x) {
  const dl_answer *a = &x->ans;
  x->res.total = a->code == 206 ? a->cr_total : a->clen;
  snprintf(x->res.etag, sizeof x->res.etag, "%s", a->etag);
  snprintf(x->res.lastmod, sizeof x->res.lastmod, "%s", a->lastmod);
  save_resource(x);
}

/* Drops what PATH.part holds: the download starts again from byte 0.
 * 0, or -1 with x->write_error. */
static int xfer_start_over(xfer *x) {
  if (ftruncate(x->fd, 0) || lseek(x->fd, 0, SEEK_SET) < 0) {
    x->write_error = errno;
    return -1;
  }
  EVP_DigestInit_ex(x->md, EVP_md5(), NULL);
  x->have = 0;
  memset(&x->res, 0, sizeof x->res);
  x->res.total = -1;
  fremovexattr(x->fd, DL_XATTR);
  return 0;
}

/* At the end of a final answer's headers: is its body what was asked for
 * (dl__check_answer)? 1 to take it, 0 to stop the transfer (x->restart, or
 * an error set). */
static int headers_done(xfer *x) {
  const dl_answer *a = &x->ans;
  char why[sizeof x->why];
  int v = dl__check_answer(a, x->req_from, &x->res, why, sizeof why);
  x->expect = a->code == 206 && v == DL_TAKE ? a->cr_end - a->cr_start + 1 : a->clen;
  x->base = a->code == 206 ? x->req_from : 0;
  if (v == DL_TAKE) { /* from byte 0 this is the file; a first 206 (--resume) says what it is */
    if (!x->req_from || (x->res.total < 0 && !x->res.etag[0] && !x->res.lastmod[0])) take_resource(x);
    return 1;
  }
  if (v == DL_WHOLE && !x->q) { /* nothing went further than PATH.part: take this one whole */
    if (xfer_start_over(x)) return 0;
    take_resource(x);
    st_eprintf(x->c, "download: asked for bytes=%llu- and the server sent the whole file (HTTP %d); "
                     "taking it from byte 0\n", (unsigned long long)x->req_from, a->code);
    x->req_from = 0;
    return 1;
  }
  if (v == DL_WHOLE) { /* with --extract: only if it starts with the very bytes extracted */
    if (a->clen >= 0 && x->res.total >= 0 && a->clen != x->res.total) {
      snprintf(why, sizeof why, "asked for bytes=%llu- and the server sent a whole file of %lld bytes, "
               "the first answer's was %lld: another file", (unsigned long long)x->req_from, a->clen,
               x->res.total);
      v = DL_RESTART;
    } else {
      x->skip = x->req_from;
      x->compare = 1;
      return 1;
    }
  }
  if (v == DL_RESTART && !x->q) {
    snprintf(x->why, sizeof x->why, "%s", why);
    x->restart = 1;
    return 0;
  }
  x->drop_part = 1;
  st_error_set(x->err, ST_EHTTP, x->name, (long long)x->req_from, "%s%s", why,
               v == DL_RESTART ? "; what was extracted from the bytes before cannot be taken back, "
                                 "so it cannot start over" : "");
  return 0;
}

int dl__answer_line(dl_answer *a, const char *data, size_t n) {
  const char *v, *end;
  if (n > 5 && !strncmp(data, "HTTP/", 5)) { /* a new answer (redirects, 100 Continue) */
    memset(a, 0, sizeof *a);
    a->cr_start = a->cr_end = a->cr_total = a->clen = -1;
    const char *sp = memchr(data, ' ', n);
    long long code = sp ? (sp++, parse_num(&sp, data + n)) : -1;
    a->code = code < 0 || code > 999 ? 0 : (int)code;
  } else if (header_is(data, n, "Content-Range", &v, &end)) {
    parse_content_range(a, v, end);
  } else if (header_is(data, n, "Content-Length", &v, &end)) {
    a->clen = parse_num(&v, end);
  } else if (header_is(data, n, "ETag", &v, &end)) {
    snprintf(a->etag, sizeof a->etag, "%.*s", (int)(end - v), v);
  } else if (header_is(data, n, "Last-Modified", &v, &end)) {
    snprintf(a->lastmod, sizeof a->lastmod, "%.*s", (int)(end - v), v);
  } else if ((n == 2 && data[0] == '\r' && data[1] == '\n') || (n == 1 && data[0] == '\n')) {
    return 1; /* the end of the headers */
  }
  return 0;
}

/* Collects what the checks need from each header line of an answer; at
 * the end of a final answer's headers, headers_done decides. */
static size_t header_cb(char *data, size_t sz, size_t nm, void *ud) {
  xfer *x = ud;
  size_t n = sz * nm;
  dl_answer *a = &x->ans;
  if (dl__answer_line(a, data, n) && a->code >= 200 && a->code < 300 && !headers_done(x)) return 0;
  return n;
}

/* With --extract, a 200 answer to a Range request: the bytes it repeats
 * must be the ones PATH.part holds (what was extracted came from them).
 * 0, or -1 with the error set. */
static int compare_prefix(xfer *x, const uint8_t *b, size_t n, uint64_t off) {
  uint8_t have[65536];
  while (n) {
    size_t k = n < sizeof have ? n : sizeof have;
    ssize_t r = pread(x->fd, have, k, (off_t)off);
    if (r != (ssize_t)k || memcmp(have, b, k) != 0) {
      x->drop_part = 1;
      st_error_set(x->err, ST_EHTTP, x->name, (long long)off,
                   "asked for bytes=%llu- and the server sent the whole file again, with other bytes "
                   "than the first answer's: the file changed on the server; what was extracted from "
                   "the bytes before cannot be taken back, so it cannot start over",
                   (unsigned long long)x->req_from);
      return -1;
    }
    b += k;
    n -= k;
    off += k;
  }
  return 0;
}

static size_t write_cb(char *data, size_t sz, size_t nm, void *ud) {
  xfer *x = ud;
  size_t n = sz * nm;
  x->last_data = st_now();
  x->body += n;
  if (x->expect >= 0 && x->body > (uint64_t)x->expect) { /* more than its length or its range says */
    char why[200];
    snprintf(why, sizeof why, "the server sent more than the %lld bytes its answer announced", x->expect);
    if (!x->q) {
      snprintf(x->why, sizeof x->why, "%s", why);
      x->restart = 1;
    } else {
      x->drop_part = 1;
      st_error_set(x->err, ST_EHTTP, x->name, (long long)x->have, "%s", why);
    }
    return 0;
  }
  const uint8_t *b = (const uint8_t *)data;
  size_t len = n;
  if (x->skip) {
    size_t k = x->skip < len ? (size_t)x->skip : len;
    if (x->compare && compare_prefix(x, b, k, x->req_from - x->skip)) return 0;
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
  uint64_t max_ratio;    /* --max-ratio, for --extract */
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
  struct curl_slist *hdrs; /* If-Range of the attempt */
  char *ca;              /* --cacert's bundle, read once */
  size_t calen;
  st_progress p;
  int pstarted;
  int in_place;          /* the download is complete, right and renamed to PATH */
  xfer x;
  double t0;             /* st_now() when PATH.part was opened */
  char ebuf[CURL_ERROR_SIZE]; /* curl's reason for the last attempt's failure */
  char hex[33];          /* the md5 of the whole download, once complete ("" if not made) */
  const st_args *a;      /* the line: an s3:// download takes its connection options */
  s3_get_obj g;          /* an s3:// download: what was read and checked */
  int src_fd;            /* a file:// source, opened and checked; -1 if none */
  char src_url[64];      /* what curl reads then: that open file, not the name again */
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
  if (!rc) rc = dx_ratio_opt(a, &o->max_ratio, err);
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

/* A file:// URL names a regular file: curl would open a FIFO there and
 * wait for a writer. The file is opened as fio_open opens (never blocking,
 * a regular file or an error) and kept open; curl then reads that open file
 * through /proc/self/fd, so a name swapped for a FIFO after the check is
 * not what curl opens. 0, or the error; a URL curl will refuse itself (a
 * host, a %00) and a missing file are left to curl, which names the URL. */
static int dl_open_file_url(dl_job *j) {
  const char *url = j->o->url;
  if (strncasecmp(url, "file://", 7)) return 0;
  CURLU *u = curl_url();
  char *path = NULL;
  if (!u) return st_error_set(j->err, ST_ENOMEM, j->o->name, -1, "out of memory");
  int ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
           curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE) == CURLUE_OK;
  curl_url_cleanup(u);
  if (!ok) {
    curl_free(path);
    return 0; /* curl's own error, naming the URL */
  }
  struct stat st;
  int fd = fio_open(path, O_RDONLY, FIO_FILE, "the file the URL names", &st, j->err);
  curl_free(path);
  if (fd == ST_ENOENT) {
    st_error_clear(j->err); /* curl says it, naming the URL */
    return 0;
  }
  if (fd < 0) return fd;
  char via[32];
  snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
  if (access(via, R_OK) != 0) { /* no /proc: the name was checked, curl opens it again */
    close(fd);
    return 0;
  }
  j->src_fd = fd;
  snprintf(j->src_url, sizeof j->src_url, "file://%s", via);
  return 0;
}

/* Reads the manifest and --cacert, checks a file:// source, opens
 * PATH.part (kept with --resume) and starts the md5 and the receive
 * buffer. */
static int dl_open(dl_job *j) {
  const dl_opts *o = j->o;
  int rc = o->manifest ? mf_load(o->manifest, &j->mf, j->err) : 0;
  if (!rc && o->cacert)
    rc = fio_read_all(o->cacert, PK_LIMIT_CACERT_BYTES, "PK_LIMIT_CACERT_BYTES", "the CA bundle", &j->ca,
                      &j->calen, j->err);
  if (!rc) rc = dl_open_file_url(j);
  if (rc) return rc;
  /* never blocks, and never writes into a FIFO or a device left at that name */
  j->fd = fio_open(o->part, O_RDWR | O_CREAT | (o->resume ? 0 : O_TRUNC), FIO_FILE, "the partial download",
                   NULL, j->err);
  if (j->fd < 0) return j->fd;
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
  xj->max_ratio = o->max_ratio;
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
  if (j->x.have) load_resource(&j->x); /* what the run that wrote PATH.part was told */
  esc_buf eb;
  if (j->x.have) st_printf(j->c, "resuming %s at byte %llu\n", esc_name(&eb, part), (unsigned long long)j->x.have);
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
  curl_easy_setopt(curl, CURLOPT_URL, j->src_url[0] ? j->src_url : o->url);
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
  if (j->ca) {
    struct curl_blob ca = {j->ca, j->calen, CURL_BLOB_COPY}; /* read once, never blocking */
    curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca);
  }
  x->req_from = x->have;
  x->skip = 0;
  x->compare = 0;
  memset(&x->ans, 0, sizeof x->ans);
  x->expect = -1;
  x->body = 0;
  x->restart = 0;
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
      /* the rest of the same file, or (a server that keeps its word) all of the new one */
      const char *ir = dl__if_range(&x->res);
      char hdr[DL_TAG_MAX + 16];
      curl_slist_free_all(j->hdrs);
      j->hdrs = NULL;
      if (ir) {
        snprintf(hdr, sizeof hdr, "If-Range: %s", ir);
        j->hdrs = curl_slist_append(NULL, hdr);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, j->hdrs);
      }
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
  esc_buf ew; /* curl's words may quote the server */
  st_eprintf(j->c, "download: %s; retry %lld of %lld in %.1f s from byte %llu\n", esc_name(&ew, why), attempt + 1,
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

/* The answer was not the rest of the file (x->why): PATH.part is dropped
 * and the next attempt asks for all of it, at once; without a retry left,
 * the error. */
static int dl_start_over(dl_job *j, long long attempt) {
  xfer *x = &j->x;
  x->restart = 0;
  if (attempt >= j->o->retries) {
    x->drop_part = 1;
    return st_error_set(j->err, ST_EHTTP, j->o->name, (long long)x->req_from,
                        "%s; no retry left to start over from byte 0 (--retries)", x->why);
  }
  if (xfer_start_over(x)) return st_error_errno(j->err, x->write_error, j->o->part, "truncate failed");
  esc_buf ew;
  st_eprintf(j->c, "download: %s; starting over from byte 0 (retry %lld of %lld)\n", esc_name(&ew, x->why), attempt + 1,
             j->o->retries);
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
  if (j->x.restart && !j->err->code) return dl_start_over(j, attempt);
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

/* An s3:// download's bytes, in order, on get.c's taker thread, with
 * --extract: to the extractor's queue (get.c writes PATH.part and hashes
 * them itself). */
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
  j->g.sink = j->have_q ? s3_sink : NULL; /* only --extract needs the bytes handed on */
  j->g.sink_ud = j;
  j->g.want_md5 = j->o->md5 != NULL;
  j->g.md5_given = j->o->md5;
  j->g.resume = j->o->resume && fstat(j->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
  if (j->g.resume)
    st_printf(j->c, "resuming %s at byte %llu\n", j->o->part, (unsigned long long)j->g.resume);
  int rc = s3_get(j->c, j->a, j->o->url, &j->g, &j->p, j->err);
  if (!j->g.sink) j->x.have = j->g.done;
  if (rc && j->x.sink_failed && j->xj) {
    st_error_clear(j->err);
    return dl_sink_failed(j);
  }
  if (!rc) st_progress_update(&j->p, j->x.have);
  return rc;
}

/* An answer that ended early without curl noticing (no Content-Length):
 * fewer bytes than its range, or than the file's length. */
static int dl_short(dl_job *j) {
  const xfer *x = &j->x;
  int s = (x->expect >= 0 && x->body < (uint64_t)x->expect) ||
          (x->res.total >= 0 && x->have < (uint64_t)x->res.total);
  if (s)
    snprintf(j->ebuf, sizeof j->ebuf, "the answer ended at byte %llu of %lld", (unsigned long long)x->have,
             x->res.total >= 0 ? x->res.total : (long long)(x->base + (uint64_t)x->expect));
  return s;
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
    if (cc == CURLE_OK && dl_short(j)) cc = CURLE_PARTIAL_FILE; /* retried from where it ends */
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
  esc_buf et;
  if (o->s3) { /* the ETag was checked; the md5 is made when --md5 asked for it */
    st_printf(j->c, "download: %s in %.2f s (%s), %s%s%s%s -> %s\n", b1, dt, r1,
              j->hex[0] ? "md5 " : "", j->hex, j->hex[0] ? (o->md5 ? " OK, " : ", ") : "",
              j->g.check, esc_name(&et, o->to));
    st_timing_add(j->c, "download", "download", dt, j->x.have, 1, "s3 ranged GET",
                  j->hex[0] ? j->hex : j->g.etag);
    return 0;
  }
  st_printf(j->c, "download: %s in %.2f s (%s), md5 %s%s -> %s\n", b1, dt, r1, j->hex,
            o->md5 ? " OK" : "", esc_name(&et, o->to));
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
    esc_buf ed;
    st_printf(j->c, "extract: %s, %llu file%s into %s while downloading (%s)\n", b2,
              (unsigned long long)nf, nf == 1 ? "" : "s", esc_name(&ed, o->exdir), xj->backend);
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
  curl_slist_free_all(j->hdrs);
  free(j->ca);
  EVP_MD_CTX_free(j->md);
  free(j->x.wb);
  if (j->fd >= 0) close(j->fd);
  if (j->src_fd >= 0) close(j->src_fd);
  /* keep PATH.part for --resume after network errors and interrupts, not after bad data */
  if (j->made_part && rc &&
      (j->x.have == 0 || j->x.drop_part ||
       (rc != ST_ECANCELED && rc != ST_ENET && rc != ST_ETIMEDOUT && rc != ST_EHTTP)))
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
  j.src_fd = -1;
  j.x.c = c;
  j.x.err = err;
  j.x.fd = -1;
  j.x.res.total = -1;
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
