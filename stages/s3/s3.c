/*
 * s3.c -- %upload and %s3ls (s3.h).
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
#include "s3.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <expat.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "awsconfig.h"
#include "lib/limits.h"
#include "sigv4.h"
#include "lib/table.h"

#define MiB (1024ULL * 1024ULL)
#define S3_MIN_PART (5 * MiB)
#define S3_MAX_PART (5120 * MiB)
#define S3_MAX_PARTS 10000

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
    {"cacert", 1, "FILE", "CA bundle for a private TLS certificate authority"},
    {NULL, 0, NULL, NULL}};

const st_option s3_ls_opts[] = {
    {"endpoint", 1, "URL", "S3 endpoint (as for %upload)"},
    {"region", 1, "R", "region"},
    {"profile", 1, "P", "profile"},
    {"path-style", 0, NULL, "path-style addressing"},
    {"virtual-hosted", 0, NULL, "virtual-hosted addressing"},
    {"cacert", 1, "FILE", "CA bundle for a private TLS certificate authority"},
    {"max", 1, "N", "rows to show (default 1000); all keys are counted"},
    {NULL, 0, NULL, NULL}};

/* ================================================================== */
/* A growing buffer                                                    */
/* ================================================================== */
typedef struct {
  char *p;
  size_t len, cap;
  int over; /* hit the limit */
} buf_t;

static int buf_add(buf_t *b, const void *s, size_t n, size_t limit) {
  if (b->len + n > limit) {
    b->over = 1;
    return -1;
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return -1;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
  return 0;
}
static void buf_reset(buf_t *b) {
  b->len = 0;
  b->over = 0;
  if (b->p) b->p[0] = 0;
}
static void buf_free(buf_t *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* ================================================================== */
/* XML (expat): a callback at the end of every element with its text  */
/* ================================================================== */
typedef void (*xml_end_fn)(void *ud, const char *parent, const char *name, const char *text);

typedef struct {
  XML_Parser p;
  int depth;
  char names[16][64];
  buf_t text;
  xml_end_fn fn;
  void *ud;
  char root[64];
} xml_walk;

static void XMLCALL xw_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
  (void)attrs;
  xml_walk *w = ud;
  if (w->depth == 0) snprintf(w->root, sizeof w->root, "%s", name);
  if (w->depth < 16) snprintf(w->names[w->depth], 64, "%s", name);
  w->depth++;
  buf_reset(&w->text);
}
static void XMLCALL xw_end(void *ud, const XML_Char *name) {
  xml_walk *w = ud;
  w->depth--;
  const char *parent = w->depth > 0 && w->depth <= 16 ? w->names[w->depth - 1] : "";
  w->fn(w->ud, parent, name, w->text.p ? w->text.p : "");
  buf_reset(&w->text);
}
static void XMLCALL xw_text(void *ud, const XML_Char *s, int len) {
  xml_walk *w = ud;
  if (buf_add(&w->text, s, (size_t)len, 64 * 1024) && !w->text.over) XML_StopParser(w->p, 0);
}

/* 0 or ST_EFORMAT. root receives the document element's name. */
static int xml_parse(const char *body, size_t len, xml_end_fn fn, void *ud, char *root,
                     size_t rootcap, const char *where, st_error *err) {
  xml_walk w;
  memset(&w, 0, sizeof w);
  w.fn = fn;
  w.ud = ud;
  w.p = XML_ParserCreate("UTF-8");
  if (!w.p) return st_error_set(err, ST_ENOMEM, where, -1, "cannot create an XML parser");
  XML_SetUserData(w.p, &w);
  XML_SetElementHandler(w.p, xw_start, xw_end);
  XML_SetCharacterDataHandler(w.p, xw_text);
  int rc = 0;
  if (XML_Parse(w.p, body ? body : "", (int)len, 1) != XML_STATUS_OK)
    rc = st_error_set(err, ST_EFORMAT, where, (long long)XML_GetCurrentByteIndex(w.p),
                      "malformed XML in the S3 response (line %lu: %s)",
                      (unsigned long)XML_GetCurrentLineNumber(w.p),
                      XML_ErrorString(XML_GetErrorCode(w.p)));
  if (root) snprintf(root, rootcap, "%s", w.root);
  XML_ParserFree(w.p);
  buf_free(&w.text);
  return rc;
}

typedef struct {
  char code[128], message[512], request_id[128];
} s3_err_xml;

static void err_end(void *ud, const char *parent, const char *name, const char *text) {
  s3_err_xml *e = ud;
  if (strcmp(parent, "Error") != 0) return;
  if (strcmp(name, "Code") == 0) snprintf(e->code, sizeof e->code, "%s", text);
  else if (strcmp(name, "Message") == 0) snprintf(e->message, sizeof e->message, "%s", text);
  else if (strcmp(name, "RequestId") == 0) snprintf(e->request_id, sizeof e->request_id, "%s", text);
}

/* An <Error> body: Code, Message and RequestId (empty when absent or when
 * the body is not XML). */
static void err_doc(const char *body, size_t len, s3_err_xml *e) {
  memset(e, 0, sizeof *e);
  if (!len) return;
  st_error ignore;
  st_error_clear(&ignore);
  xml_parse(body, len, err_end, e, NULL, 0, "", &ignore);
}

/* ================================================================== */
/* The connection                                                      */
/* ================================================================== */
typedef struct s3_conn {
  aws_config cfg;
  char scheme[8];
  char authority[300]; /* host[:port] of the endpoint */
  char base[512];      /* path prefix of the endpoint ("" or "/x") */
  char bucket[64];
  int path_style;
  const char *cacert;
  CURL *easy; /* control requests */
  st_ctx *ctx;
  long deadline_s; /* nonzero: whole-request time limit (aborts while cleaning up) */
  int retries_shown; /* retry lines printed so far (bounded) */
} s3_conn;

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

static int conn_open(s3_conn *cn, st_ctx *c, const st_args *a, const char *bucket,
                     st_error *err) {
  memset(cn, 0, sizeof *cn);
  cn->ctx = c;
  snprintf(cn->bucket, sizeof cn->bucket, "%s", bucket);
  int rc = aws_config_load(&cn->cfg, st_arg_str(a, "profile", NULL), st_arg_str(a, "region", NULL),
                           st_arg_str(a, "endpoint", NULL), err);
  if (rc) return rc;
  cn->cacert = st_arg_str(a, "cacert", NULL);
  if (cn->cacert && access(cn->cacert, R_OK) != 0)
    return st_error_errno(err, errno, cn->cacert, "cannot read the CA bundle");
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

static void conn_close(s3_conn *cn) {
  if (cn->easy) curl_easy_cleanup(cn->easy);
  aws_config_clear(&cn->cfg);
  cn->easy = NULL;
}

static void where_of(const s3_conn *cn, const char *key, char *out, size_t cap) {
  snprintf(out, cap, "s3://%s/%s", cn->bucket, key ? key : "");
}

/* ================================================================== */
/* One request: sign it, set up an easy handle                         */
/* ================================================================== */
typedef struct s3_req {
  const char *method; /* GET PUT POST HEAD DELETE */
  const char *key;    /* NULL or "": the bucket itself */
  sigv4_kv query[4];
  size_t nquery;
  const char *payload_sha256; /* hex */
  const char *content_md5;    /* base64, or NULL */
  const char *body;           /* PUT/POST body */
  size_t body_len;
} s3_req;

typedef struct s3_resp {
  long status;
  CURLcode cc;
  char curl_err[CURL_ERROR_SIZE];
  buf_t body;
  char etag[128];
  /* the request body reader */
  const char *src;
  size_t src_len, src_off;
  /* progress of the current attempt */
  _Atomic uint64_t sent;
  struct curl_slist *hdrs;
  char *url;
} s3_resp;

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  s3_resp *r = ud;
  if (buf_add(&r->body, p, sz * n, PK_LIMIT_S3_XML_BYTES)) return 0; /* aborts */
  return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  s3_resp *r = ud;
  size_t len = sz * n;
  if (len > 5 && strncasecmp(p, "ETag:", 5) == 0) {
    const char *v = p + 5;
    size_t vl = len - 5;
    while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ')) vl--;
    if (vl < sizeof r->etag) {
      memcpy(r->etag, v, vl);
      r->etag[vl] = 0;
    }
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

static void resp_clear(s3_resp *r) {
  curl_slist_free_all(r->hdrs);
  free(r->url);
  r->hdrs = NULL;
  r->url = NULL;
  buf_reset(&r->body);
  r->etag[0] = 0;
  r->status = 0;
  r->cc = CURLE_OK;
  r->curl_err[0] = 0;
  r->src_off = 0;
  r->sent = 0;
}

static void resp_free(s3_resp *r) {
  resp_clear(r);
  buf_free(&r->body);
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

/* Signs rq and sets up easy to send it; r receives the response. */
static int req_setup(s3_conn *cn, CURL *easy, const s3_req *rq, s3_resp *r, st_error *err) {
  resp_clear(r);
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
  sigv4_result_free(&sg);
  if (oom) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);

  curl_easy_reset(easy);
  curl_easy_setopt(easy, CURLOPT_URL, r->url);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, r->hdrs);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->curl_err);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024L);
  if (cn->cacert) curl_easy_setopt(easy, CURLOPT_CAINFO, cn->cacert);
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
  return 0;
}

/* After a transfer: 0 when 2xx, 1 when worth retrying, -1 when not. */
static int classify(const s3_resp *r) {
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

/* The error of a failed exchange: status, S3 Code and Message, bucket, key. */
static int resp_error(const s3_conn *cn, const char *key, const char *what, const s3_resp *r,
                      int attempts, st_error *err) {
  char where[1200];
  where_of(cn, key, where, sizeof where);
  char tries[48] = "";
  if (attempts > 1) snprintf(tries, sizeof tries, " after %d attempts", attempts);
  if (r->cc != CURLE_OK) {
    int code = ST_ENET;
    if (r->cc == CURLE_PEER_FAILED_VERIFICATION || r->cc == CURLE_SSL_CACERT_BADFILE ||
        r->cc == CURLE_SSL_CONNECT_ERROR)
      code = ST_ETLS;
    else if (r->cc == CURLE_OPERATION_TIMEDOUT)
      code = ST_ETIMEDOUT;
    else if (r->cc == CURLE_WRITE_ERROR && r->body.over)
      return st_error_set(err, ST_E2BIG, where, -1, "%s: S3 response larger than %d bytes",
                          what, PK_LIMIT_S3_XML_BYTES);
    return st_error_set(err, code, where, -1, "%s failed%s: %s (%s%s%s)", what, tries,
                        r->curl_err[0] ? r->curl_err : curl_easy_strerror(r->cc),
                        cn->scheme, "://", cn->authority);
  }
  s3_err_xml e;
  err_doc(r->body.p, r->body.len, &e);
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

static double backoff(int attempt) {
  double d = 0.25;
  for (int i = 1; i < attempt; i++) d *= 2;
  if (d > 8) d = 8;
  return d * (0.75 + 0.5 * ((double)(rand() % 1000) / 1000.0));
}

#define S3_RETRY_LINES 20

/* One line on stderr per retry (the first S3_RETRY_LINES of a stage), so a
 * slow upload says why. Stage thread only; silent without a context. */
static void say_retry(s3_conn *cn, const char *key, const char *what, const s3_resp *r,
                      int attempt, double delay) {
  if (!cn->ctx || cn->retries_shown > S3_RETRY_LINES) return;
  if (cn->retries_shown++ == S3_RETRY_LINES) {
    st_eprintf(cn->ctx, "upload: more retries (not shown)\n");
    return;
  }
  char why[CURL_ERROR_SIZE + 64];
  if (r->cc != CURLE_OK) {
    snprintf(why, sizeof why, "%s", r->curl_err[0] ? r->curl_err : curl_easy_strerror(r->cc));
  } else {
    s3_err_xml e;
    memset(&e, 0, sizeof e);
    if (r->body.len) {
      st_error ignore;
      st_error_clear(&ignore);
      xml_parse(r->body.p, r->body.len, err_end, &e, NULL, 0, "", &ignore);
    }
    snprintf(why, sizeof why, "HTTP %ld%s%s", r->status, e.code[0] ? " " : "", e.code);
  }
  st_eprintf(cn->ctx, "upload: %s of s3://%s/%s: %s; retry %d of %d in %.2f s\n", what,
             cn->bucket, key ? key : "", why, attempt, PK_LIMIT_S3_ATTEMPTS - 1, delay);
}

/* Sleeps up to secs; 1 when interrupted. */
static int nap(st_ctx *c, double secs) {
  double end = st_now() + secs;
  while (st_now() < end) {
    if (c && st_cancelled(c)) return 1;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

/* A control request on cn->easy, retried. 0: 2xx; else the error. With
 * ok404 set, 404 returns 1 without an error. */
static int s3_call(s3_conn *cn, const s3_req *rq, s3_resp *r, const char *what, int max_attempts,
                   int ok404, st_error *err) {
  for (int attempt = 1;; attempt++) {
    int rc = req_setup(cn, cn->easy, rq, r, err);
    if (rc) return rc;
    r->cc = curl_easy_perform(cn->easy);
    curl_easy_getinfo(cn->easy, CURLINFO_RESPONSE_CODE, &r->status);
    int k = classify(r);
    if (k == 0) return 0;
    if (ok404 && r->cc == CURLE_OK && r->status == 404) return 1;
    if (k < 0 || attempt >= max_attempts || (cn->ctx && st_cancelled(cn->ctx)))
      return resp_error(cn, rq->key, what, r, attempt, err);
    double delay = backoff(attempt);
    say_retry(cn, rq->key, what, r, attempt, delay);
    if (nap(cn->ctx, delay)) return resp_error(cn, rq->key, what, r, attempt, err);
  }
}

/* ================================================================== */
/* Listing (ListObjectsV2)                                             */
/* ================================================================== */
typedef struct s3_obj_info {
  char *key;
  uint64_t size;
  char etag[80];
  char modified[32];
} s3_obj_info;

typedef struct {
  s3_obj_info cur;
  s3_obj_info *items;
  size_t n, cap;
  int truncated, oom;
  char token[1024];
} list_state;

static void list_end(void *ud, const char *parent, const char *name, const char *text) {
  list_state *s = ud;
  if (strcmp(parent, "Contents") == 0) {
    if (strcmp(name, "Key") == 0) {
      free(s->cur.key);
      s->cur.key = strdup(text);
    } else if (strcmp(name, "Size") == 0) {
      s->cur.size = strtoull(text, NULL, 10);
    } else if (strcmp(name, "ETag") == 0) {
      snprintf(s->cur.etag, sizeof s->cur.etag, "%s", text);
    } else if (strcmp(name, "LastModified") == 0) {
      snprintf(s->cur.modified, sizeof s->cur.modified, "%s", text);
    }
  } else if (strcmp(parent, "ListBucketResult") == 0) {
    if (strcmp(name, "Contents") == 0) {
      if (!s->cur.key) return;
      if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        s3_obj_info *ni = realloc(s->items, cap * sizeof *ni);
        if (!ni) {
          s->oom = 1;
          free(s->cur.key);
          memset(&s->cur, 0, sizeof s->cur);
          return;
        }
        s->items = ni;
        s->cap = cap;
      }
      s->items[s->n++] = s->cur;
      memset(&s->cur, 0, sizeof s->cur);
    } else if (strcmp(name, "IsTruncated") == 0) {
      s->truncated = strcmp(text, "true") == 0;
    } else if (strcmp(name, "NextContinuationToken") == 0) {
      snprintf(s->token, sizeof s->token, "%s", text);
    }
  }
}

static void list_free(list_state *s) {
  for (size_t i = 0; i < s->n; i++) free(s->items[i].key);
  free(s->items);
  free(s->cur.key);
  memset(s, 0, sizeof *s);
}

/* One ListObjectsV2 page: its objects are added to out, out->truncated and
 * out->token say whether and where it continues. */
static int list_page(const char *body, size_t len, list_state *out, const char *where,
                     st_error *err) {
  out->truncated = 0;
  out->token[0] = 0;
  char root[64];
  int rc = xml_parse(body, len, list_end, out, root, sizeof root, where, err);
  if (rc) return rc;
  if (out->oom) return st_error_set(err, ST_ENOMEM, where, -1, "out of memory listing");
  if (strcmp(root, "ListBucketResult") != 0)
    return st_error_set(err, ST_EFORMAT, where, -1,
                        "ListObjectsV2 answered <%s>, expected <ListBucketResult>", root);
  if (out->n > PK_LIMIT_S3_LIST_KEYS)
    return st_error_set(err, ST_E2BIG, where, -1, "more than %d keys under this prefix",
                        PK_LIMIT_S3_LIST_KEYS);
  if (out->truncated && !out->token[0])
    return st_error_set(err, ST_EFORMAT, where, -1,
                        "a truncated listing without NextContinuationToken");
  return 0;
}

/* All objects under prefix, sorted by key (S3 lists in binary order). */
static int s3_list(s3_conn *cn, const char *prefix, list_state *out, st_error *err) {
  memset(out, 0, sizeof *out);
  s3_resp r;
  memset(&r, 0, sizeof r);
  int rc = 0;
  char where[1200];
  where_of(cn, prefix, where, sizeof where);
  int empty_pages = 0; /* truncated pages in a row that carried no key */
  for (;;) {
    char token[1024];
    snprintf(token, sizeof token, "%s", out->token);
    size_t before = out->n;
    s3_req rq = {.method = "GET", .payload_sha256 = SIGV4_EMPTY_SHA256};
    rq.query[rq.nquery++] = (sigv4_kv){"list-type", "2"};
    rq.query[rq.nquery++] = (sigv4_kv){"prefix", prefix};
    if (token[0]) rq.query[rq.nquery++] = (sigv4_kv){"continuation-token", token};
    rc = s3_call(cn, &rq, &r, "ListObjectsV2", PK_LIMIT_S3_ATTEMPTS, 0, err);
    if (rc) break;
    rc = list_page(r.body.p, r.body.len, out, where, err);
    if (rc || !out->truncated) break;
    /* A server that keeps saying "truncated" must make progress. */
    if (strcmp(out->token, token) == 0) {
      rc = st_error_set(err, ST_EFORMAT, where, -1,
                        "the listing is truncated but NextContinuationToken repeats the token "
                        "just sent (after %zu keys)", out->n);
      break;
    }
    empty_pages = out->n == before ? empty_pages + 1 : 0;
    if (empty_pages >= PK_LIMIT_S3_LIST_EMPTY_PAGES) {
      rc = st_error_set(err, ST_EFORMAT, where, -1,
                        "%d truncated listing pages in a row without a key (after %zu keys)",
                        empty_pages, out->n);
      break;
    }
    if (cn->ctx && st_cancelled(cn->ctx)) {
      rc = st_error_set(err, ST_ECANCELED, where, -1, "interrupted");
      break;
    }
  }
  resp_free(&r);
  if (rc) list_free(out);
  return rc;
}

/* ================================================================== */
/* Bucket check / create                                               */
/* ================================================================== */
static int bucket_ready(s3_conn *cn, int create, st_error *err) {
  s3_resp r;
  memset(&r, 0, sizeof r);
  s3_req rq = {.method = "GET", .payload_sha256 = SIGV4_EMPTY_SHA256};
  rq.query[rq.nquery++] = (sigv4_kv){"location", ""};
  st_error e1;
  st_error_clear(&e1);
  int rc = s3_call(cn, &rq, &r, "GetBucketLocation", PK_LIMIT_S3_ATTEMPTS, 0, &e1);
  if (rc == 0) {
    resp_free(&r);
    return 0;
  }
  int missing = rc == ST_ES3 && r.status == 404 && strstr(e1.text, "NoSuchBucket");
  if (!missing || !create) {
    resp_free(&r);
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
  rc = s3_call(cn, &cr, &r, "CreateBucket", PK_LIMIT_S3_ATTEMPTS, 0, err);
  if (rc == ST_ES3 && r.status == 409 && strstr(err->text, "BucketAlreadyOwnedByYou")) {
    st_error_clear(err);
    rc = 0;
  }
  if (rc == 0) st_printf(cn->ctx, "upload: created bucket %s\n", cn->bucket);
  resp_free(&r);
  return rc;
}

/* ================================================================== */
/* %upload                                                             */
/* ================================================================== */
enum { OBJ_PENDING, OBJ_SKIPPED, OBJ_UPLOADED };

typedef struct up_obj {
  char *path, *key;
  uint64_t size, psize;
  int nparts;           /* 0: one PUT */
  int parts_left;
  char *upload_id;      /* an open multipart upload */
  uint8_t (*pmd5)[16];  /* per part (multipart) */
  uint8_t md5[16];      /* single PUT */
  char expect[80];      /* expected ETag, unquoted */
  char etag[80];        /* ETag found, unquoted */
  int state;
} up_obj;

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

typedef struct upload {
  st_ctx *c;
  s3_conn cn;
  up_obj *objs;
  size_t nobj, cap;
  int jobs;
  uint64_t psize;
  uint64_t threshold; /* objects larger than this go up as multipart uploads */
  /* the work cursor and the ready queue (shared with the workers) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t cur_obj;
  int cur_part;
  int buffers, max_buffers;
  up_task *ready_head, *ready_tail;
  int stop;
  int werr_code;
  char werr_where[1024], werr_text[512];
  CURLM *multi;
  _Atomic uint64_t hashed;
  /* part buffers are reused: fresh pages cost a fault each */
  uint64_t pool_size; /* bytes of each pooled buffer (the largest part) */
  uint8_t **pool;
  int npool;
} upload;

#define POOL_MIN (1u << 20) /* smaller bodies are malloc'd as they come */

/* Called with u->mu held. */
static uint8_t *buf_get(upload *u, uint64_t len) {
  if (len < POOL_MIN) return malloc(len ? len : 1);
  if (u->npool) return u->pool[--u->npool];
  return malloc(u->pool_size);
}
static void buf_put(upload *u, uint8_t *b, uint64_t len) {
  if (len < POOL_MIN || !b || u->npool >= u->max_buffers) {
    free(b);
    return;
  }
  u->pool[u->npool++] = b;
}

static void md5_b64(const uint8_t md5[16], char out[32]) {
  EVP_EncodeBlock((unsigned char *)out, md5, 16);
}

static void hex16(const uint8_t d[16], char out[33]) {
  static const char hexd[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[2 * i] = hexd[d[i] >> 4];
    out[2 * i + 1] = hexd[d[i] & 15];
  }
  out[32] = 0;
}

static void unquote(const char *in, char *out, size_t cap) {
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

/* The multipart ETag: md5 of the concatenated part md5s, "-N". */
static void multipart_etag(const up_obj *o, char *out, size_t cap) {
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  uint8_t d[16];
  unsigned int dl = 0;
  EVP_DigestInit_ex(m, EVP_md5(), NULL);
  EVP_DigestUpdate(m, o->pmd5, (size_t)o->nparts * 16);
  EVP_DigestFinal_ex(m, d, &dl);
  EVP_MD_CTX_free(m);
  char h[33];
  hex16(d, h);
  snprintf(out, cap, "%s-%d", h, o->nparts);
}

/* Reads [off, off+len) of path and hashes it (md5 and, when sha != NULL,
 * sha256) in one pass. buf may be NULL (hash only, streaming). */
static int read_hash(const char *path, uint64_t off, uint64_t len, uint8_t *buf, uint8_t md5[16],
                     char *sha, char *ewhere, size_t wcap, char *etext, size_t tcap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(ewhere, wcap, "%s", path);
    snprintf(etext, tcap, "cannot open: %s", strerror(errno));
    return st_from_errno(errno);
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
      t->buf = buf_get(u, len);
      pthread_mutex_unlock(&u->mu);
    }
    if (!t || !t->buf) {
      rc = ST_ENOMEM;
      snprintf(ew, sizeof ew, "%s", o->path);
      snprintf(et, sizeof et, "out of memory for a %llu-byte part", (unsigned long long)len);
    } else {
      rc = read_hash(o->path, off, len, t->buf, t->md5, t->sha, ew, sizeof ew, et, sizeof et);
      md5_b64(t->md5, t->md5_b64);
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
      if (t) buf_put(u, t->buf, t->len);
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
  struct dirent *e;
  while ((e = readdir(d))) {
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
    hex16(d, h);
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
  multipart_etag(o, out, cap);
  o->pmd5 = NULL;
  free(pm);
  return 0;
}

static int cmp_info_key(const void *k, const void *e) {
  return strcmp((const char *)k, ((const s3_obj_info *)e)->key);
}

static int mark_existing(upload *u, const char *prefix, st_error *err) {
  list_state ls;
  int rc = s3_list(&u->cn, prefix, &ls, err);
  if (rc) return rc;
  for (size_t i = 0; i < u->nobj && !rc; i++) {
    up_obj *o = &u->objs[i];
    s3_obj_info *hit = ls.n ? bsearch(o->key, ls.items, ls.n, sizeof *ls.items, cmp_info_key) : NULL;
    if (!hit || hit->size != o->size) continue;
    char want[80], have[80];
    rc = local_etag(u, o, want, sizeof want, err);
    if (rc) break;
    unquote(hit->etag, have, sizeof have);
    if (strcmp(want, have) == 0) {
      o->state = OBJ_SKIPPED;
      snprintf(o->etag, sizeof o->etag, "%s", have);
      snprintf(o->expect, sizeof o->expect, "%s", want);
    }
  }
  list_free(&ls);
  return rc;
}

static void upload_id_end(void *ud, const char *parent, const char *name, const char *text) {
  if (strcmp(parent, "InitiateMultipartUploadResult") == 0 && strcmp(name, "UploadId") == 0)
    snprintf((char *)ud, 1024, "%s", text);
}

/* The UploadId of an InitiateMultipartUploadResult (id: 1024 bytes). */
static int upload_id_doc(const char *body, size_t len, char *id, const char *where,
                         st_error *err) {
  char root[64];
  id[0] = 0;
  int rc = xml_parse(body, len, upload_id_end, id, root, sizeof root, where, err);
  if (!rc && !id[0])
    rc = st_error_set(err, ST_EFORMAT, where, -1,
                      "CreateMultipartUpload answered without an UploadId");
  return rc;
}

/* ListMultipartUploads pages: (key, upload id) pairs. */
typedef struct {
  char key[PK_LIMIT_S3_KEY_BYTES + 1], id[1024];
  char next_key[PK_LIMIT_S3_KEY_BYTES + 1], next_id[1024];
  int truncated;
  char **keys, **ids;
  size_t n, cap;
  int oom;
} mpu_list;

static void mpu_end(void *ud, const char *parent, const char *name, const char *text) {
  mpu_list *m = ud;
  if (strcmp(parent, "Upload") == 0) {
    if (strcmp(name, "Key") == 0) snprintf(m->key, sizeof m->key, "%s", text);
    else if (strcmp(name, "UploadId") == 0) snprintf(m->id, sizeof m->id, "%s", text);
  } else if (strcmp(parent, "ListMultipartUploadsResult") == 0) {
    if (strcmp(name, "Upload") == 0) {
      if (!m->key[0] || !m->id[0]) { /* nothing to abort without both */
        m->key[0] = m->id[0] = 0;
        return;
      }
      if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        char **nk = realloc(m->keys, cap * sizeof *nk);
        if (nk) m->keys = nk;
        char **ni = realloc(m->ids, cap * sizeof *ni);
        if (ni) m->ids = ni;
        if (!nk || !ni) {
          m->oom = 1;
          return;
        }
        m->cap = cap;
      }
      m->keys[m->n] = strdup(m->key);
      m->ids[m->n] = strdup(m->id);
      if (!m->keys[m->n] || !m->ids[m->n]) {
        free(m->keys[m->n]);
        free(m->ids[m->n]);
        m->oom = 1;
        return;
      }
      m->n++;
      m->key[0] = m->id[0] = 0;
    } else if (strcmp(name, "IsTruncated") == 0) {
      m->truncated = strcmp(text, "true") == 0;
    } else if (strcmp(name, "NextKeyMarker") == 0) {
      snprintf(m->next_key, sizeof m->next_key, "%s", text);
    } else if (strcmp(name, "NextUploadIdMarker") == 0) {
      snprintf(m->next_id, sizeof m->next_id, "%s", text);
    }
  }
}

/* One ListMultipartUploads page: its (key, upload id) pairs are added to m;
 * m->truncated and the next markers say whether and where it continues. */
static int mpu_page(const char *body, size_t len, mpu_list *m, const char *where,
                    st_error *err) {
  m->truncated = 0;
  m->next_key[0] = m->next_id[0] = 0;
  int rc = xml_parse(body, len, mpu_end, m, NULL, 0, where, err);
  if (!rc && m->oom) rc = st_error_set(err, ST_ENOMEM, where, -1, NULL);
  return rc;
}

static void mpu_free(mpu_list *m) {
  for (size_t i = 0; i < m->n; i++) {
    free(m->keys[i]);
    free(m->ids[i]);
  }
  free(m->keys);
  free(m->ids);
  m->keys = m->ids = NULL;
  m->n = m->cap = 0;
}

static int cmp_obj_key(const void *k, const void *e) {
  return strcmp((const char *)k, ((const up_obj *)e)->key);
}

/* A re-run (--skip-existing) first aborts the unfinished multipart uploads
 * an interrupted earlier run left on the keys it is about to upload. */
static int abort_stale(upload *u, const char *prefix, st_error *err) {
  mpu_list m;
  memset(&m, 0, sizeof m);
  s3_resp r;
  memset(&r, 0, sizeof r);
  char where[1200];
  where_of(&u->cn, prefix, where, sizeof where);
  int rc = 0, pages = 0;
  char km[PK_LIMIT_S3_KEY_BYTES + 1] = "", im[1024] = "";
  do {
    s3_req rq = {.method = "GET", .payload_sha256 = SIGV4_EMPTY_SHA256};
    rq.query[rq.nquery++] = (sigv4_kv){"uploads", ""};
    rq.query[rq.nquery++] = (sigv4_kv){"prefix", prefix};
    if (km[0]) {
      rq.query[rq.nquery++] = (sigv4_kv){"key-marker", km};
      rq.query[rq.nquery++] = (sigv4_kv){"upload-id-marker", im};
    }
    rc = s3_call(&u->cn, &rq, &r, "ListMultipartUploads", PK_LIMIT_S3_ATTEMPTS, 0, err);
    if (!rc) rc = mpu_page(r.body.p, r.body.len, &m, where, err);
    snprintf(km, sizeof km, "%s", m.next_key);
    snprintf(im, sizeof im, "%s", m.next_id);
  } while (!rc && m.truncated && km[0] && ++pages < 1000);
  resp_free(&r);
  size_t aborted = 0;
  for (size_t i = 0; i < m.n && !rc; i++) {
    /* u->objs is in key order for a tree, one object for a file */
    up_obj *o = bsearch(m.keys[i], u->objs, u->nobj, sizeof *u->objs, cmp_obj_key);
    if (!o || o->state != OBJ_PENDING) continue;
    s3_req rq = {.method = "DELETE", .key = o->key, .payload_sha256 = SIGV4_EMPTY_SHA256};
    rq.query[rq.nquery++] = (sigv4_kv){"uploadId", m.ids[i]};
    int k = s3_call(&u->cn, &rq, &r, "AbortMultipartUpload", PK_LIMIT_S3_ATTEMPTS, 1, err);
    resp_free(&r);
    if (k < 0) rc = k;
    else aborted++;
  }
  mpu_free(&m);
  if (!rc && aborted)
    st_eprintf(u->c, "upload: aborted %zu unfinished multipart upload%s of an earlier run\n",
               aborted, aborted == 1 ? "" : "s");
  return rc;
}

static int create_mpu(upload *u, up_obj *o, st_error *err) {
  s3_resp r;
  memset(&r, 0, sizeof r);
  s3_req rq = {.method = "POST", .key = o->key, .payload_sha256 = SIGV4_EMPTY_SHA256};
  rq.query[rq.nquery++] = (sigv4_kv){"uploads", ""};
  int rc = s3_call(&u->cn, &rq, &r, "CreateMultipartUpload", PK_LIMIT_S3_ATTEMPTS, 0, err);
  if (!rc) {
    char id[1024];
    char where[1200];
    where_of(&u->cn, o->key, where, sizeof where);
    rc = upload_id_doc(r.body.p, r.body.len, id, where, err);
    if (!rc && !(o->upload_id = strdup(id))) rc = st_error_set(err, ST_ENOMEM, where, -1, NULL);
    if (!rc) {
      o->pmd5 = calloc((size_t)o->nparts, 16);
      if (!o->pmd5) rc = st_error_set(err, ST_ENOMEM, where, -1, NULL);
      o->parts_left = o->nparts;
    }
  }
  resp_free(&r);
  return rc;
}

static void complete_end(void *ud, const char *parent, const char *name, const char *text) {
  if (strcmp(parent, "CompleteMultipartUploadResult") == 0 && strcmp(name, "ETag") == 0)
    snprintf((char *)ud, 128, "%s", text);
}

/* A CompleteMultipartUpload answer: its ETag (etag: 128 bytes, "" when
 * absent); 1 when it is an <Error> document (S3 may answer 200 with one). */
static int complete_doc(const char *body, size_t len, char *etag, const char *where,
                        st_error *err) {
  char root[64] = "";
  etag[0] = 0;
  int rc = xml_parse(body, len, complete_end, etag, root, sizeof root, where, err);
  return !rc && strcmp(root, "Error") == 0 ? 1 : rc;
}

/* HEAD key -> ETag (unquoted). */
static int head_etag(upload *u, const char *key, char *out, size_t cap, st_error *err) {
  s3_resp r;
  memset(&r, 0, sizeof r);
  s3_req rq = {.method = "HEAD", .key = key, .payload_sha256 = SIGV4_EMPTY_SHA256};
  int rc = s3_call(&u->cn, &rq, &r, "HeadObject", PK_LIMIT_S3_ATTEMPTS, 0, err);
  if (!rc) unquote(r.etag, out, cap);
  resp_free(&r);
  return rc;
}

static int complete_mpu(upload *u, up_obj *o, st_error *err) {
  buf_t x = {0};
  const char *head = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
  buf_add(&x, head, strlen(head), SIZE_MAX);
  for (int p = 0; p < o->nparts; p++) {
    char h[33], line[128];
    hex16(o->pmd5[p], h);
    int n = snprintf(line, sizeof line, "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>",
                     p + 1, h);
    buf_add(&x, line, (size_t)n, SIZE_MAX);
  }
  buf_add(&x, "</CompleteMultipartUpload>", 26, SIZE_MAX);
  char where[1200];
  where_of(&u->cn, o->key, where, sizeof where);
  if (!x.p) return st_error_set(err, ST_ENOMEM, where, -1, NULL);
  char sha[65];
  sigv4_sha256_hex(x.p, x.len, sha);
  s3_resp r;
  memset(&r, 0, sizeof r);
  s3_req rq = {.method = "POST", .key = o->key, .payload_sha256 = sha, .body = x.p,
               .body_len = x.len};
  rq.query[rq.nquery++] = (sigv4_kv){"uploadId", o->upload_id};
  int rc;
  char etag[128];
  for (int attempt = 1;; attempt++) {
    etag[0] = 0;
    rc = s3_call(&u->cn, &rq, &r, "CompleteMultipartUpload", PK_LIMIT_S3_ATTEMPTS, 0, err);
    if (!rc) rc = complete_doc(r.body.p, r.body.len, etag, where, err);
    if (rc != 1) break;
    /* S3 may answer 200 and then an <Error> document: retried like a 5xx */
    if (attempt >= PK_LIMIT_S3_ATTEMPTS || st_cancelled(u->c)) {
      rc = resp_error(&u->cn, o->key, "CompleteMultipartUpload", &r, attempt, err);
      break;
    }
    double delay = backoff(attempt);
    say_retry(&u->cn, o->key, "CompleteMultipartUpload", &r, attempt, delay);
    if (nap(u->cn.ctx, delay)) {
      rc = resp_error(&u->cn, o->key, "CompleteMultipartUpload", &r, attempt, err);
      break;
    }
  }
  resp_free(&r);
  buf_free(&x);
  if (rc) return rc;
  free(o->upload_id); /* completed: nothing to abort any more */
  o->upload_id = NULL;
  multipart_etag(o, o->expect, sizeof o->expect);
  if (etag[0]) unquote(etag, o->etag, sizeof o->etag);
  if (!o->etag[0]) { /* RGW answers without one: ask */
    rc = head_etag(u, o->key, o->etag, sizeof o->etag, err);
    if (rc) return rc;
  }
  if (strcmp(o->etag, o->expect) != 0)
    return st_error_set(err, ST_ECHECKSUM, where, -1,
                        "ETag after upload is %s, expected %s (md5 of the %d part md5s)",
                        o->etag, o->expect, o->nparts);
  o->state = OBJ_UPLOADED;
  return 0;
}

static void abort_open(upload *u, st_error *err) {
  char failed[600] = "";
  size_t fl = 0;
  for (size_t i = 0; i < u->nobj; i++) {
    up_obj *o = &u->objs[i];
    if (!o->upload_id) continue;
    s3_resp r;
    memset(&r, 0, sizeof r);
    s3_req rq = {.method = "DELETE", .key = o->key, .payload_sha256 = SIGV4_EMPTY_SHA256};
    rq.query[rq.nquery++] = (sigv4_kv){"uploadId", o->upload_id};
    st_error e;
    st_error_clear(&e);
    st_ctx *saved = u->cn.ctx;
    u->cn.ctx = NULL; /* the abort runs even after an interrupt */
    u->cn.deadline_s = 15;
    int rc = s3_call(&u->cn, &rq, &r, "AbortMultipartUpload", 3, 1, &e);
    u->cn.deadline_s = 0;
    u->cn.ctx = saved;
    if (rc < 0 && fl < sizeof failed - 1)
      fl += (size_t)snprintf(failed + fl, sizeof failed - fl, "%s%s", fl ? ", " : "", o->key);
    resp_free(&r);
    free(o->upload_id);
    o->upload_id = NULL;
  }
  if (failed[0] && err && err->code) {
    size_t tl = strlen(err->text);
    snprintf(err->text + tl, sizeof err->text - tl,
             "; the unfinished multipart upload of %.500s could not be aborted "
             "(the server was unreachable; S3 lifecycle rules or a re-run clean it)",
             failed);
  }
}

/* Starts task t on easy handle slot. */
static int task_start(upload *u, up_task *t, CURL **easies, s3_resp *resps, int slot,
                      st_error *err) {
  up_obj *o = &u->objs[t->obj];
  char pn[16];
  snprintf(pn, sizeof pn, "%d", t->part);
  s3_req rq = {.method = "PUT", .key = o->key, .payload_sha256 = t->sha, .content_md5 = t->md5_b64,
               .body = (const char *)t->buf, .body_len = (size_t)t->len};
  if (t->part) {
    rq.query[rq.nquery++] = (sigv4_kv){"partNumber", pn};
    rq.query[rq.nquery++] = (sigv4_kv){"uploadId", o->upload_id};
  }
  int rc = req_setup(&u->cn, easies[slot], &rq, &resps[slot], err);
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
  buf_put(u, t->buf, t->len);
  pthread_cond_broadcast(&u->cv);
  pthread_mutex_unlock(&u->mu);
  free(t);
}

/* Threads that read and hash parts: one per core, at most 8. */
static int hashing_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return (int)(n < 1 ? 1 : n > 8 ? 8 : n);
}

static int run_transfers(upload *u, uint64_t total, st_progress *pr, st_error *err) {
  int jobs = u->jobs;
  CURL **easies = calloc((size_t)jobs, sizeof *easies);
  s3_resp *resps = calloc((size_t)jobs, sizeof *resps);
  up_task **inflight = calloc((size_t)jobs, sizeof *inflight);
  int rc = 0, nworkers = 0;
  uint64_t done_bytes = 0; /* parts and objects the server has acknowledged */
  pthread_t th[16];
  up_task *pend = NULL; /* ready or waiting for a retry */
  size_t objs_left = 0;
  for (size_t i = 0; i < u->nobj; i++) objs_left += u->objs[i].state == OBJ_PENDING;
  if (!easies || !resps || !inflight) {
    rc = st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
    goto out;
  }
  for (int i = 0; i < jobs; i++)
    if (!(easies[i] = curl_easy_init())) {
      rc = st_error_set(err, ST_ENOMEM, NULL, -1, "cannot create curl handles");
      goto out;
    }
  int want = hashing_threads();
  if (want > jobs) want = jobs;
  for (int i = 0; i < want; i++)
    if (pthread_create(&th[nworkers], NULL, worker, u) == 0) nworkers++;
  if (!nworkers) {
    rc = st_error_set(err, ST_EINTERNAL, NULL, -1, "cannot start threads");
    goto out;
  }
  int active = 0;
  while (objs_left > 0) {
    if (st_cancelled(u->c)) {
      rc = st_error_set(err, ST_ECANCELED, u->cn.bucket, -1,
                        "interrupted; unfinished multipart uploads aborted");
      break;
    }
    /* take what the workers hashed */
    pthread_mutex_lock(&u->mu);
    if (u->werr_code) {
      rc = st_error_set(err, u->werr_code, u->werr_where, -1, "%s", u->werr_text);
      pthread_mutex_unlock(&u->mu);
      break;
    }
    up_task *got = u->ready_head;
    u->ready_head = u->ready_tail = NULL;
    pthread_mutex_unlock(&u->mu);
    if (got) { /* append in order */
      up_task **tail = &pend;
      while (*tail) tail = &(*tail)->next;
      *tail = got;
    }
    /* dispatch */
    double now = st_now(), next_due = 0;
    for (up_task **pp = &pend; *pp && active < jobs && !rc;) {
      up_task *t = *pp;
      if (t->not_before > now) {
        if (!next_due || t->not_before < next_due) next_due = t->not_before;
        pp = &t->next;
        continue;
      }
      up_obj *o = &u->objs[t->obj];
      if (t->part && !o->upload_id && !o->pmd5) rc = create_mpu(u, o, err);
      if (rc) break;
      int slot = 0;
      while (inflight[slot]) slot++;
      *pp = t->next;
      t->next = NULL;
      inflight[slot] = t;
      rc = task_start(u, t, easies, resps, slot, err);
      active++;
    }
    if (rc) break;
    int running = 0;
    curl_multi_perform(u->multi, &running);
    CURLMsg *msg;
    int left;
    while (!rc && (msg = curl_multi_info_read(u->multi, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL *e = msg->easy_handle;
      up_task *t = NULL;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&t);
      s3_resp *r = &resps[t->slot];
      r->cc = msg->data.result;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
      curl_multi_remove_handle(u->multi, e);
      inflight[t->slot] = NULL;
      active--;
      up_obj *o = &u->objs[t->obj];
      int k = classify(r);
      if (k == 0) {
        char h[33], got_etag[80];
        hex16(t->md5, h);
        unquote(r->etag, got_etag, sizeof got_etag);
        char where[1200];
        where_of(&u->cn, o->key, where, sizeof where);
        if (strcmp(got_etag, h) != 0) {
          rc = st_error_set(err, ST_ECHECKSUM, where, (long long)t->off,
                            "%s answered ETag '%s', expected the md5 %s", t->part ? "UploadPart" : "PutObject",
                            got_etag, h);
          t->slot = -1;
          task_free(u, t);
          break;
        }
        done_bytes += t->len;
        if (t->part) {
          memcpy(o->pmd5[t->part - 1], t->md5, 16);
          o->parts_left--;
        } else {
          snprintf(o->etag, sizeof o->etag, "%s", got_etag);
          snprintf(o->expect, sizeof o->expect, "%s", h);
          o->state = OBJ_UPLOADED;
          objs_left--;
        }
        t->slot = -1;
        task_free(u, t);
        if (o->nparts && o->parts_left == 0 && o->state == OBJ_PENDING) {
          rc = complete_mpu(u, o, err);
          if (!rc) objs_left--;
        }
      } else if (k > 0 && t->attempts < PK_LIMIT_S3_ATTEMPTS) {
        char what[64];
        if (t->part) snprintf(what, sizeof what, "UploadPart %d", t->part);
        else snprintf(what, sizeof what, "PutObject");
        double delay = backoff(t->attempts);
        say_retry(&u->cn, o->key, what, r, t->attempts, delay);
        t->slot = -1;
        t->not_before = st_now() + delay;
        t->next = pend;
        pend = t;
      } else {
        char what[64];
        if (t->part) snprintf(what, sizeof what, "UploadPart %d", t->part);
        else snprintf(what, sizeof what, "PutObject");
        rc = resp_error(&u->cn, o->key, what, r, t->attempts, err);
        t->slot = -1;
        task_free(u, t);
      }
    }
    if (rc) break;
    uint64_t inprog = 0;
    for (int i = 0; i < jobs; i++)
      if (inflight[i]) inprog += resps[i].sent;
    uint64_t shown = done_bytes + inprog;
    st_progress_update(pr, shown > total ? total : shown);
    int wait_ms = 100;
    if (next_due) {
      double dt = next_due - st_now();
      int ms = dt <= 0 ? 0 : (int)(dt * 1000) + 1;
      if (ms < wait_ms) wait_ms = ms;
    }
    curl_multi_poll(u->multi, NULL, 0, wait_ms, NULL);
  }
out:
  /* a failed upload's bar ends at what the server acknowledged, not at
   * what was sent (a rejected last part would read 100 %) */
  if (rc) st_progress_update(pr, done_bytes);
  /* stop the workers, drop what is in flight or queued */
  pthread_mutex_lock(&u->mu);
  u->stop = 1;
  pthread_cond_broadcast(&u->cv);
  pthread_mutex_unlock(&u->mu);
  for (int i = 0; i < nworkers; i++) pthread_join(th[i], NULL);
  for (int i = 0; inflight && i < jobs; i++)
    if (inflight[i]) {
      curl_multi_remove_handle(u->multi, easies[i]);
      free(inflight[i]->buf);
      free(inflight[i]);
    }
  while (pend) {
    up_task *n = pend->next;
    free(pend->buf);
    free(pend);
    pend = n;
  }
  while (u->ready_head) {
    up_task *n = u->ready_head->next;
    free(u->ready_head->buf);
    free(u->ready_head);
    u->ready_head = n;
  }
  for (int i = 0; easies && i < jobs; i++) {
    resp_free(&resps[i]);
    if (easies[i]) curl_easy_cleanup(easies[i]);
  }
  free(easies);
  free(resps);
  free(inflight);
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
  conn_close(&u->cn);
}

int s3_upload(st_ctx *c, const st_args *a, st_error *err) {
  const char *src = a->pos[0], *url = a->pos[1];
  char bucket[64], key[PK_LIMIT_S3_KEY_BYTES + 1];
  int rc = s3_parse_url(url, bucket, sizeof bucket, key, sizeof key, err);
  if (rc) return rc;
  long long psize_mib, threshold_mib, jobs;
  if ((rc = st_arg_int(a, "part-size", 8, 5, 5120, &psize_mib, err))) return rc;
  if ((rc = st_arg_int(a, "threshold", 32, 5, 5120, &threshold_mib, err))) return rc;
  if ((rc = st_arg_int(a, "jobs", 8, 1, 64, &jobs, err))) return rc;
  struct stat st;
  if (stat(src, &st) != 0) return st_error_errno(err, errno, src, "cannot upload");
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
    return st_error_set(err, ST_EINVAL, src, -1, "not a regular file or a directory");

  upload u;
  memset(&u, 0, sizeof u);
  u.c = c;
  u.jobs = (int)jobs;
  u.psize = (uint64_t)psize_mib * MiB;
  u.threshold = (uint64_t)threshold_mib * MiB;
  pthread_mutex_init(&u.mu, NULL);
  pthread_cond_init(&u.cv, NULL);
  double t0 = st_now();
  size_t skipped_special = 0;
  char prefix[PK_LIMIT_S3_KEY_BYTES + 2];
  if (S_ISDIR(st.st_mode)) {
    size_t kl = strlen(key);
    snprintf(prefix, sizeof prefix, "%s%s", key, kl && key[kl - 1] != '/' ? "/" : "");
    char root[4096];
    snprintf(root, sizeof root, "%s", src);
    size_t rl = strlen(root);
    while (rl > 1 && root[rl - 1] == '/') root[--rl] = 0;
    rc = walk_tree(&u, root, "", prefix, &skipped_special, 0, err);
    if (!rc) qsort(u.objs, u.nobj, sizeof *u.objs, obj_cmp); /* binary key order */
  } else {
    size_t kl = strlen(key);
    char k2[PK_LIMIT_S3_KEY_BYTES + 4096];
    if (!kl || key[kl - 1] == '/') {
      const char *base = strrchr(src, '/');
      snprintf(k2, sizeof k2, "%s%s", key, base ? base + 1 : src);
    } else {
      snprintf(k2, sizeof k2, "%s", key);
    }
    snprintf(prefix, sizeof prefix, "%.*s", PK_LIMIT_S3_KEY_BYTES, k2);
    rc = add_obj(&u, src, k2, (uint64_t)st.st_size, err);
  }
  if (rc) goto done;
  if (skipped_special)
    st_eprintf(c, "upload: skipped %zu symbolic links or special files\n", skipped_special);
  if (u.nobj == 0) {
    rc = st_error_set(err, ST_EINVAL, src, -1, "no regular files to upload");
    goto done;
  }
  if ((rc = conn_open(&u.cn, c, a, bucket, err))) goto done;
  if ((rc = bucket_ready(&u.cn, st_arg_has(a, "create-bucket"), err))) goto done;
  if (st_arg_has(a, "skip-existing") &&
      ((rc = mark_existing(&u, prefix, err)) || (rc = abort_stale(&u, prefix, err))))
    goto done;

  uint64_t total = 0;
  size_t nup = 0, nskip = 0, nmulti = 0;
  for (size_t i = 0; i < u.nobj; i++) {
    if (u.objs[i].state == OBJ_SKIPPED) {
      nskip++;
    } else {
      nup++;
      total += u.objs[i].size;
      nmulti += u.objs[i].nparts > 0;
    }
  }
  /* part buffers in memory: enough for every job and every hashing thread;
   * each holds the largest body sent (a part, or a file up to --threshold) */
  uint64_t maxp = POOL_MIN;
  for (size_t i = 0; i < u.nobj; i++) {
    uint64_t body = u.objs[i].nparts ? u.objs[i].psize : u.objs[i].size;
    if (body > maxp) maxp = body;
  }
  long long nb = (long long)u.jobs + hashing_threads() + 2;
  if ((long long)maxp * nb > PK_LIMIT_S3_BUFFER_BYTES) nb = PK_LIMIT_S3_BUFFER_BYTES / (long long)maxp;
  u.max_buffers = (int)(nb < 1 ? 1 : nb);
  u.pool_size = maxp;
  u.pool = calloc((size_t)u.max_buffers, sizeof *u.pool);
  if (!u.pool) {
    rc = st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
    goto done;
  }
  u.multi = curl_multi_init();
  if (!u.multi) {
    rc = st_error_set(err, ST_ENOMEM, NULL, -1, "cannot create a curl multi handle");
    goto done;
  }
  curl_multi_setopt(u.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)u.jobs);
  st_progress pr;
  char label[128];
  if ((size_t)snprintf(label, sizeof label, "upload s3://%s/%s", bucket, prefix) >= sizeof label)
    snprintf(label + sizeof label - 4, 4, "...");
  st_progress_begin(c, &pr, label, "B", total);
  if (nup) rc = run_transfers(&u, total, &pr, err);
  if (rc) abort_open(&u, err);
  st_progress_end(&pr, rc == 0 ? 0 : rc);
  if (rc) goto done;
  double dt = st_now() - t0;
  show_table(&u, url);
  char sz[32], rate[32];
  st_fmt_bytes(sz, sizeof sz, total);
  st_fmt_rate(rate, sizeof rate, total, dt);
  st_printf(c, "upload: %s, %zu file%s (%zu multipart, %zu skipped) to s3://%s/%s in %.2f s (%s)\n",
            sz, nup, nup == 1 ? "" : "s", nmulti, nskip, bucket, prefix, dt, rate);
  st_timing_add(c, "upload", "upload", dt, total, nup, "libcurl-multi+openssl-evp", NULL);
done:
  upload_free(&u);
  return rc;
}

/* ================================================================== */
/* %s3ls                                                               */
/* ================================================================== */
int s3_ls(st_ctx *c, const st_args *a, st_error *err) {
  char bucket[64], prefix[PK_LIMIT_S3_KEY_BYTES + 1];
  int rc = s3_parse_url(a->pos[0], bucket, sizeof bucket, prefix, sizeof prefix, err);
  if (rc) return rc;
  long long max;
  if ((rc = st_arg_int(a, "max", 1000, 0, 10000000, &max, err))) return rc;
  s3_conn cn;
  if ((rc = conn_open(&cn, c, a, bucket, err))) {
    conn_close(&cn);
    return rc;
  }
  double t0 = st_now();
  list_state ls;
  rc = s3_list(&cn, prefix, &ls, err);
  conn_close(&cn);
  if (rc) return rc;
  const char *hd[] = {"key", "size", "ETag", "last modified"};
  int right[] = {0, 1, 0, 0};
  tbl *t = tbl_new(4, hd, right);
  uint64_t bytes = 0;
  for (size_t i = 0; i < ls.n; i++) {
    bytes += ls.items[i].size;
    if ((long long)i >= max || !t) continue;
    char size[32], etag[80];
    snprintf(size, sizeof size, "%llu", (unsigned long long)ls.items[i].size);
    unquote(ls.items[i].etag, etag, sizeof etag);
    const char *row[] = {ls.items[i].key, size, etag, ls.items[i].modified};
    tbl_add(t, row, 0);
  }
  char nobj[64], total[32];
  snprintf(nobj, sizeof nobj, "%zu objects%s", ls.n, (long long)ls.n > max ? " (not all shown)" : "");
  snprintf(total, sizeof total, "%llu", (unsigned long long)bytes);
  const char *tr[] = {nobj, total, "", ""};
  if (t) {
    tbl_add(t, tr, 1);
    char cap[1200];
    snprintf(cap, sizeof cap, "s3://%s/%s", bucket, prefix);
    tbl_display(c, t, cap, NULL, 0);
    tbl_free(t);
  }
  char sz[32];
  st_fmt_bytes(sz, sizeof sz, bytes);
  st_printf(c, "s3ls: %zu objects, %s under s3://%s/%s (%.2f s)\n", ls.n, sz, bucket, prefix,
            st_now() - t0);
  list_free(&ls);
  return 0;
}

/* ================================================================== */
/* The response parsers on one body (fuzzing, tests)                   */
/* ================================================================== */
int s3__parse_responses(const char *body, size_t len) {
  const char *where = "s3://fuzz/";
  int accepted = 0, bad = 0;
  st_error err;

  s3_err_xml e;
  err_doc(body, len, &e);
  accepted += e.code[0] != 0;

  list_state ls;
  memset(&ls, 0, sizeof ls);
  st_error_clear(&err);
  int rc = list_page(body, len, &ls, where, &err);
  if (!rc && ls.truncated) { /* the same answer again: a second page */
    size_t n1 = ls.n;
    rc = list_page(body, len, &ls, where, &err);
    if (!rc && ls.n != 2 * n1) bad = 1;
  }
  if (rc && !err.code) bad = 1;
  if (!rc) {
    accepted++;
    for (size_t i = 0; i < ls.n; i++)
      if (!ls.items[i].key) bad = 1;
    if (ls.truncated && !ls.token[0]) bad = 1;
  }
  list_free(&ls);

  mpu_list m;
  memset(&m, 0, sizeof m);
  st_error_clear(&err);
  rc = mpu_page(body, len, &m, where, &err);
  if (rc && !err.code) bad = 1;
  if (!rc) {
    accepted++;
    for (size_t i = 0; i < m.n; i++)
      if (!m.keys[i][0] || !m.ids[i][0]) bad = 1;
  }
  mpu_free(&m);

  char id[1024];
  st_error_clear(&err);
  rc = upload_id_doc(body, len, id, where, &err);
  if (rc && !err.code) bad = 1;
  if (!rc) accepted += id[0] != 0;

  char etag[128];
  st_error_clear(&err);
  rc = complete_doc(body, len, etag, where, &err);
  if (rc < 0 && !err.code) bad = 1;
  if (rc == 0) accepted++;
  return bad ? -1 : accepted;
}
