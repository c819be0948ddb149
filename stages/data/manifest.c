/*
 * manifest.c -- md5sum-format manifest parser and writer (see manifest.h).
 */
#include "manifest.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/limits.h"

void mf_free(mf_list *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n; i++) free(m->e[i].path);
  free(m->e);
  m->e = NULL;
  m->n = 0;
}

static int unsafe_path(const char *p) {
  if (!*p || p[0] == '/') return 1;
  const char *s = p;
  while (*s) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 2 && s[0] == '.' && s[1] == '.') return 1;
    if (!e) break;
    s = e + 1;
  }
  return 0;
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

int mf_parse(const char *buf, size_t len, const char *where, mf_list *out, st_error *err) {
  out->e = NULL;
  out->n = 0;
  size_t cap = 0, line = 0;
  const char *p = buf, *end = buf + len;
  char wl[1100];
  int rc = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    line++;
    snprintf(wl, sizeof wl, "%.1000s:%zu", where, line);
    size_t n = (size_t)(le - p);
    if (n && p[n - 1] == '\r') n--;
    const char *s = p;
    p = nl ? nl + 1 : end;
    if (n == 0 || s[0] == '#') continue;
    if (memchr(s, 0, n)) { rc = st_error_set(err, ST_EFORMAT, wl, -1, "NUL byte in the line"); break; }
    int esc = 0;
    if (s[0] == '\\') { esc = 1; s++; n--; }
    if (n < 32) {
      rc = st_error_set(err, ST_EFORMAT, wl, -1,
                        "expected \"<32 hex digits>  <path>\", got a line of %zu bytes", n);
      break;
    }
    char hex[33];
    int ok = 1;
    for (int i = 0; i < 32; i++) {
      if (!isxdigit((unsigned char)s[i])) ok = 0;
      hex[i] = (char)tolower((unsigned char)s[i]);
    }
    hex[32] = 0;
    if (!ok) { rc = st_error_set(err, ST_EFORMAT, wl, -1, "expected 32 hex digits at the start of the line"); break; }
    if (n < 35 || s[32] != ' ' || (s[33] != ' ' && s[33] != '*')) {
      rc = st_error_set(err, ST_EFORMAT, wl, -1, "expected two spaces (or \" *\") and a path after the digest");
      break;
    }
    const char *name = s + 34;
    size_t nl2 = n - 34;
    if (nl2 > PK_LIMIT_MANIFEST_PATH) {
      rc = st_error_set(err, ST_E2BIG, wl, -1, "path of %zu bytes, the limit is %u", nl2,
                        (unsigned)PK_LIMIT_MANIFEST_PATH);
      break;
    }
    char *path = malloc(nl2 + 1);
    if (!path) { rc = st_error_set(err, ST_ENOMEM, wl, -1, "out of memory"); break; }
    size_t k = 0;
    for (size_t i = 0; i < nl2; i++) {
      if (esc && name[i] == '\\' && i + 1 < nl2) {
        char ch = name[++i];
        path[k++] = ch == 'n' ? '\n' : ch == 'r' ? '\r' : ch;
      } else {
        path[k++] = name[i];
      }
    }
    path[k] = 0;
    while (k > 2 && path[0] == '.' && path[1] == '/') memmove(path, path + 2, (k -= 2) + 1);
    if (unsafe_path(path)) {
      rc = st_error_set(err, ST_EUNSAFE, wl, -1,
                        "path \"%.200s\" is absolute, empty or contains \"..\"", path);
      free(path);
      break;
    }
    if (out->n == PK_LIMIT_MANIFEST_ENTRIES) {
      rc = st_error_set(err, ST_E2BIG, wl, -1, "more than %u entries",
                        (unsigned)PK_LIMIT_MANIFEST_ENTRIES);
      free(path);
      break;
    }
    if (out->n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      mf_entry *ne = realloc(out->e, nc * sizeof *ne);
      if (!ne) { free(path); rc = st_error_set(err, ST_ENOMEM, wl, -1, "out of memory"); break; }
      out->e = ne;
      cap = nc;
    }
    mf_entry *e = &out->e[out->n++];
    memcpy(e->hex, hex, 33);
    e->path = path;
    e->line = line;
  }
  if (!rc && out->n > 1) { /* duplicates */
    mf_entry *copy = malloc(out->n * sizeof *copy);
    if (!copy) rc = st_error_set(err, ST_ENOMEM, where, -1, "out of memory");
    else {
      memcpy(copy, out->e, out->n * sizeof *copy);
      qsort(copy, out->n, sizeof *copy, cmp_entry);
      for (size_t i = 1; i < out->n; i++)
        if (!strcmp(copy[i].path, copy[i - 1].path)) {
          size_t a = copy[i].line < copy[i - 1].line ? copy[i].line : copy[i - 1].line;
          size_t b = copy[i].line < copy[i - 1].line ? copy[i - 1].line : copy[i].line;
          snprintf(wl, sizeof wl, "%.1000s:%zu", where, b);
          rc = st_error_set(err, ST_EFORMAT, wl, -1, "\"%.200s\" is listed twice (also on line %zu)",
                            copy[i].path, a);
          break;
        }
      free(copy);
    }
  }
  if (rc) mf_free(out);
  return rc;
}

int mf_load(const char *path, mf_list *out, st_error *err) {
  out->e = NULL;
  out->n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return st_error_errno(err, errno, path, "cannot open the manifest");
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return st_error_set(err, ST_EINVAL, path, -1, "the manifest is not a regular file");
  }
  if ((unsigned long long)st.st_size > PK_LIMIT_MANIFEST_BYTES) {
    close(fd);
    return st_error_set(err, ST_E2BIG, path, -1, "manifest of %lld bytes, the limit is %u",
                        (long long)st.st_size, (unsigned)PK_LIMIT_MANIFEST_BYTES);
  }
  char *buf = malloc((size_t)st.st_size + 1);
  if (!buf) {
    close(fd);
    return st_error_set(err, ST_ENOMEM, path, -1, "out of memory");
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  close(fd);
  int rc = mf_parse(buf, got, path, out, err);
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
