/*
 * manifest.c -- md5sum-format manifest parser and writer (see manifest.h).
 */
#include "manifest.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dynbuf.h"
#include "lib/fileio.h"
#include "lib/limits.h"
#include "lib/safepath.h"

void mf_free(mf_list *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n; i++) free(m->e[i].path);
  free(m->e);
  m->e = NULL;
  m->n = 0;
}

/* Drops the empty and "." components of the relative path p in place
 * ("a//b/./c/" is "a/b/c", as a file system reads it), so that what is
 * left is what sp_check_rel accepts or a path that is refused. */
static void normalise(char *p) {
  char *o = p;
  const char *s = p;
  while (*s) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n && !(n == 1 && s[0] == '.')) {
      if (o != p) *o++ = '/';
      memmove(o, s, n);
      o += n;
    }
    if (!e) break;
    s = e + 1;
  }
  *o = 0;
}

/* A manifest path that could name something outside the root: absolute,
 * empty, or with a ".." component (sp_check_rel, after normalise). */
static int unsafe_path(char *p) {
  if (p[0] == '/') return 1;
  normalise(p);
  return sp_check_rel(p, PK_LIMIT_MANIFEST_PATH, NULL) != 0;
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const mf_entry *)a)->path, ((const mf_entry *)b)->path);
}

void mf_sort(mf_list *m) {
  if (m->n > 1) qsort(m->e, m->n, sizeof *m->e, cmp_entry);
}

long mf_find(const mf_list *m, const char *path) {
  size_t lo = 0, hi = m->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(m->e[mid].path, path);
    if (!c) return (long)mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

/* One line s[0..n) of a manifest (not empty, not a comment; wl names it
 * "FILE:LINE"): its digest in lower case into hex and its path, unescaped
 * and checked, into a new string *path. */
static int parse_line(const char *s, size_t n, const char *wl, char hex[33], char **path,
                      st_error *err) {
  *path = NULL;
  if (memchr(s, 0, n)) return st_error_set(err, ST_EFORMAT, wl, -1, "NUL byte in the line");
  int esc = 0;
  if (s[0] == '\\') { esc = 1; s++; n--; }
  if (n < 32)
    return st_error_set(err, ST_EFORMAT, wl, -1,
                        "expected \"<32 hex digits>  <path>\", got a line of %zu bytes", n);
  int ok = 1;
  for (int i = 0; i < 32; i++) {
    if (!isxdigit((unsigned char)s[i])) ok = 0;
    hex[i] = (char)tolower((unsigned char)s[i]);
  }
  hex[32] = 0;
  if (!ok) return st_error_set(err, ST_EFORMAT, wl, -1, "expected 32 hex digits at the start of the line");
  if (n < 35 || s[32] != ' ' || (s[33] != ' ' && s[33] != '*'))
    return st_error_set(err, ST_EFORMAT, wl, -1, "expected two spaces (or \" *\") and a path after the digest");
  const char *name = s + 34;
  size_t nl2 = n - 34;
  if (nl2 > PK_LIMIT_MANIFEST_PATH)
    return st_error_set(err, ST_E2BIG, wl, -1, "path of %zu bytes, the limit is %u", nl2,
                        (unsigned)PK_LIMIT_MANIFEST_PATH);
  char *p = malloc(nl2 + 1);
  if (!p) return st_error_set(err, ST_ENOMEM, wl, -1, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < nl2; i++) {
    if (esc && name[i] == '\\' && i + 1 < nl2) {
      char ch = name[++i];
      p[k++] = ch == 'n' ? '\n' : ch == 'r' ? '\r' : ch;
    } else {
      p[k++] = name[i];
    }
  }
  p[k] = 0;
  if (unsafe_path(p)) {
    int rc = st_error_set(err, ST_EUNSAFE, wl, -1, "path \"%.200s\" is absolute, empty or contains \"..\"", p);
    free(p);
    return rc;
  }
  *path = p;
  return 0;
}

/* Appends an entry (taking path, freed on failure); at most
 * PK_LIMIT_MANIFEST_ENTRIES of them. */
static int add_entry(mf_list *out, size_t *cap, const char *hex, char *path, size_t line,
                     const char *wl, st_error *err) {
  if (out->n == PK_LIMIT_MANIFEST_ENTRIES) {
    free(path);
    return st_error_set(err, ST_E2BIG, wl, -1, "more than %u entries", (unsigned)PK_LIMIT_MANIFEST_ENTRIES);
  }
  if (dyn_grow_array(&out->e, cap, out->n + 1, sizeof *out->e, PK_LIMIT_MANIFEST_ENTRIES)) {
    free(path);
    return st_error_set(err, ST_ENOMEM, wl, -1, "out of memory");
  }
  mf_entry *e = &out->e[out->n++];
  memcpy(e->hex, hex, 33);
  e->path = path;
  e->line = line;
  return 0;
}

/* No path is listed twice (the error names both lines). */
static int check_duplicates(const mf_list *m, const char *where, st_error *err) {
  if (m->n < 2) return 0;
  mf_entry *copy = malloc(m->n * sizeof *copy);
  if (!copy) return st_error_set(err, ST_ENOMEM, where, -1, "out of memory");
  memcpy(copy, m->e, m->n * sizeof *copy);
  qsort(copy, m->n, sizeof *copy, cmp_entry);
  int rc = 0;
  for (size_t i = 1; i < m->n; i++)
    if (!strcmp(copy[i].path, copy[i - 1].path)) {
      size_t a = copy[i].line < copy[i - 1].line ? copy[i].line : copy[i - 1].line;
      size_t b = copy[i].line < copy[i - 1].line ? copy[i - 1].line : copy[i].line;
      char wl[1100];
      snprintf(wl, sizeof wl, "%.1000s:%zu", where, b);
      rc = st_error_set(err, ST_EFORMAT, wl, -1, "\"%.200s\" is listed twice (also on line %zu)",
                        copy[i].path, a);
      break;
    }
  free(copy);
  return rc;
}

int mf_parse(const char *buf, size_t len, const char *where, mf_list *out, st_error *err) {
  out->e = NULL;
  out->n = 0;
  size_t cap = 0, line = 0;
  const char *p = buf, *end = buf + len;
  char wl[1100];
  int rc = 0;
  while (!rc && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    line++;
    snprintf(wl, sizeof wl, "%.1000s:%zu", where, line);
    size_t n = (size_t)(le - p);
    if (n && p[n - 1] == '\r') n--;
    const char *s = p;
    p = nl ? nl + 1 : end;
    if (n == 0 || s[0] == '#') continue;
    char hex[33], *path;
    rc = parse_line(s, n, wl, hex, &path, err);
    if (!rc) rc = add_entry(out, &cap, hex, path, line, wl, err);
  }
  if (!rc) rc = check_duplicates(out, where, err);
  if (rc) mf_free(out);
  return rc;
}

int mf_load(const char *path, mf_list *out, st_error *err) {
  out->e = NULL;
  out->n = 0;
  char *buf;
  size_t got;
  int rc = fio_read_all(path, PK_LIMIT_MANIFEST_BYTES, "PK_LIMIT_MANIFEST_BYTES", "the manifest", &buf,
                        &got, err);
  if (rc) return rc;
  rc = mf_parse(buf, got, path, out, err);
  free(buf);
  return rc;
}

int mf_write_line(FILE *f, const char *hex, const char *path) {
  /* '\r' too: a reader drops one at the end of a line (CRLF files) */
  int esc = strchr(path, '\\') || strchr(path, '\n') || strchr(path, '\r');
  if (!esc) return fprintf(f, "%s  %s\n", hex, path) < 0 ? -1 : 0;
  fputc('\\', f);
  fprintf(f, "%s  ", hex);
  for (const char *p = path; *p; p++) {
    if (*p == '\\') fputs("\\\\", f);
    else if (*p == '\n') fputs("\\n", f);
    else if (*p == '\r') fputs("\\r", f);
    else fputc(*p, f);
  }
  return fputc('\n', f) == EOF ? -1 : 0;
}
