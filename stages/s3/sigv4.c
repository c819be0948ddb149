/*
 * sigv4.c -- AWS Signature Version 4 (see sigv4.h), OpenSSL EVP and HMAC.
 */
#include "sigv4.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/dynbuf.h"

/* Every string built here (canonical request, headers, query, the
 * Authorization value) is capped: keys, values and headers come from users. */
#define SV_MAX (1u << 20)

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_' || c == '~';
}

char *sigv4_uri_encode(const char *s, size_t len, int keep_slash) {
  static const char hexd[] = "0123456789ABCDEF";
  dynbuf b = DYN_INIT(SV_MAX);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c) || (keep_slash && c == '/')) {
      dyn_putc(&b, (char)c);
    } else {
      char e[3] = {'%', hexd[c >> 4], hexd[c & 15]};
      dyn_add(&b, e, 3);
    }
  }
  return dyn_take(&b, NULL);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char *sigv4_uri_decode(const char *s, size_t len) {
  dynbuf b = DYN_INIT(SV_MAX);
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      dyn_putc(&b, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
      i += 2;
    } else {
      dyn_putc(&b, s[i]);
    }
  }
  return dyn_take(&b, NULL);
}

/* RFC 3986 5.2.4 remove_dot_segments, plus repeated slashes collapsed. */
static char *normalise_path(const char *path) {
  size_t n = strlen(path);
  /* segments between slashes */
  const char **seg = malloc((n + 1) * sizeof *seg);
  size_t *slen = malloc((n + 1) * sizeof *slen);
  if (!seg || !slen) {
    free(seg);
    free(slen);
    return NULL;
  }
  size_t ns = 0;
  const char *p = path;
  int trailing = n > 0 && path[n - 1] == '/';
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *e = strchr(p, '/');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l == 1 && p[0] == '.') {
      if (!e) trailing = 1;
    } else if (l == 2 && p[0] == '.' && p[1] == '.') {
      if (ns) ns--;
      if (!e) trailing = 1;
    } else {
      seg[ns] = p;
      slen[ns++] = l;
    }
    p += l;
  }
  dynbuf b = DYN_INIT(SV_MAX);
  for (size_t i = 0; i < ns; i++) {
    dyn_putc(&b, '/');
    dyn_add(&b, seg[i], slen[i]);
  }
  if (ns == 0 || trailing) dyn_putc(&b, '/');
  free(seg);
  free(slen);
  return dyn_take(&b, NULL);
}

char *sigv4_canonical_uri(const char *path, int rules) {
  if (!path || !*path) path = "/";
  if (rules == SIGV4_GENERIC) {
    char *norm = normalise_path(path);
    if (!norm) return NULL;
    char *out = sigv4_uri_encode(norm, strlen(norm), 1);
    free(norm);
    return out;
  }
  if (path[0] != '/') { /* S3: the key as given, only a leading slash added */
    size_t n = strlen(path);
    char *tmp = malloc(n + 2);
    if (!tmp) return NULL;
    tmp[0] = '/';
    memcpy(tmp + 1, path, n + 1);
    char *out = sigv4_uri_encode(tmp, n + 1, 1);
    free(tmp);
    return out;
  }
  return sigv4_uri_encode(path, strlen(path), 1);
}

typedef struct {
  char *name, *value;
  size_t idx;
} pair;

static int pair_cmp(const void *a, const void *b) {
  const pair *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c) return c;
  c = strcmp(x->value, y->value);
  if (c) return c;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

char *sigv4_canonical_query(const sigv4_kv *q, size_t n) {
  pair *ps = calloc(n ? n : 1, sizeof *ps);
  if (!ps) return NULL;
  int oom = 0;
  for (size_t i = 0; i < n; i++) {
    const char *v = q[i].value ? q[i].value : "";
    ps[i].name = sigv4_uri_encode(q[i].name, strlen(q[i].name), 0);
    ps[i].value = sigv4_uri_encode(v, strlen(v), 0);
    ps[i].idx = i;
    if (!ps[i].name || !ps[i].value) oom = 1;
  }
  dynbuf b = DYN_INIT(SV_MAX);
  if (!oom) {
    qsort(ps, n, sizeof *ps, pair_cmp);
    for (size_t i = 0; i < n; i++) {
      if (i) dyn_putc(&b, '&');
      dyn_puts(&b, ps[i].name);
      dyn_putc(&b, '=');
      dyn_puts(&b, ps[i].value);
    }
  }
  for (size_t i = 0; i < n; i++) {
    free(ps[i].name);
    free(ps[i].value);
  }
  free(ps);
  if (oom) {
    free(b.p);
    return NULL;
  }
  return dyn_take(&b, NULL);
}

static int pair_name_cmp(const void *a, const void *b) {
  const pair *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c) return c;
  return x->idx < y->idx ? -1 : x->idx > y->idx; /* stable: keep value order */
}

/* Lowercased names and trimmed values, sorted by name (stable). */
static pair *sorted_headers(const sigv4_kv *h, size_t n) {
  pair *ps = calloc(n ? n : 1, sizeof *ps);
  if (!ps) return NULL;
  for (size_t i = 0; i < n; i++) {
    size_t nl = strlen(h[i].name);
    ps[i].name = malloc(nl + 1);
    const char *v = h[i].value ? h[i].value : "";
    ps[i].value = malloc(strlen(v) + 1);
    ps[i].idx = i;
    if (!ps[i].name || !ps[i].value) {
      for (size_t j = 0; j <= i; j++) {
        free(ps[j].name);
        free(ps[j].value);
      }
      free(ps);
      return NULL;
    }
    for (size_t k = 0; k <= nl; k++) ps[i].name[k] = (char)tolower((unsigned char)h[i].name[k]);
    /* trim, collapse runs of whitespace to one space */
    char *o = ps[i].value;
    while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') v++;
    int sp = 0;
    for (; *v; v++) {
      if (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') {
        sp = 1;
      } else {
        if (sp && o != ps[i].value) *o++ = ' ';
        sp = 0;
        *o++ = *v;
      }
    }
    *o = 0;
  }
  qsort(ps, n, sizeof *ps, pair_name_cmp);
  return ps;
}

static void free_pairs(pair *ps, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(ps[i].name);
    free(ps[i].value);
  }
  free(ps);
}

char *sigv4_canonical_headers(const sigv4_kv *h, size_t n) {
  pair *ps = sorted_headers(h, n);
  if (!ps) return NULL;
  dynbuf b = DYN_INIT(SV_MAX);
  for (size_t i = 0; i < n; i++) {
    if (i && strcmp(ps[i].name, ps[i - 1].name) == 0) {
      b.len--; /* drop the '\n', append ",value" */
      dyn_putc(&b, ',');
    } else {
      dyn_puts(&b, ps[i].name);
      dyn_putc(&b, ':');
    }
    dyn_puts(&b, ps[i].value);
    dyn_putc(&b, '\n');
  }
  free_pairs(ps, n);
  return dyn_take(&b, NULL);
}

char *sigv4_signed_headers(const sigv4_kv *h, size_t n) {
  pair *ps = sorted_headers(h, n);
  if (!ps) return NULL;
  dynbuf b = DYN_INIT(SV_MAX);
  for (size_t i = 0; i < n; i++) {
    if (i && strcmp(ps[i].name, ps[i - 1].name) == 0) continue;
    if (b.len) dyn_putc(&b, ';');
    dyn_puts(&b, ps[i].name);
  }
  free_pairs(ps, n);
  return dyn_take(&b, NULL);
}

char *sigv4_canonical_request(const char *method, const char *canonical_uri,
                              const char *canonical_query, const char *canonical_headers,
                              const char *signed_headers, const char *payload_sha256) {
  dynbuf b = DYN_INIT(SV_MAX);
  dyn_puts(&b, method);
  dyn_putc(&b, '\n');
  dyn_puts(&b, canonical_uri);
  dyn_putc(&b, '\n');
  dyn_puts(&b, canonical_query);
  dyn_putc(&b, '\n');
  dyn_puts(&b, canonical_headers);
  dyn_putc(&b, '\n');
  dyn_puts(&b, signed_headers);
  dyn_putc(&b, '\n');
  dyn_puts(&b, payload_sha256);
  return dyn_take(&b, NULL);
}

char *sigv4_scope(const char *date8, const char *region, const char *service) {
  dynbuf b = DYN_INIT(SV_MAX);
  dyn_add(&b, date8, strnlen(date8, 8));
  dyn_putc(&b, '/');
  dyn_puts(&b, region);
  dyn_putc(&b, '/');
  dyn_puts(&b, service);
  dyn_puts(&b, "/aws4_request");
  return dyn_take(&b, NULL);
}

static void to_hex(const uint8_t *d, size_t n, char *out) {
  static const char hexd[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hexd[d[i] >> 4];
    out[2 * i + 1] = hexd[d[i] & 15];
  }
  out[2 * n] = 0;
}

int sigv4_sha256_hex(const void *data, size_t len, char hex[65]) {
  uint8_t md[32];
  unsigned int mdlen = 0;
  if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) return -1;
  to_hex(md, 32, hex);
  return 0;
}

char *sigv4_string_to_sign(const char *amz_date, const char *scope,
                           const char *canonical_request) {
  char h[65];
  if (sigv4_sha256_hex(canonical_request, strlen(canonical_request), h)) return NULL;
  dynbuf b = DYN_INIT(SV_MAX);
  dyn_puts(&b, "AWS4-HMAC-SHA256\n");
  dyn_puts(&b, amz_date);
  dyn_putc(&b, '\n');
  dyn_puts(&b, scope);
  dyn_putc(&b, '\n');
  dyn_puts(&b, h);
  return dyn_take(&b, NULL);
}

static int hmac(const void *key, size_t klen, const char *msg, uint8_t out[32]) {
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len) ||
      len != 32)
    return -1;
  return 0;
}

int sigv4_signing_key(const char *secret, const char *date8, const char *region,
                      const char *service, uint8_t key[32]) {
  size_t sl = strlen(secret);
  char *k = malloc(sl + 5);
  if (!k) return -1;
  memcpy(k, "AWS4", 4);
  memcpy(k + 4, secret, sl + 1);
  char d[9];
  snprintf(d, sizeof d, "%.8s", date8);
  uint8_t a[32], b[32];
  int rc = hmac(k, sl + 4, d, a) || hmac(a, 32, region, b) || hmac(b, 32, service, a) ||
           hmac(a, 32, "aws4_request", key);
  OPENSSL_cleanse(k, sl + 4);
  OPENSSL_cleanse(a, sizeof a);
  OPENSSL_cleanse(b, sizeof b);
  free(k);
  return rc ? -1 : 0;
}

int sigv4_signature(const uint8_t key[32], const char *string_to_sign, char hex[65]) {
  uint8_t s[32];
  if (hmac(key, 32, string_to_sign, s)) return -1;
  to_hex(s, 32, hex);
  return 0;
}

char *sigv4_authorization(const char *access_key, const char *scope,
                          const char *signed_headers, const char *signature) {
  dynbuf b = DYN_INIT(SV_MAX);
  dyn_puts(&b, "AWS4-HMAC-SHA256 Credential=");
  dyn_puts(&b, access_key);
  dyn_putc(&b, '/');
  dyn_puts(&b, scope);
  dyn_puts(&b, ", SignedHeaders=");
  dyn_puts(&b, signed_headers);
  dyn_puts(&b, ", Signature=");
  dyn_puts(&b, signature);
  return dyn_take(&b, NULL);
}

void sigv4_amz_date(time_t t, char out[17]) {
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

void sigv4_result_free(sigv4_result *r) {
  free(r->canonical_uri);
  free(r->canonical_query);
  free(r->canonical_headers);
  free(r->signed_headers);
  free(r->canonical_request);
  free(r->scope);
  free(r->string_to_sign);
  free(r->authorization);
  memset(r, 0, sizeof *r);
}

int sigv4_sign(const sigv4_request *r, const char *access_key, const char *secret,
               sigv4_result *out) {
  memset(out, 0, sizeof *out);
  if (!r->amz_date || strlen(r->amz_date) != 16) return -1;
  out->canonical_uri = sigv4_canonical_uri(r->path, r->rules);
  out->canonical_query = sigv4_canonical_query(r->query, r->nquery);
  out->canonical_headers = sigv4_canonical_headers(r->headers, r->nheaders);
  out->signed_headers = sigv4_signed_headers(r->headers, r->nheaders);
  out->scope = sigv4_scope(r->amz_date, r->region, r->service);
  if (!out->canonical_uri || !out->canonical_query || !out->canonical_headers ||
      !out->signed_headers || !out->scope)
    goto fail;
  out->canonical_request =
      sigv4_canonical_request(r->method, out->canonical_uri, out->canonical_query,
                              out->canonical_headers, out->signed_headers, r->payload_sha256);
  if (!out->canonical_request) goto fail;
  out->string_to_sign = sigv4_string_to_sign(r->amz_date, out->scope, out->canonical_request);
  if (!out->string_to_sign) goto fail;
  uint8_t key[32];
  if (sigv4_signing_key(secret, r->amz_date, r->region, r->service, key)) goto fail;
  int rc = sigv4_signature(key, out->string_to_sign, out->signature);
  OPENSSL_cleanse(key, sizeof key);
  if (rc) goto fail;
  out->authorization =
      sigv4_authorization(access_key, out->scope, out->signed_headers, out->signature);
  if (!out->authorization) goto fail;
  return 0;
fail:
  sigv4_result_free(out);
  return -1;
}
