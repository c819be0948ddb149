/*
 * multipart.c -- multipart uploads: Create, Complete (with the ETag check:
 * the md5 of the part md5s, "-N"), Abort, and ListMultipartUploads to clean
 * up what an interrupted earlier run left.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "s3_int.h"

void s3__multipart_etag(const up_obj *o, char *out, size_t cap) {
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  uint8_t d[16];
  unsigned int dl = 0;
  EVP_DigestInit_ex(m, EVP_md5(), NULL);
  EVP_DigestUpdate(m, o->pmd5, (size_t)o->nparts * 16);
  EVP_DigestFinal_ex(m, d, &dl);
  EVP_MD_CTX_free(m);
  char h[33];
  s3__hex16(d, h);
  snprintf(out, cap, "%s-%d", h, o->nparts);
}

static void upload_id_end(void *ud, const char *parent, const char *name, const char *text) {
  if (strcmp(parent, "InitiateMultipartUploadResult") == 0 && strcmp(name, "UploadId") == 0)
    snprintf((char *)ud, 1024, "%s", text);
}

int s3__upload_id_doc(const char *body, size_t len, char *id, const char *where,
                      st_error *err) {
  char root[64];
  id[0] = 0;
  int rc = s3__xml_parse(body, len, upload_id_end, id, root, sizeof root, where, err);
  if (!rc && !id[0])
    rc = st_error_set(err, ST_EFORMAT, where, -1,
                      "CreateMultipartUpload answered without an UploadId");
  return rc;
}

static void mpu_end(void *ud, const char *parent, const char *name, const char *text) {
  s3_mpu_list *m = ud;
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

int s3__mpu_page(const char *body, size_t len, s3_mpu_list *m, const char *where,
                 st_error *err) {
  m->truncated = 0;
  m->next_key[0] = m->next_id[0] = 0;
  int rc = s3__xml_parse(body, len, mpu_end, m, NULL, 0, where, err);
  if (!rc && m->oom) rc = st_error_set(err, ST_ENOMEM, where, -1, NULL);
  return rc;
}

void s3__mpu_free(s3_mpu_list *m) {
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

int s3__abort_stale(upload *u, const char *prefix, st_error *err) {
  s3_mpu_list m;
  memset(&m, 0, sizeof m);
  s3_resp r;
  s3__resp_init(&r);
  char where[1200];
  s3__where(&u->cn, prefix, where, sizeof where);
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
    rc = s3__call(&u->cn, &rq, &r, "ListMultipartUploads", PK_LIMIT_S3_ATTEMPTS, 0, err);
    if (!rc) rc = s3__mpu_page(r.body.p, r.body.len, &m, where, err);
    snprintf(km, sizeof km, "%s", m.next_key);
    snprintf(im, sizeof im, "%s", m.next_id);
  } while (!rc && m.truncated && km[0] && ++pages < 1000);
  s3__resp_free(&r);
  size_t aborted = 0;
  for (size_t i = 0; i < m.n && !rc; i++) {
    /* u->objs is in key order for a tree, one object for a file */
    up_obj *o = bsearch(m.keys[i], u->objs, u->nobj, sizeof *u->objs, cmp_obj_key);
    if (!o || o->state != OBJ_PENDING) continue;
    s3_req rq = {.method = "DELETE", .key = o->key, .payload_sha256 = SIGV4_EMPTY_SHA256};
    rq.query[rq.nquery++] = (sigv4_kv){"uploadId", m.ids[i]};
    int k = s3__call(&u->cn, &rq, &r, "AbortMultipartUpload", PK_LIMIT_S3_ATTEMPTS, 1, err);
    s3__resp_free(&r);
    if (k < 0) rc = k;
    else aborted++;
  }
  s3__mpu_free(&m);
  if (!rc && aborted)
    st_eprintf(u->c, "upload: aborted %zu unfinished multipart upload%s of an earlier run\n",
               aborted, aborted == 1 ? "" : "s");
  return rc;
}

int s3__create_mpu(upload *u, up_obj *o, st_error *err) {
  s3_resp r;
  s3__resp_init(&r);
  s3_req rq = {.method = "POST", .key = o->key, .payload_sha256 = SIGV4_EMPTY_SHA256};
  rq.query[rq.nquery++] = (sigv4_kv){"uploads", ""};
  int rc = s3__call(&u->cn, &rq, &r, "CreateMultipartUpload", PK_LIMIT_S3_ATTEMPTS, 0, err);
  if (!rc) {
    char id[1024];
    char where[1200];
    s3__where(&u->cn, o->key, where, sizeof where);
    rc = s3__upload_id_doc(r.body.p, r.body.len, id, where, err);
    if (!rc) o->upload_id = strdup(id);
    if (!rc && !o->upload_id) rc = st_error_set(err, ST_ENOMEM, where, -1, NULL);
    if (!rc) {
      o->pmd5 = calloc((size_t)o->nparts, 16);
      if (!o->pmd5) rc = st_error_set(err, ST_ENOMEM, where, -1, NULL);
      o->parts_left = o->nparts;
    }
  }
  s3__resp_free(&r);
  return rc;
}

static void complete_end(void *ud, const char *parent, const char *name, const char *text) {
  if (strcmp(parent, "CompleteMultipartUploadResult") == 0 && strcmp(name, "ETag") == 0)
    snprintf((char *)ud, 128, "%s", text);
}

int s3__complete_doc(const char *body, size_t len, char *etag, const char *where,
                     st_error *err) {
  char root[64] = "";
  etag[0] = 0;
  int rc = s3__xml_parse(body, len, complete_end, etag, root, sizeof root, where, err);
  return !rc && strcmp(root, "Error") == 0 ? 1 : rc;
}

int s3__head_etag(upload *u, const char *key, char *out, size_t cap, st_error *err) {
  s3_resp r;
  s3__resp_init(&r);
  s3_req rq = {.method = "HEAD", .key = key, .payload_sha256 = SIGV4_EMPTY_SHA256};
  int rc = s3__call(&u->cn, &rq, &r, "HeadObject", PK_LIMIT_S3_ATTEMPTS, 0, err);
  if (!rc) s3__unquote(r.etag, out, cap);
  s3__resp_free(&r);
  return rc;
}

int s3__complete_mpu(upload *u, up_obj *o, st_error *err) {
  dynbuf x = DYN_INIT(1u << 20); /* at most 10,000 parts of about 80 bytes */
  dyn_puts(&x, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
  for (int p = 0; p < o->nparts; p++) {
    char h[33], line[128];
    s3__hex16(o->pmd5[p], h);
    int n = snprintf(line, sizeof line, "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>",
                     p + 1, h);
    dyn_add(&x, line, (size_t)n);
  }
  dyn_puts(&x, "</CompleteMultipartUpload>");
  char where[1200];
  s3__where(&u->cn, o->key, where, sizeof where);
  if (x.err) {
    int code = x.err;
    dyn_free(&x);
    return st_error_set(err, code, where, -1, NULL);
  }
  char sha[65];
  sigv4_sha256_hex(x.p, x.len, sha);
  s3_resp r;
  s3__resp_init(&r);
  s3_req rq = {.method = "POST", .key = o->key, .payload_sha256 = sha, .body = x.p,
               .body_len = x.len};
  rq.query[rq.nquery++] = (sigv4_kv){"uploadId", o->upload_id};
  int rc;
  char etag[128];
  for (int attempt = 1;; attempt++) {
    etag[0] = 0;
    rc = s3__call(&u->cn, &rq, &r, "CompleteMultipartUpload", PK_LIMIT_S3_ATTEMPTS, 0, err);
    if (!rc) rc = s3__complete_doc(r.body.p, r.body.len, etag, where, err);
    if (rc != 1) break;
    /* S3 may answer 200 and then an <Error> document: retried like a 5xx */
    if (attempt >= PK_LIMIT_S3_ATTEMPTS || st_cancelled(u->c)) {
      rc = s3__resp_error(&u->cn, o->key, "CompleteMultipartUpload", &r, attempt, err);
      break;
    }
    double delay = s3__backoff(attempt);
    s3__say_retry(&u->cn, o->key, "CompleteMultipartUpload", &r, attempt, delay);
    if (s3__nap(u->cn.ctx, delay)) {
      rc = s3__resp_error(&u->cn, o->key, "CompleteMultipartUpload", &r, attempt, err);
      break;
    }
  }
  s3__resp_free(&r);
  dyn_free(&x);
  if (rc) return rc;
  free(o->upload_id); /* completed: nothing to abort any more */
  o->upload_id = NULL;
  s3__multipart_etag(o, o->expect, sizeof o->expect);
  if (etag[0]) s3__unquote(etag, o->etag, sizeof o->etag);
  if (!o->etag[0]) { /* RGW answers without one: ask */
    rc = s3__head_etag(u, o->key, o->etag, sizeof o->etag, err);
    if (rc) return rc;
  }
  if (strcmp(o->etag, o->expect) != 0)
    return st_error_set(err, ST_ECHECKSUM, where, -1,
                        "ETag after upload is %s, expected %s (md5 of the %d part md5s)",
                        o->etag, o->expect, o->nparts);
  o->state = OBJ_UPLOADED;
  return 0;
}

void s3__abort_open(upload *u, st_error *err) {
  char failed[600] = "";
  size_t fl = 0;
  for (size_t i = 0; i < u->nobj; i++) {
    up_obj *o = &u->objs[i];
    if (!o->upload_id) continue;
    s3_resp r;
    s3__resp_init(&r);
    s3_req rq = {.method = "DELETE", .key = o->key, .payload_sha256 = SIGV4_EMPTY_SHA256};
    rq.query[rq.nquery++] = (sigv4_kv){"uploadId", o->upload_id};
    st_error e;
    st_error_clear(&e);
    st_ctx *saved = u->cn.ctx;
    u->cn.ctx = NULL; /* the abort runs even after an interrupt */
    u->cn.deadline_s = 15;
    int rc = s3__call(&u->cn, &rq, &r, "AbortMultipartUpload", 3, 1, &e);
    u->cn.deadline_s = 0;
    u->cn.ctx = saved;
    if (rc < 0 && fl < sizeof failed - 1)
      fl += (size_t)snprintf(failed + fl, sizeof failed - fl, "%s%s", fl ? ", " : "", o->key);
    s3__resp_free(&r);
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
