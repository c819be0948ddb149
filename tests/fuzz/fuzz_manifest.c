/*
 * fuzz_manifest.c -- hostile md5sum manifests through mf_parse (the parser
 * %verify and %download --verify use). What it accepts must be safe
 * (relative, no "..", lower-case digests, line numbers in range), findable
 * after mf_sort, and must survive mf_write_line: writing the entries and
 * parsing them again gives the same list (or, when escaping made a path
 * longer than PK_LIMIT_MANIFEST_PATH, a LimitError). Every path is one
 * sp_check_rel accepts (what %verify walks below its root), and an error
 * shows no byte a terminal would act on (lib/escape.h). The same input
 * through esc_text: nothing left to escape, escaping again changes
 * nothing, and text with nothing to escape is shown as it is.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/manifest.h"
#include "lib/escape.h"
#include "lib/limits.h"
#include "lib/safepath.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_entry(const mf_entry *e, size_t size) {
  if (strlen(e->hex) != 32 || strspn(e->hex, "0123456789abcdef") != 32) abort();
  const char *p = e->path;
  if (!*p || p[0] == '/' || strlen(p) > PK_LIMIT_MANIFEST_PATH) abort();
  for (const char *s = p;;) { /* no ".." component */
    const char *sl = strchr(s, '/');
    size_t n = sl ? (size_t)(sl - s) : strlen(s);
    if (n == 2 && s[0] == '.' && s[1] == '.') abort();
    if (!sl) break;
    s = sl + 1;
  }
  if (e->line < 1 || e->line > size + 1) abort();
  if (sp_check_rel(p, PK_LIMIT_MANIFEST_PATH, NULL)) abort();
}

static void check_escape(const uint8_t *data, size_t size) {
  size_t cap = 4 * size + 1;
  char *out = malloc(cap), *again = malloc(cap);
  if (!out || !again) goto done;
  size_t n = esc_text(out, cap, (const char *)data, size);
  if (n != strlen(out) || esc_needed(out, n)) abort();
  if (esc_text(again, cap, out, n) != n || memcmp(again, out, n + 1)) abort();
  if (!esc_needed((const char *)data, size) && !memchr(data, 0, size) && (n != size || memcmp(out, data, size)))
    abort();
done:
  free(out);
  free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  st_error err;
  st_error_clear(&err);
  mf_list m;
  check_escape(data, size);
  if (mf_parse((const char *)data, size, "MANIFEST.md5", &m, &err)) {
    if (!err.code || m.n || m.e) abort(); /* a failure says why and keeps nothing */
    if (esc_needed(err.where, strlen(err.where)) || esc_needed(err.text, strlen(err.text))) abort();
    return 0;
  }
  for (size_t i = 0; i < m.n; i++) check_entry(&m.e[i], size);

  /* write it back and read it again */
  char *text = NULL;
  size_t tlen = 0;
  FILE *f = open_memstream(&text, &tlen);
  if (!f) {
    mf_free(&m);
    return 0;
  }
  for (size_t i = 0; i < m.n; i++)
    if (mf_write_line(f, m.e[i].hex, m.e[i].path)) abort();
  if (fclose(f)) abort();
  mf_list again;
  st_error_clear(&err);
  if (mf_parse(text, tlen, "again", &again, &err)) {
    if (err.code != ST_E2BIG) abort();
  } else {
    if (again.n != m.n) abort();
    for (size_t i = 0; i < m.n; i++)
      if (strcmp(again.e[i].hex, m.e[i].hex) || strcmp(again.e[i].path, m.e[i].path) ||
          again.e[i].line != i + 1)
        abort();
    mf_free(&again);
  }
  free(text);

  mf_sort(&m);
  for (size_t i = 0; i < m.n; i++) {
    if (i && strcmp(m.e[i - 1].path, m.e[i].path) >= 0) abort(); /* sorted, no duplicates */
    if (mf_find(&m, m.e[i].path) != (long)i) abort();
  }
  if (m.n && mf_find(&m, "") != -1) abort();
  mf_free(&m);
  return 0;
}
