/*
 * http.c -- one S3 request: the connection (endpoint, addressing,
 * credentials), SigV4 signing (sigv4.c) onto a libcurl easy handle, the
 * answer's classification, retries with backoff, and errors that carry the
 * HTTP status, S3's Code and Message, bucket and key, never a secret.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "lib/escape.h"
#include "lib/fileio.h"
#include "s3_int.h"

int s3_parse_url(const char *url, char *bucket, size_t bcap, char *key, size_t kcap,
                 st_error *err) {
  if (strncmp(url, "s3://", 5) != 0)
    return st_error_set(err, ST_EINVAL, url, -1, "expected an S3 URL s3://BUCKET[/KEY]");
  const char *b = url + 5;
  const char *slash = strchr(b, '/');
  size_t bl = slash ? (size_t)(slash - b) : strlen(b);
  if (bl < 3 || bl > 63 || bl >= bcap)
    return st_error_set(err, ST_EINVAL, url, -1, "bucket name must be 3-63 characters");
  for (size_t i = 0; i < bl; i++) {
    char ch = b[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-'))
      return st_error_set(err, ST_EINVAL, url, -1,
                          "bucket name '%.*s' may hold only a-z, 0-9, '.' and '-'", (int)bl, b);
  }
  memcpy(bucket, b, bl);
  bucket[bl] = 0;
  const char *k = slash ? slash + 1 : "";
  if (strlen(k) > PK_LIMIT_S3_KEY_BYTES || strlen(k) >= kcap)
    return st_error_set(err, ST_E2BIG, url, -1, "key longer than %d bytes",
                        PK_LIMIT_S3_KEY_BYTES);
  snprintf(key, kcap, "%s", k);
  return 0;
}

int s3__conn_open(s3_conn *cn, st_ctx *c, const st_args *a, const char *bucket,
                  st_error *err) {
  memset(cn, 0, sizeof *cn);
  cn->ctx = c;
  snprintf(cn->bucket, sizeof cn->bucket, "%s", bucket);
  int rc = aws_config_load(&cn->cfg, st_arg_str(a, "profile", NULL), st_arg_str(a, "region", NULL),
                           st_arg_str(a, "endpoint", NULL), err);
  if (rc) return rc;
  cn->cacert = st_arg_str(a, "cacert", NULL);
  if (cn->cacert)
    rc = fio_read_all(cn->cacert, PK_LIMIT_CACERT_BYTES, "PK_LIMIT_CACERT_BYTES", "the CA bundle", &cn->ca,
                      &cn->calen, err);
  if (rc) return rc;
  int explicit_ep = cn->cfg.endpoint[0] != 0;
  if (st_arg_has(a, "path-style") && st_arg_has(a, "virtual-hosted"))
    return st_error_set(err, ST_EINVAL, "--path-style", -1,
                        "--path-style and --virtual-hosted exclude each other");
  if (explicit_ep) {
    const char *u = cn->cfg.endpoint;
    const char *sep = strstr(u, "://");
    if (!sep || (size_t)(sep - u) >= sizeof cn->scheme)
      return st_error_set(err, ST_EINVAL, u, -1, "endpoint must be http://HOST[:PORT] or https://...");
    snprintf(cn->scheme, sizeof cn->scheme, "%.*s", (int)(sep - u), u);
    for (char *p = cn->scheme; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    if (strcmp(cn->scheme, "http") && strcmp(cn->scheme, "https"))
      return st_error_set(err, ST_EINVAL, u, -1, "endpoint scheme must be http or https");
    const char *h = sep + 3;
    const char *pth = strchr(h, '/');
    size_t hl = pth ? (size_t)(pth - h) : strlen(h);
    if (!hl || hl >= sizeof cn->authority || strchr(h, '@'))
      return st_error_set(err, ST_EINVAL, u, -1, "endpoint host is missing or invalid");
    snprintf(cn->authority, sizeof cn->authority, "%.*s", (int)hl, h);
    /* drop a default port: the Host header must match what is signed */
    size_t al = strlen(cn->authority);
    if ((strcmp(cn->scheme, "http") == 0 && al > 3 && strcmp(cn->authority + al - 3, ":80") == 0) ||
        (strcmp(cn->scheme, "https") == 0 && al > 4 && strcmp(cn->authority + al - 4, ":443") == 0))
      *strrchr(cn->authority, ':') = 0;
    if (pth && strcmp(pth, "/") != 0) {
      snprintf(cn->base, sizeof cn->base, "%s", pth);
      size_t bl = strlen(cn->base);
      while (bl && cn->base[bl - 1] == '/') cn->base[--bl] = 0;
    }
    cn->path_style = !st_arg_has(a, "virtual-hosted");
  } else {
    snprintf(cn->scheme, sizeof cn->scheme, "https");
    snprintf(cn->authority, sizeof cn->authority, "s3.%s.amazonaws.com", cn->cfg.region);
    /* dotted bucket names break TLS wildcards: path style for them */
    cn->path_style = st_arg_has(a, "path-style") || strchr(bucket, '.') != NULL;
  }
  if (st_arg_has(a, "path-style")) cn->path_style = 1;
  cn->easy = curl_easy_init();
  if (!cn->easy) return st_error_set(err, ST_ENOMEM, "curl", -1, "cannot create a curl handle");
  return 0;
}

void s3__conn_close(s3_conn *cn) {
  if (cn->easy) curl_easy_cleanup(cn->easy);
  aws_config_clear(&cn->cfg);
  free(cn->ca);
  cn->ca = NULL;
  cn->easy = NULL;
}

const char *s3__stage_name(const s3_conn *cn) {
  return cn->ctx && cn->ctx->cur_magic ? cn->ctx->cur_magic : "s3";
}

int s3__attempts(const s3_conn *cn) {
  return cn->max_attempts > 0 ? cn->max_attempts : PK_LIMIT_S3_ATTEMPTS;
}

void s3__where(const s3_conn *cn, const char *key, char *out, size_t cap) {
  snprintf(out, cap, "s3://%s/%s", cn->bucket, key ? key : "");
}

int s3__pmd5_start(s3_pmd5 *h, uint64_t psize, uint8_t (*out)[16], size_t max) {
  if (!h->md) h->md = EVP_MD_CTX_new();
  if (!h->md) return -1;
  if (!EVP_DigestInit_ex(h->md, EVP_md5(), NULL)) return -1;
  h->psize = psize;
  h->in_part = 0;
  h->out = out;
  h->done = 0;
  h->max = max;
  return 0;
}

static void pmd5_end_part(s3_pmd5 *h) {
  unsigned dl = 0;
  if (h->done < h->max) EVP_DigestFinal_ex(h->md, h->out[h->done], &dl);
  h->done++;
  h->in_part = 0;
  EVP_DigestInit_ex(h->md, EVP_md5(), NULL);
}

void s3__pmd5_update(s3_pmd5 *h, const uint8_t *p, size_t n) {
  while (n) {
    uint64_t room = h->psize - h->in_part;
    size_t k = n < room ? n : (size_t)room;
    EVP_DigestUpdate(h->md, p, k);
    h->in_part += k;
    p += k;
    n -= k;
    if (h->in_part == h->psize) pmd5_end_part(h);
  }
}

void s3__pmd5_end(s3_pmd5 *h) {
  if (h->psize && h->in_part) pmd5_end_part(h);
}

void s3__pmd5_free(s3_pmd5 *h) {
  EVP_MD_CTX_free(h->md);
  memset(h, 0, sizeof *h);
}

int s3__resp_hash(s3_resp *r, uint64_t ps, uint8_t (*out)[16], size_t max) {
  return s3__pmd5_start(&r->hash, ps, out, max);
}

void s3__resp_hash_end(s3_resp *r) {
  s3__pmd5_end(&r->hash);
  r->hash.psize = 0;
}

static int pwrite_all(s3_resp *r, int fd, const uint8_t *p, size_t n, uint64_t off) {
  for (size_t done = 0; done < n;) {
    ssize_t w = pwrite(fd, p + done, n - done, (off_t)(off + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      r->write_errno = w < 0 ? errno : EIO;
      return -1;
    }
    done += (size_t)w;
  }
  return 0;
}

/* The stage's first n bytes (a multiple of S3_DIO_ALIGN) to bw's threads,
 * to be written past the page cache; what follows them moves to a fresh
 * block. A write of the answer that failed meanwhile stops it. */
static int stage_put(s3_resp *r, size_t n) {
  uint8_t *next = blockw_get(r->bw);
  size_t rest = r->stage_len - n;
  if (rest) memcpy(next, r->stage + n, rest);
  blockw_put(r->bw, &r->bws, r->stage, n, r->dio_fd, r->dst_fd, r->stage_off);
  r->stage = next;
  r->stage_off += n;
  r->stage_len = rest;
  int e = blockw_failed(r->bw, &r->bws);
  if (e) r->write_errno = e;
  return e ? -1 : 0;
}

static int stage_add(s3_resp *r, const uint8_t *p, size_t len) {
  while (len) {
    size_t k = S3_DIO_BYTES - r->stage_len;
    if (k > len) k = len;
    memcpy(r->stage + r->stage_len, p, k);
    r->stage_len += k;
    p += k;
    len -= k;
    if (r->stage_len == S3_DIO_BYTES && stage_put(r, S3_DIO_BYTES)) return -1;
  }
  return 0;
}

void s3__resp_settle(s3_resp *r) {
  if (r->bw) blockw_wait(r->bw, &r->bws);
  blockw_reset(&r->bws);
  r->stage_len = 0;
}

int s3__resp_flush(s3_resp *r) {
  if (!r->dio) return 0;
  size_t al = r->stage_len & ~(size_t)(S3_DIO_ALIGN - 1);
  if (r->stage_len > al && /* the unaligned rest, through the page cache */
      pwrite_all(r, r->dst_fd, r->stage + al, r->stage_len - al, r->stage_off + al))
    return -1;
  r->stage_len = al;
  if (al && stage_put(r, al)) return -1;
  int e = blockw_wait(r->bw, &r->bws);
  if (e) r->write_errno = e;
  return e ? -1 : 0;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  s3_resp *r = ud;
  size_t len = sz * n;
  if ((r->dst || r->direct) && r->hstatus >= 200 && r->hstatus < 300) {
    if (len > r->dst_cap - r->dst_len) {
      r->overrun = 1;
      return 0; /* more than the range asked for: aborts the transfer */
    }
    if (r->hash.psize) s3__pmd5_update(&r->hash, (const uint8_t *)p, len); /* while in cache */
    if (r->direct) { /* a failed write aborts the transfer */
      if (r->dio) {
        if (stage_add(r, (const uint8_t *)p, len)) return 0;
      } else if (pwrite_all(r, r->dst_fd, (const uint8_t *)p, len, r->dst_off + r->dst_len)) {
        return 0;
      }
    } else {
      memcpy(r->dst + r->dst_len, p, len);
    }
    r->dst_len += len;
    return len;
  }
  if (dyn_add(&r->body, p, len)) return 0; /* aborts the transfer */
  return len;
}

/* A header's value (trimmed) if the line is `name: value`, else NULL. */
static const char *header_value(const char *p, size_t len, const char *name, size_t *vl) {
  size_t nl = strlen(name);
  if (len <= nl || strncasecmp(p, name, nl) != 0 || p[nl] != ':') return NULL;
  const char *v = p + nl + 1;
  size_t l = len - nl - 1;
  while (l && (*v == ' ' || *v == '\t')) v++, l--;
  while (l && (v[l - 1] == '\r' || v[l - 1] == '\n' || v[l - 1] == ' ')) l--;
  *vl = l;
  return v;
}

static long long header_number(const char *v, size_t vl) {
  char tmp[32];
  if (!vl || vl >= sizeof tmp) return -1;
  memcpy(tmp, v, vl);
  tmp[vl] = 0;
  char *end;
  errno = 0;
  long long x = strtoll(tmp, &end, 10);
  return errno || *end || x < 0 || tmp[0] == '-' || tmp[0] == '+' ? -1 : x;
}

/* "bytes START-END/TOTAL" (all three required) */
static void content_range(s3_resp *r, const char *v, size_t vl) {
  char tmp[96];
  if (vl >= sizeof tmp) return;
  memcpy(tmp, v, vl);
  tmp[vl] = 0;
  unsigned long long a, b, t;
  char extra;
  if (sscanf(tmp, "bytes %llu-%llu/%llu%c", &a, &b, &t, &extra) == 3) {
    r->cr_start = (long long)a;
    r->cr_end = (long long)b;
    r->cr_total = (long long)t;
  }
}

static void headers_reset(s3_resp *r) {
  r->etag[0] = 0;
  r->clen = r->cr_start = r->cr_end = r->cr_total = -1;
  r->parts_count = 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  s3_resp *r = ud;
  size_t len = sz * n, vl;
  const char *v;
  if (len > 12 && strncmp(p, "HTTP/", 5) == 0) { /* a new answer (after 100, redirects) */
    const char *sp = memchr(p, ' ', len);
    r->hstatus = sp ? strtol(sp + 1, NULL, 10) : 0;
    headers_reset(r);
    return len;
  }
  v = header_value(p, len, "ETag", &vl);
  if (v && vl < sizeof r->etag) {
    memcpy(r->etag, v, vl);
    r->etag[vl] = 0;
  }
  v = header_value(p, len, "Content-Length", &vl);
  if (v) r->clen = header_number(v, vl);
  v = header_value(p, len, "Content-Range", &vl);
  if (v) content_range(r, v, vl);
  v = header_value(p, len, "x-amz-mp-parts-count", &vl);
  if (v) {
    long long c = header_number(v, vl);
    r->parts_count = c > 0 && c <= S3_MAX_PARTS ? (int)c : 0;
  }
  return len;
}

static size_t on_read(char *dst, size_t sz, size_t n, void *ud) {
  s3_resp *r = ud;
  size_t want = sz * n, left = r->src_len - r->src_off;
  if (want > left) want = left;
  if (want) memcpy(dst, r->src + r->src_off, want);
  r->src_off += want;
  return want;
}

static int on_seek(void *ud, curl_off_t off, int origin) {
  s3_resp *r = ud;
  if (origin != SEEK_SET || off < 0 || (size_t)off > r->src_len) return CURL_SEEKFUNC_CANTSEEK;
  r->src_off = (size_t)off;
  return CURL_SEEKFUNC_OK;
}

static int on_xfer(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln) {
  (void)dlt;
  (void)dln;
  (void)ult;
  s3_resp *r = ud;
  r->sent = (uint64_t)uln;
  return 0;
}

void s3__resp_clear(s3_resp *r) {
  curl_slist_free_all(r->hdrs);
  free(r->url);
  r->hdrs = NULL;
  r->url = NULL;
  dyn_reset(&r->body);
  headers_reset(r);
  r->hstatus = 0;
  r->dst_len = 0;
  r->overrun = 0;
  r->write_errno = 0;
  s3__resp_settle(r);
  r->dio = 0;
  r->hash.psize = 0; /* a new attempt hashes from its start (s3__resp_hash) */
  r->status = 0;
  r->cc = CURLE_OK;
  r->curl_err[0] = 0;
  r->src_off = 0;
  r->sent = 0;
}

void s3__resp_init(s3_resp *r) {
  memset(r, 0, sizeof *r);
  dyn_init(&r->body, PK_LIMIT_S3_XML_BYTES);
  headers_reset(r);
  r->dio_fd = -1;
}

void s3__resp_free(s3_resp *r) {
  s3__resp_clear(r);
  s3__pmd5_free(&r->hash);
  if (r->bw) blockw_drop(r->bw, r->stage);
  r->stage = NULL;
  r->bw = NULL;
  dyn_free(&r->body);
}

static struct curl_slist *hdr_add(struct curl_slist *l, int *oom, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static struct curl_slist *hdr_add(struct curl_slist *l, int *oom, const char *fmt, ...) {
  char line[4600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  struct curl_slist *n = curl_slist_append(l, line);
  OPENSSL_cleanse(line, sizeof line);
  if (!n) {
    *oom = 1;
    return l;
  }
  return n;
}

static void curl_setup(s3_conn *cn, CURL *easy, const s3_req *rq, s3_resp *r);

int s3__req_setup(s3_conn *cn, CURL *easy, const s3_req *rq, s3_resp *r, st_error *err) {
  s3__resp_clear(r);
  /* past the page cache where the file was opened so too and the answer
   * starts on a block (its stage is kept from one answer to the next) */
  if (r->direct && r->bw && r->dio_fd >= 0 && r->dst_off % S3_DIO_ALIGN == 0) {
    if (!r->stage) r->stage = blockw_get(r->bw);
    r->dio = 1;
    r->stage_off = r->dst_off;
  }
  char host[400];
  if (cn->path_style)
    snprintf(host, sizeof host, "%s", cn->authority);
  else
    snprintf(host, sizeof host, "%s.%s", cn->bucket, cn->authority);
  /* the raw path: [base]/[bucket]/key; encoded once, it is both the wire
   * path and the canonical URI (S3 rules) */
  const char *key = rq->key ? rq->key : "";
  size_t rawcap = strlen(cn->base) + strlen(cn->bucket) + strlen(key) + 4;
  char *raw = malloc(rawcap);
  if (!raw) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
  if (cn->path_style)
    snprintf(raw, rawcap, "%s/%s/%s", cn->base, cn->bucket, key);
  else
    snprintf(raw, rawcap, "%s/%s", cn->base, key);
  char date[17];
  sigv4_amz_date(time(NULL), date);
  sigv4_kv h[6];
  size_t nh = 0;
  h[nh++] = (sigv4_kv){"host", host};
  h[nh++] = (sigv4_kv){"x-amz-content-sha256", rq->payload_sha256};
  h[nh++] = (sigv4_kv){"x-amz-date", date};
  if (rq->content_md5) h[nh++] = (sigv4_kv){"content-md5", rq->content_md5};
  if (cn->cfg.session_token[0]) h[nh++] = (sigv4_kv){"x-amz-security-token", cn->cfg.session_token};
  sigv4_request sr = {.method = rq->method, .path = raw, .rules = SIGV4_S3, .query = rq->query,
                      .nquery = rq->nquery, .headers = h, .nheaders = nh,
                      .payload_sha256 = rq->payload_sha256, .amz_date = date,
                      .region = cn->cfg.region, .service = "s3"};
  sigv4_result sg;
  if (sigv4_sign(&sr, cn->cfg.access_key, cn->cfg.secret_key, &sg)) {
    free(raw);
    return st_error_set(err, ST_ENOMEM, NULL, -1, "cannot sign the request");
  }
  free(raw);
  size_t ulen = strlen(cn->scheme) + strlen(host) + strlen(sg.canonical_uri) +
                strlen(sg.canonical_query) + 8;
  r->url = malloc(ulen);
  int oom = !r->url;
  if (r->url)
    snprintf(r->url, ulen, "%s://%s%s%s%s", cn->scheme, host, sg.canonical_uri,
             sg.canonical_query[0] ? "?" : "", sg.canonical_query);
  r->hdrs = hdr_add(r->hdrs, &oom, "Host: %s", host);
  r->hdrs = hdr_add(r->hdrs, &oom, "x-amz-date: %s", date);
  r->hdrs = hdr_add(r->hdrs, &oom, "x-amz-content-sha256: %s", rq->payload_sha256);
  if (rq->content_md5) r->hdrs = hdr_add(r->hdrs, &oom, "Content-MD5: %s", rq->content_md5);
  if (cn->cfg.session_token[0])
    r->hdrs = hdr_add(r->hdrs, &oom, "x-amz-security-token: %s", cn->cfg.session_token);
  r->hdrs = hdr_add(r->hdrs, &oom, "Authorization: %s", sg.authorization);
  r->hdrs = hdr_add(r->hdrs, &oom, "Expect:");
  if (strcmp(rq->method, "PUT") == 0 && rq->key && *rq->key)
    r->hdrs = hdr_add(r->hdrs, &oom, "Content-Type: application/octet-stream");
  if (strcmp(rq->method, "POST") == 0)
    r->hdrs = hdr_add(r->hdrs, &oom, "Content-Type: application/xml");
  if (rq->range) r->hdrs = hdr_add(r->hdrs, &oom, "Range: %s", rq->range);
  if (rq->if_match) r->hdrs = hdr_add(r->hdrs, &oom, "If-Match: %s", rq->if_match);
  sigv4_result_free(&sg);
  if (oom) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
  curl_setup(cn, easy, rq, r);
  return 0;
}

/* The easy handle for a signed request: its URL and headers, the body
 * callbacks, timeouts, TLS, and the method. */
static void curl_setup(s3_conn *cn, CURL *easy, const s3_req *rq, s3_resp *r) {
  curl_easy_reset(easy);
  curl_easy_setopt(easy, CURLOPT_URL, r->url);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, r->hdrs);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->curl_err);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, cn->stall_s ? cn->stall_s : 10L);
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, cn->stall_s ? cn->stall_s : 60L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024L);
  /* a GET into memory: receive in large pieces (curl reads 16 KiB at a time by default) */
  if (r->dst || r->direct) curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 512L * 1024L);
  if (cn->ca) {
    struct curl_blob ca = {cn->ca, cn->calen, CURL_BLOB_COPY};
    curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &ca);
  }
  if (cn->deadline_s) curl_easy_setopt(easy, CURLOPT_TIMEOUT, cn->deadline_s);
  curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_xfer);
  curl_easy_setopt(easy, CURLOPT_XFERINFODATA, r);
  r->src = rq->body;
  r->src_len = rq->body_len;
  if (strcmp(rq->method, "HEAD") == 0) {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (strcmp(rq->method, "PUT") == 0) {
    curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(easy, CURLOPT_READDATA, r);
    curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(easy, CURLOPT_SEEKDATA, r);
    curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
  } else if (strcmp(rq->method, "POST") == 0) {
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
  } else if (strcmp(rq->method, "DELETE") == 0) {
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "DELETE");
  }
}

int s3__classify(const s3_resp *r) {
  if (r->cc == CURLE_OK) {
    if (r->status >= 200 && r->status < 300) return 0;
    if (r->status >= 500 || r->status == 408 || r->status == 429) return 1;
    if (r->status == 400 && r->body.p && strstr(r->body.p, "<Code>RequestTimeout</Code>")) return 1;
    return -1;
  }
  switch (r->cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_RESOLVE_HOST:
      return 1;
    default:
      return -1;
  }
}

int s3__resp_error(const s3_conn *cn, const char *key, const char *what, const s3_resp *r,
                   int attempts, st_error *err) {
  char where[1200];
  s3__where(cn, key, where, sizeof where);
  char tries[48] = "";
  if (attempts > 1) snprintf(tries, sizeof tries, " after %d attempts", attempts);
  if (r->cc != CURLE_OK) {
    int code = ST_ENET;
    if (r->cc == CURLE_PEER_FAILED_VERIFICATION || r->cc == CURLE_SSL_CACERT_BADFILE ||
        r->cc == CURLE_SSL_CONNECT_ERROR)
      code = ST_ETLS;
    else if (r->cc == CURLE_OPERATION_TIMEDOUT)
      code = ST_ETIMEDOUT;
    else if (r->cc == CURLE_WRITE_ERROR && r->body.err == ST_E2BIG)
      return st_error_set(err, ST_E2BIG, where, -1, "%s: S3 response larger than %d bytes",
                          what, PK_LIMIT_S3_XML_BYTES);
    return st_error_set(err, code, where, -1, "%s failed%s: %s (%s%s%s)", what, tries,
                        r->curl_err[0] ? r->curl_err : curl_easy_strerror(r->cc),
                        cn->scheme, "://", cn->authority);
  }
  s3_err_xml e;
  s3__err_doc(r->body.p, r->body.len, &e);
  if (!e.code[0]) { /* HEAD and some errors carry no body */
    const char *c = r->status == 404 ? (key && *key ? "NoSuchKey" : "NoSuchBucket")
                    : r->status == 403 ? "AccessDenied"
                    : r->status == 301 ? "PermanentRedirect (wrong region or addressing)"
                                       : "(no error code)";
    snprintf(e.code, sizeof e.code, "%s", c);
  }
  const char *hint = "";
  char src[200] = "";
  if (strcmp(e.code, "NoSuchBucket") == 0) {
    hint = "; --create-bucket creates it";
  } else if (strcmp(e.code, "SignatureDoesNotMatch") == 0 ||
             strcmp(e.code, "InvalidAccessKeyId") == 0) {
    hint = e.code[0] == 'S' ? "; the secret access key does not match the access key"
                            : "; the server does not know this access key";
    snprintf(src, sizeof src, " (keys from %s)", cn->cfg.cred_source);
  }
  return st_error_set(err, ST_ES3, where, -1,
                      "%s: HTTP %ld %s%s%s (bucket '%s', key '%s'%s%s)%s%s%s", what, r->status,
                      e.code, e.message[0] ? ": " : "", e.message, cn->bucket, key ? key : "",
                      e.request_id[0] ? ", request id " : "", e.request_id, tries, hint, src);

}

double s3__backoff(int attempt) {
  double d = 0.25;
  for (int i = 1; i < attempt; i++) d *= 2;
  if (d > 8) d = 8;
  return d * (0.75 + 0.5 * ((double)(rand() % 1000) / 1000.0));
}

void s3__say(s3_conn *cn, const char *line) {
  if (cn->say) { /* reading threads queue their lines for the stage thread */
    cn->say(cn->say_ud, line);
    return;
  }
  if (!cn->ctx || cn->retries_shown > S3_RETRY_LINES) return;
  if (cn->retries_shown++ == S3_RETRY_LINES)
    st_eprintf(cn->ctx, "%s: more retries (not shown)\n", s3__stage_name(cn));
  else
    st_eprintf(cn->ctx, "%s", line);
}

void s3__say_retry(s3_conn *cn, const char *key, const char *what, const s3_resp *r,
                   int attempt, double delay) {
  if (!cn->ctx || (!cn->say && cn->retries_shown > S3_RETRY_LINES)) return;
  char why[CURL_ERROR_SIZE + 64];
  if (r->cc != CURLE_OK) {
    snprintf(why, sizeof why, "%s", r->curl_err[0] ? r->curl_err : curl_easy_strerror(r->cc));
  } else {
    s3_err_xml e;
    s3__err_doc(r->body.p, r->body.len, &e);
    snprintf(why, sizeof why, "HTTP %ld%s%s", r->status, e.code[0] ? " " : "", e.code);
  }
  esc_buf ek, ew; /* a key and a server's words, shown escaped (lib/escape.h) */
  char line[S3_SAY_BYTES];
  snprintf(line, sizeof line, "%s: %s of s3://%s/%s: %s; retry %d of %d in %.2f s\n",
           s3__stage_name(cn), what, cn->bucket, esc_name(&ek, key), esc_name(&ew, why), attempt,
           s3__attempts(cn) - 1, delay);
  s3__say(cn, line);
}

int s3__nap(st_ctx *c, double secs) {
  double end = st_now() + secs;
  while (st_now() < end) {
    if (c && st_cancelled(c)) return 1;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

int s3__call(s3_conn *cn, const s3_req *rq, s3_resp *r, const char *what, int max_attempts,
             int ok404, st_error *err) {
  for (int attempt = 1;; attempt++) {
    int rc = s3__req_setup(cn, cn->easy, rq, r, err);
    if (rc) return rc;
    r->cc = curl_easy_perform(cn->easy);
    curl_easy_getinfo(cn->easy, CURLINFO_RESPONSE_CODE, &r->status);
    int k = s3__classify(r);
    if (k == 0) return 0;
    if (ok404 && r->cc == CURLE_OK && r->status == 404) return 1;
    if (k < 0 || attempt >= max_attempts || (cn->ctx && st_cancelled(cn->ctx)))
      return s3__resp_error(cn, rq->key, what, r, attempt, err);
    double delay = s3__backoff(attempt);
    s3__say_retry(cn, rq->key, what, r, attempt, delay);
    if (s3__nap(cn->ctx, delay)) return s3__resp_error(cn, rq->key, what, r, attempt, err);
  }
}

int s3__bucket_ready(s3_conn *cn, int create, st_error *err) {
  s3_resp r;
  s3__resp_init(&r);
  s3_req rq = {.method = "GET", .payload_sha256 = SIGV4_EMPTY_SHA256};
  rq.query[rq.nquery++] = (sigv4_kv){"location", ""};
  st_error e1;
  st_error_clear(&e1);
  int rc = s3__call(cn, &rq, &r, "GetBucketLocation", PK_LIMIT_S3_ATTEMPTS, 0, &e1);
  if (rc == 0) {
    s3__resp_free(&r);
    return 0;
  }
  int missing = rc == ST_ES3 && r.status == 404 && strstr(e1.text, "NoSuchBucket");
  if (!missing || !create) {
    s3__resp_free(&r);
    st_error_set(err, e1.code, e1.where, e1.offset, "%s", e1.text);
    return e1.code;
  }
  char body[256] = "";
  if (strcmp(cn->cfg.region, "us-east-1") != 0)
    snprintf(body, sizeof body,
             "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
             "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
             cn->cfg.region);
  char sha[65];
  sigv4_sha256_hex(body, strlen(body), sha);
  s3_req cr = {.method = "PUT", .payload_sha256 = sha, .body = body, .body_len = strlen(body)};
  rc = s3__call(cn, &cr, &r, "CreateBucket", PK_LIMIT_S3_ATTEMPTS, 0, err);
  if (rc == ST_ES3 && r.status == 409 && strstr(err->text, "BucketAlreadyOwnedByYou")) {
    st_error_clear(err);
    rc = 0;
  }
  if (rc == 0) st_printf(cn->ctx, "upload: created bucket %s\n", cn->bucket);
  s3__resp_free(&r);
  return rc;
}

void s3__md5_b64(const uint8_t md5[16], char out[32]) {
  EVP_EncodeBlock((unsigned char *)out, md5, 16);
}

void s3__hex16(const uint8_t d[16], char out[33]) {
  static const char hexd[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[2 * i] = hexd[d[i] >> 4];
    out[2 * i + 1] = hexd[d[i] & 15];
  }
  out[32] = 0;
}

void s3__unquote(const char *in, char *out, size_t cap) {
  size_t n = strlen(in);
  if (n >= 2 && in[0] == '"' && in[n - 1] == '"') {
    in++;
    n -= 2;
  } else if (n >= 12 && strncmp(in, "&quot;", 6) == 0) {
    in += 6;
    n -= 12;
  }
  if (n >= cap) n = cap - 1;
  memcpy(out, in, n);
  out[n] = 0;
}
