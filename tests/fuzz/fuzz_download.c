/*
 * fuzz_download.c -- hostile answers to a resumed %download: the header
 * lines through dl__answer_line, then dl__check_answer, the checks that
 * keep a retry from splicing two files (stages/data/download.c).
 *
 * Input: a first line "FROM TOTAL" (the byte asked for, the first answer's
 * length, -1 unknown), a second and a third line with the first answer's
 * ETag and Last-Modified, then the header lines of the answer, each ending
 * in "\n" as curl hands them over. What is taken must be exactly the rest
 * of the same file: a 206 of bytes FROM-(T-1)/T with T the first answer's
 * length, a Content-Length of T - FROM when there is one and the same
 * ETag; anything refused says why; If-Range is never a weak ETag.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/download.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next line of [*p, end) (with its "\n" when there is one). */
static size_t next_line(const char **p, const char *end, const char **line) {
  const char *nl = memchr(*p, '\n', (size_t)(end - *p));
  size_t n = nl ? (size_t)(nl - *p) + 1 : (size_t)(end - *p);
  *line = *p;
  *p += n;
  return n;
}

static void copy_tag(char *out, const char *s, size_t n) {
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
  if (n >= DL_TAG_MAX) n = DL_TAG_MAX - 1;
  memcpy(out, s, n);
  out[n] = 0;
  out[strlen(out)] = 0; /* an embedded NUL ends it, as snprintf would */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data, *end = p + size, *line;
  size_t n = next_line(&p, end, &line);
  char head[64];
  snprintf(head, sizeof head, "%.*s", (int)(n < 63 ? n : 63), line);
  unsigned long long from = 0;
  long long total = -1;
  if (sscanf(head, "%llu %lld", &from, &total) < 1) return 0;
  if (total < -1) total = -1;
  dl_resource r;
  memset(&r, 0, sizeof r);
  r.total = total;
  n = next_line(&p, end, &line);
  copy_tag(r.etag, line, n);
  n = next_line(&p, end, &line);
  copy_tag(r.lastmod, line, n);

  const char *ir = dl__if_range(&r);
  if (ir == r.etag && !strncmp(ir, "W/", 2)) abort(); /* If-Range needs a strong ETag */

  dl_answer a;
  memset(&a, 0, sizeof a);
  a.cr_start = a.cr_end = a.cr_total = a.clen = -1;
  while (p < end) {
    n = next_line(&p, end, &line);
    char *copy = malloc(n ? n : 1); /* exactly n bytes: a read past the line is caught */
    if (!copy) return 0;
    memcpy(copy, line, n);
    dl__answer_line(&a, copy, n);
    free(copy);
  }
  if (strlen(a.etag) >= DL_TAG_MAX || strlen(a.lastmod) >= DL_TAG_MAX) abort();

  char why[600];
  int v = dl__check_answer(&a, from, &r, why, sizeof why);
  if (strlen(why) >= sizeof why) abort();
  if (v < DL_TAKE || v > DL_FAIL) abort();
  if ((v == DL_RESTART || v == DL_FAIL) && !why[0]) abort(); /* a refusal says why */
  if (v == DL_TAKE && !from && a.code == 206) abort();
  if (v == DL_TAKE && from) { /* exactly the rest of the same file */
    if (a.code != 206 || !a.has_range || a.cr_start < 0 || (unsigned long long)a.cr_start != from) abort();
    if (a.cr_total < 0 || a.cr_end != a.cr_total - 1 || a.cr_end < a.cr_start) abort();
    if (r.total >= 0 && a.cr_total != r.total) abort();
    if (a.clen >= 0 && a.clen != a.cr_end - a.cr_start + 1) abort();
    if (r.etag[0] && a.etag[0] && strcmp(r.etag, a.etag)) abort();
  }
  if (v == DL_WHOLE && (a.code != 200 || !from)) abort();
  return 0;
}
