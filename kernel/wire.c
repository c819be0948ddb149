/*
 * wire.c -- frames, signatures and headers of Jupyter messages.
 *
 * Verification runs on the received bytes, never on re-serialised JSON: the
 * signature length is checked first, then CRYPTO_memcmp compares in constant
 * time. Anything malformed is refused with a reason; the caller logs it and
 * keeps serving.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <uuid/uuid.h>

#include "lib/limits.h"
#include "wire.h"

static EVP_MAC *g_hmac;
static pthread_once_t g_hmac_once = PTHREAD_ONCE_INIT;

static void hmac_init(void) { g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL); }

int wire_sign(const wire_key *k, const wire_frame f[4], char *hex, size_t cap) {
  if (cap) hex[0] = 0;
  if (!k || !k->len) return 0;
  pthread_once(&g_hmac_once, hmac_init);
  if (!g_hmac) return -1;
  EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(g_hmac);
  if (!ctx) return -1;
  char digest[64];
  snprintf(digest, sizeof digest, "%s", k->digest && k->digest[0] ? k->digest : "SHA256");
  OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                          OSSL_PARAM_construct_end()};
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t maclen = 0;
  int ok = EVP_MAC_init(ctx, (const unsigned char *)k->key, k->len, params);
  for (int i = 0; ok && i < 4; i++)
    ok = EVP_MAC_update(ctx, (const unsigned char *)f[i].p, f[i].len);
  if (ok) ok = EVP_MAC_final(ctx, mac, &maclen, sizeof mac);
  EVP_MAC_CTX_free(ctx);
  if (!ok || cap < maclen * 2 + 1) return -1;
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < maclen; i++) {
    hex[2 * i] = digits[mac[i] >> 4];
    hex[2 * i + 1] = digits[mac[i] & 15];
  }
  hex[2 * maclen] = 0;
  return (int)(2 * maclen);
}

void wire_msg_free(wire_msg *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n_idents; i++) free(m->idents[i].p);
  free(m->idents);
  json_decref(m->header);
  json_decref(m->parent);
  json_decref(m->metadata);
  json_decref(m->content);
  memset(m, 0, sizeof *m);
}

static json_t *load_object(const wire_frame *f, const char *what, char *why, size_t cap) {
  json_error_t e;
  json_t *v = json_loadb((const char *)f->p, f->len, JSON_REJECT_DUPLICATES, &e);
  if (!v) {
    snprintf(why, cap, "%s is not valid JSON: %s (at byte %d)", what, e.text, e.position);
    return NULL;
  }
  if (!json_is_object(v)) {
    snprintf(why, cap, "%s is not a JSON object", what);
    json_decref(v);
    return NULL;
  }
  return v;
}

int wire_parse(const wire_frame *frames, size_t n, const wire_key *k, wire_msg *out,
               char *why, size_t cap) {
  memset(out, 0, sizeof *out);
  if (n > PK_LIMIT_MSG_FRAMES) {
    snprintf(why, cap, "%zu frames; the limit is %d", n, PK_LIMIT_MSG_FRAMES);
    return -1;
  }
  size_t total = 0, d = n;
  for (size_t i = 0; i < n; i++) {
    total += frames[i].len;
    if (d == n && frames[i].len == sizeof WIRE_DELIM - 1 &&
        memcmp(frames[i].p, WIRE_DELIM, sizeof WIRE_DELIM - 1) == 0)
      d = i;
  }
  int over = total > PK_LIMIT_MSG_BYTES;
  if (d == n) {
    snprintf(why, cap, "no \"" WIRE_DELIM "\" delimiter frame");
    return -1;
  }
  if (n - d - 1 < 5) {
    snprintf(why, cap, "%zu frames after the delimiter; expected signature, header, "
             "parent_header, metadata, content", n - d - 1);
    return -1;
  }
  const wire_frame *sig = &frames[d + 1], *parts = &frames[d + 2];
  if (k && k->len) {
    char hex[2 * 64 + 1];
    int hl = wire_sign(k, parts, hex, sizeof hex);
    if (hl < 0) {
      snprintf(why, cap, "cannot compute the HMAC (digest %s)", k->digest);
      return -1;
    }
    if (sig->len != (size_t)hl) {
      snprintf(why, cap, "signature is %zu bytes; expected %d", sig->len, hl);
      return -1;
    }
    if (CRYPTO_memcmp(sig->p, hex, (size_t)hl) != 0) {
      snprintf(why, cap, "signature does not match");
      return -1;
    }
  }
  static const char *const names[4] = {"header", "parent_header", "metadata", "content"};
  json_t *obj[4] = {NULL, NULL, NULL, NULL};
  int rc = 0;
  /* Over the limit: only the header and parent are read (when they are
   * small), so that the request can be answered. */
  for (int i = 0; over && i < 2; i++)
    if (parts[i].len > PK_LIMIT_CELL_BYTES) {
      snprintf(why, cap, "%zu bytes; the limit is %u (and the %s frame is %zu bytes)", total,
               (unsigned)PK_LIMIT_MSG_BYTES, names[i], parts[i].len);
      return -1;
    }
  for (int i = 0; i < 4 && !rc; i++) {
    if (over && i >= 2) obj[i] = json_object();
    else obj[i] = load_object(&parts[i], names[i], why, cap);
    if (!obj[i]) rc = -1;
  }
  json_t *mt = rc ? NULL : json_object_get(obj[0], "msg_type");
  json_t *mid = rc ? NULL : json_object_get(obj[0], "msg_id");
  if (!rc && (!json_is_string(mt) || !json_string_length(mt))) {
    snprintf(why, cap, "header has no msg_type string");
    rc = -1;
  }
  if (!rc && !json_is_string(mid)) {
    snprintf(why, cap, "header has no msg_id string");
    rc = -1;
  }
  if (!rc && d) {
    out->idents = calloc(d, sizeof *out->idents);
    if (!out->idents) {
      snprintf(why, cap, "out of memory");
      rc = -1;
    }
    for (size_t i = 0; !rc && i < d; i++) {
      out->idents[i].p = malloc(frames[i].len ? frames[i].len : 1);
      if (!out->idents[i].p) {
        snprintf(why, cap, "out of memory");
        rc = -1;
        break;
      }
      if (frames[i].len) memcpy(out->idents[i].p, frames[i].p, frames[i].len);
      out->idents[i].len = frames[i].len;
      out->n_idents = i + 1;
    }
  }
  out->header = obj[0];
  out->parent = obj[1];
  out->metadata = obj[2];
  out->content = obj[3];
  if (rc) {
    wire_msg_free(out);
    return -1;
  }
  out->msg_type = json_string_value(mt);
  out->msg_id = json_string_value(mid);
  if (over) {
    out->oversize = total;
    snprintf(why, cap, "%zu bytes; the limit is %u", total, (unsigned)PK_LIMIT_MSG_BYTES);
    return WIRE_OVERSIZE;
  }
  return 0;
}

void wire_new_id(char out[37]) {
  uuid_t u;
  uuid_generate_random(u);
  uuid_unparse_lower(u, out);
}

void wire_now_iso(char *out, size_t cap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, cap, "%s.%06ldZ", base, ts.tv_nsec / 1000);
}

json_t *wire_header_new(const char *msg_type, const char *session) {
  char id[37], date[48];
  wire_new_id(id);
  wire_now_iso(date, sizeof date);
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "msg_id", id, "session", session,
                   "username", "pipekernel", "date", date, "msg_type", msg_type, "version",
                   WIRE_PROTOCOL_VERSION);
}

void wire_frames_free(wire_buf *frames, size_t n) {
  if (!frames) return;
  for (size_t i = 0; i < n; i++) free(frames[i].p);
  free(frames);
}

static int dup_buf(wire_buf *b, const void *p, size_t len) {
  b->p = malloc(len ? len : 1);
  if (!b->p) return -1;
  if (len) memcpy(b->p, p, len);
  b->len = len;
  return 0;
}

int wire_build(const wire_buf *idents, size_t n_idents, json_t *header, json_t *parent,
               json_t *metadata, json_t *content, const wire_key *k, wire_buf **frames_out,
               size_t *n_out) {
  size_t n = n_idents + 6;
  wire_buf *f = calloc(n, sizeof *f);
  if (!f) return -1;
  int rc = 0;
  for (size_t i = 0; i < n_idents && !rc; i++) rc = dup_buf(&f[i], idents[i].p, idents[i].len);
  if (!rc) rc = dup_buf(&f[n_idents], WIRE_DELIM, sizeof WIRE_DELIM - 1);
  json_t *parts[4] = {header, parent, metadata, content};
  for (int i = 0; i < 4 && !rc; i++) {
    json_t *empty = NULL;
    json_t *v = parts[i];
    if (!v) v = empty = json_object();
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(empty);
    if (!s) { rc = -1; break; }
    f[n_idents + 2 + i].p = (unsigned char *)s;
    f[n_idents + 2 + i].len = strlen(s);
  }
  if (!rc) {
    wire_frame sf[4];
    for (int i = 0; i < 4; i++) sf[i] = (wire_frame){f[n_idents + 2 + i].p, f[n_idents + 2 + i].len};
    char hex[2 * 64 + 1];
    int hl = wire_sign(k, sf, hex, sizeof hex);
    if (hl < 0) rc = -1;
    else rc = dup_buf(&f[n_idents + 1], hex, (size_t)hl);
  }
  if (rc) {
    wire_frames_free(f, n);
    return -1;
  }
  *frames_out = f;
  *n_out = n;
  return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static long long days_from_civil(long long y, unsigned m, unsigned d) {
  y -= m <= 2;
  long long era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned mp = m > 2 ? m - 3 : m + 9; /* months from March */
  unsigned doy = (153 * mp + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (long long)doe - 719468;
}

/* n decimal digits at s into *v; returns 0 or -1. */
static int digits(const char *s, int n, unsigned *v) {
  *v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    *v = *v * 10 + (unsigned)(s[i] - '0');
  }
  return 0;
}

int wire_date_us(const char *s, long long *us) {
  unsigned y, mo, d, h, mi, sec;
  if (!s || strlen(s) < 19 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
      s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != ' ') ||
      digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
      digits(s + 17, 2, &sec))
    return -1;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return -1;
  const char *p = s + 19;
  long long frac = 0;
  if (*p == '.') {
    int n = 0;
    for (p++; *p >= '0' && *p <= '9'; p++, n++)
      if (n < 6) frac = frac * 10 + (*p - '0');
    if (n == 0) return -1;
    for (; n < 6; n++) frac *= 10;
  }
  long long off = 0; /* seconds east of UTC */
  if (*p == 'Z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    unsigned oh, om;
    size_t rest = strlen(p);
    int colon = rest >= 4 && p[3] == ':';
    if (rest < (size_t)(5 + colon) || digits(p + 1, 2, &oh) || digits(p + 3 + colon, 2, &om) || oh > 23 || om > 59) return -1;
    off = (*p == '-' ? -1 : 1) * (long long)(oh * 3600 + om * 60);
    p += 5 + colon;
  }
  if (*p) return -1;
  long long t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
  *us = t * 1000000 + frac;
  return 0;
}
