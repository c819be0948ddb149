/*
 * xml.c -- S3's XML answers, read with expat: one walker that calls back at
 * the end of every element, the <Error> document, and every response parser
 * of the room on one body (s3__parse_responses, for fuzzing and tests) or
 * one of them by the request it answers (s3__parse_response, for the case
 * folders of tests/data/s3xml).
 */
#include <stdio.h>
#include <string.h>

#include <expat.h>

#include "s3_int.h"

typedef struct {
  XML_Parser p;
  int depth;
  char names[16][64];
  dynbuf text;      /* of the element being read, capped at 64 KiB */
  s3__xml_end_fn fn;
  void *ud;
  char root[64];
} xml_walk;

static void XMLCALL xw_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
  (void)attrs;
  xml_walk *w = ud;
  if (w->depth == 0) snprintf(w->root, sizeof w->root, "%s", name);
  if (w->depth < 16) snprintf(w->names[w->depth], 64, "%s", name);
  w->depth++;
  dyn_reset(&w->text);
}

static void XMLCALL xw_end(void *ud, const XML_Char *name) {
  xml_walk *w = ud;
  w->depth--;
  const char *parent = w->depth > 0 && w->depth <= 16 ? w->names[w->depth - 1] : "";
  w->fn(w->ud, parent, name, w->text.p ? w->text.p : "");
  dyn_reset(&w->text);
}

static void XMLCALL xw_text(void *ud, const XML_Char *s, int len) {
  xml_walk *w = ud;
  /* longer text is cut (no S3 field is that long); out of memory stops */
  if (dyn_add(&w->text, s, (size_t)len) == ST_ENOMEM) XML_StopParser(w->p, 0);
}

int s3__xml_parse(const char *body, size_t len, s3__xml_end_fn fn, void *ud, char *root,
                  size_t rootcap, const char *where, st_error *err) {
  xml_walk w;
  memset(&w, 0, sizeof w);
  dyn_init(&w.text, 64u << 10);
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
  dyn_free(&w.text);
  return rc;
}

static void err_end(void *ud, const char *parent, const char *name, const char *text) {
  s3_err_xml *e = ud;
  if (strcmp(parent, "Error") != 0) return;
  if (strcmp(name, "Code") == 0) snprintf(e->code, sizeof e->code, "%s", text);
  else if (strcmp(name, "Message") == 0) snprintf(e->message, sizeof e->message, "%s", text);
  else if (strcmp(name, "RequestId") == 0) snprintf(e->request_id, sizeof e->request_id, "%s", text);
}

void s3__err_doc(const char *body, size_t len, s3_err_xml *e) {
  memset(e, 0, sizeof *e);
  if (!len) return;
  st_error ignore;
  st_error_clear(&ignore);
  s3__xml_parse(body, len, err_end, e, NULL, 0, "", &ignore);
}

int s3__parse_responses(const char *body, size_t len) {
  const char *where = "s3://fuzz/";
  int accepted = 0, bad = 0;
  st_error err;

  s3_err_xml e;
  s3__err_doc(body, len, &e);
  accepted += e.code[0] != 0;

  s3_listing ls;
  memset(&ls, 0, sizeof ls);
  st_error_clear(&err);
  int rc = s3__list_page(body, len, &ls, where, &err);
  if (!rc && ls.truncated) { /* the same answer again: a second page */
    size_t n1 = ls.n;
    rc = s3__list_page(body, len, &ls, where, &err);
    if (!rc && ls.n != 2 * n1) bad = 1;
  }
  if (rc && !err.code) bad = 1;
  if (!rc) {
    accepted++;
    for (size_t i = 0; i < ls.n; i++)
      if (!ls.items[i].key) bad = 1;
    if (ls.truncated && !ls.token[0]) bad = 1;
  }
  s3__list_free(&ls);

  s3_mpu_list m;
  memset(&m, 0, sizeof m);
  st_error_clear(&err);
  rc = s3__mpu_page(body, len, &m, where, &err);
  if (rc && !err.code) bad = 1;
  if (!rc) {
    accepted++;
    for (size_t i = 0; i < m.n; i++)
      if (!m.keys[i][0] || !m.ids[i][0]) bad = 1;
  }
  s3__mpu_free(&m);

  char id[1024];
  st_error_clear(&err);
  rc = s3__upload_id_doc(body, len, id, where, &err);
  if (rc && !err.code) bad = 1;
  if (!rc) accepted += id[0] != 0;

  char etag[128];
  st_error_clear(&err);
  rc = s3__complete_doc(body, len, etag, where, &err);
  if (rc < 0 && !err.code) bad = 1;
  if (rc == 0) accepted++;
  return bad ? -1 : accepted;
}

int s3__parse_response(const char *request, const char *body, size_t len, const char *where,
                       st_error *err) {
  int rc;
  if (strcmp(request, "ListObjectsV2") == 0) {
    s3_listing ls;
    memset(&ls, 0, sizeof ls);
    rc = s3__list_page(body, len, &ls, where, err);
    s3__list_free(&ls);
  } else if (strcmp(request, "ListMultipartUploads") == 0) {
    s3_mpu_list m;
    memset(&m, 0, sizeof m);
    rc = s3__mpu_page(body, len, &m, where, err);
    s3__mpu_free(&m);
  } else if (strcmp(request, "CreateMultipartUpload") == 0) {
    char id[1024];
    rc = s3__upload_id_doc(body, len, id, where, err);
  } else if (strcmp(request, "CompleteMultipartUpload") == 0) {
    char etag[128];
    rc = s3__complete_doc(body, len, etag, where, err);
  } else {
    rc = st_error_set(err, ST_EINVAL, where, -1, "no parser for the answer to %s", request);
  }
  return rc;
}

