/*
 * list.c -- ListObjectsV2 (every page, bounded) and %s3ls.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/escape.h"
#include "lib/table.h"
#include "s3_int.h"

const st_option s3_ls_opts[] = {
    {"endpoint", 1, "URL", "S3 endpoint (as for %upload)"},
    {"region", 1, "R", "region"},
    {"profile", 1, "P", "profile"},
    {"path-style", 0, NULL, "path-style addressing"},
    {"virtual-hosted", 0, NULL, "virtual-hosted addressing"},
    {"cacert", 1, "FILE", "CA bundle for a private TLS certificate authority"},
    {"max", 1, "N", "rows to show (default 1000); all keys are counted"},
    {NULL, 0, NULL, NULL}};

static void list_end(void *ud, const char *parent, const char *name, const char *text) {
  s3_listing *s = ud;
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
    } else if (strcmp(name, "EncodingType") == 0) {
      s->url_encoded = strcmp(text, "url") == 0;
    } else if (strcmp(name, "IsTruncated") == 0) {
      s->truncated = strcmp(text, "true") == 0;
    } else if (strcmp(name, "NextContinuationToken") == 0) {
      snprintf(s->token, sizeof s->token, "%s", text);
    }
  }
}

void s3__list_free(s3_listing *s) {
  for (size_t i = 0; i < s->n; i++) free(s->items[i].key);
  free(s->items);
  free(s->cur.key);
  memset(s, 0, sizeof *s);
}

/* A key of a page listed with encoding-type=url, decoded in place as S3
 * encodes it (form encoding: '+' is a space, a '+' of the key is %2B). XML
 * 1.0 cannot carry most control bytes, so this is how a key with an ESC
 * reaches us; a key that decodes to a NUL or has a broken %XX is refused. */
static int url_decode_key(char **key, const char *where, st_error *err) {
  char *k = *key;
  size_t n = strlen(k);
  for (size_t i = 0; i < n; i++) {
    if (k[i] == '+') k[i] = ' ';
    if (k[i] == '%' && (i + 2 >= n || !isxdigit((unsigned char)k[i + 1]) ||
                        !isxdigit((unsigned char)k[i + 2])))
      return st_error_set(err, ST_EFORMAT, where, -1,
                          "a URL-encoded key of the listing has a broken escape at byte %zu", i);
  }
  int dlen = 0;
  char *d = curl_easy_unescape(NULL, k, (int)n, &dlen);
  if (!d) return st_error_set(err, ST_ENOMEM, where, -1, "out of memory listing");
  int has_nul = memchr(d, 0, (size_t)dlen) != NULL;
  if (!has_nul) {
    char *copy = strdup(d);
    if (!copy) {
      curl_free(d);
      return st_error_set(err, ST_ENOMEM, where, -1, "out of memory listing");
    }
    free(k);
    *key = copy;
  }
  curl_free(d);
  if (has_nul)
    return st_error_set(err, ST_EFORMAT, where, -1, "a key of the listing decodes to a NUL byte");
  return 0;
}

int s3__list_page(const char *body, size_t len, s3_listing *out, const char *where,
                  st_error *err) {
  out->truncated = 0;
  out->url_encoded = 0;
  out->token[0] = 0;
  size_t first = out->n;
  char root[64];
  int rc = s3__xml_parse(body, len, list_end, out, root, sizeof root, where, err);
  if (rc) return rc;
  if (out->oom) return st_error_set(err, ST_ENOMEM, where, -1, "out of memory listing");
  for (size_t i = first; out->url_encoded && i < out->n && !rc; i++)
    rc = url_decode_key(&out->items[i].key, where, err);
  if (rc) return rc;
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

int s3__list(s3_conn *cn, const char *prefix, s3_listing *out, st_error *err) {
  memset(out, 0, sizeof *out);
  s3_resp r;
  s3__resp_init(&r);
  int rc = 0;
  char where[1200];
  s3__where(cn, prefix, where, sizeof where);
  int empty_pages = 0; /* truncated pages in a row that carried no key */
  for (;;) {
    char token[1024];
    snprintf(token, sizeof token, "%s", out->token);
    size_t before = out->n;
    s3_req rq = {.method = "GET", .payload_sha256 = SIGV4_EMPTY_SHA256};
    rq.query[rq.nquery++] = (sigv4_kv){"encoding-type", "url"};
    rq.query[rq.nquery++] = (sigv4_kv){"list-type", "2"};
    rq.query[rq.nquery++] = (sigv4_kv){"prefix", prefix};
    if (token[0]) rq.query[rq.nquery++] = (sigv4_kv){"continuation-token", token};
    rc = s3__call(cn, &rq, &r, "ListObjectsV2", PK_LIMIT_S3_ATTEMPTS, 0, err);
    if (rc) break;
    rc = s3__list_page(r.body.p, r.body.len, out, where, err);
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
  s3__resp_free(&r);
  if (rc) s3__list_free(out);
  return rc;
}

int s3_ls(st_ctx *c, const st_args *a, st_error *err) {
  char bucket[64], prefix[PK_LIMIT_S3_KEY_BYTES + 1];
  int rc = s3_parse_url(a->pos[0], bucket, sizeof bucket, prefix, sizeof prefix, err);
  if (rc) return rc;
  long long max;
  rc = st_arg_int(a, "max", 1000, 0, 10000000, &max, err);
  if (rc) return rc;
  s3_conn cn;
  rc = s3__conn_open(&cn, c, a, bucket, err);
  if (rc) {
    s3__conn_close(&cn);
    return rc;
  }
  double t0 = st_now();
  s3_listing ls;
  rc = s3__list(&cn, prefix, &ls, err);
  s3__conn_close(&cn);
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
    s3__unquote(ls.items[i].etag, etag, sizeof etag);
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
  esc_buf ep;
  st_printf(c, "s3ls: %zu objects, %s under s3://%s/%s (%.2f s)\n", ls.n, sz, bucket, esc_name(&ep, prefix),
            st_now() - t0);
  s3__list_free(&ls);
  return 0;
}
