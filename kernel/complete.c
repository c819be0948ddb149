/*
 * complete.c -- what the cursor is on (complete.h): completion of magic
 * names, --options and paths, and the magic to show for inspect.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h> /* environ */

#include "lib/stage.h"
#include "complete.h"
#include "utf8.h"

static int is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; }

/* Start of the logical line (backslash continuations joined) holding pos. */
static size_t logical_line_start(const char *code, size_t pos) {
  size_t ls = pos;
  while (ls > 0 && code[ls - 1] != '\n') ls--;
  while (ls > 0) { /* the previous physical line ends with a backslash? */
    size_t e = ls - 1; /* the '\n' */
    while (e > 0 && is_blank(code[e - 1])) e--;
    size_t k = 0;
    while (e > k && code[e - 1 - k] == '\\') k++;
    if (k % 2 == 0) break;
    ls = e - k; /* inside the previous line */
    while (ls > 0 && code[ls - 1] != '\n') ls--;
  }
  return ls;
}

/* The magic name of the logical line starting at ls: '%' and '?' stripped. */
static void line_magic(const char *code, size_t len, size_t ls, char *name, size_t cap) {
  while (ls < len && is_blank(code[ls])) ls++;
  while (ls < len && code[ls] == '%') ls++;
  size_t n = 0;
  while (ls < len && !is_blank(code[ls]) && code[ls] != '\n' && code[ls] != '?' && n + 1 < cap)
    name[n++] = code[ls++];
  name[n] = 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

#define COMPLETE_MAX 500

static void complete_paths(const char *tok, size_t tlen, json_t *out) {
  char *t = strndup(tok, tlen);
  if (!t) return;
  const char *slash = strrchr(t, '/');
  size_t dlen = slash ? (size_t)(slash - t) + 1 : 0;
  const char *base = t + dlen;
  char dir[4096];
  if (!dlen) snprintf(dir, sizeof dir, ".");
  else if (t[0] == '~' && (dlen == 2) && getenv("HOME"))
    snprintf(dir, sizeof dir, "%s/", getenv("HOME"));
  else if (t[0] == '~' && t[1] == '/' && getenv("HOME"))
    snprintf(dir, sizeof dir, "%s/%.*s", getenv("HOME"), (int)(dlen - 2), t + 2);
  else snprintf(dir, sizeof dir, "%.*s", (int)dlen, t);
  DIR *d = opendir(dir);
  if (!d) { free(t); return; }
  char *names[COMPLETE_MAX];
  size_t n = 0, blen = strlen(base);
  for (struct dirent *e = readdir(d); e && n < COMPLETE_MAX; e = readdir(d)) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (e->d_name[0] == '.' && base[0] != '.') continue;
    if (strncmp(e->d_name, base, blen) != 0) continue;
    int isdir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
      char full[8192];
      struct stat st;
      snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
      isdir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
    }
    size_t m = dlen + strlen(e->d_name) + 2;
    char *s = malloc(m);
    if (!s) break;
    snprintf(s, m, "%.*s%s%s", (int)dlen, t, e->d_name, isdir ? "/" : "");
    names[n++] = s;
  }
  closedir(d);
  qsort(names, n, sizeof names[0], cmp_str);
  for (size_t i = 0; i < n; i++) {
    json_array_append_new(out, utf8_json(names[i], strlen(names[i])));
    free(names[i]);
  }
  free(t);
}

static int var_char(char ch, int first) {
  return ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
         (!first && ch >= '0' && ch <= '9');
}

/* The '$' of a variable being typed right before pos ("$NA", "${NA", or a
 * bare "$"), within the token starting at ts; *brace when it is "${". -1
 * when the cursor is not on one (an escaped "\$" is not). */
static long var_at(const char *code, size_t ts, size_t pos, int *brace) {
  size_t n = pos;
  while (n > ts && var_char(code[n - 1], 0)) n--;
  if (n < pos && !var_char(code[n], 1)) return -1; /* a name starts with a letter or _ */
  *brace = n > ts && code[n - 1] == '{';
  size_t d = n - (size_t)*brace;
  if (d == ts || code[d - 1] != '$') return -1;
  d--;
  if (d > 0 && code[d - 1] == '\\') return -1;
  return (long)d;
}

static void add_var(json_t *out, const char *name, size_t nlen, int brace) {
  if (json_array_size(out) >= COMPLETE_MAX) return;
  char buf[300];
  if (nlen > 256) return;
  snprintf(buf, sizeof buf, "%s%.*s%s", brace ? "${" : "$", (int)nlen, name, brace ? "}" : "");
  for (size_t i = 0; i < json_array_size(out); i++)
    if (strcmp(json_string_value(json_array_get(out, i)), buf) == 0) return;
  json_array_append_new(out, json_string(buf));
}

static int cmp_json_str(const void *a, const void *b) {
  return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* Variables of sess, then the environment's names, starting with the
 * prefix; sorted. */
static void complete_vars(const ss_session *sess, const char *pre, size_t plen, int brace,
                          json_t *out) {
  for (const ss_var *v = sess->vars; v; v = v->next)
    if (strncmp(v->name, pre, plen) == 0) add_var(out, v->name, strlen(v->name), brace);
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    size_t nlen = eq ? (size_t)(eq - *e) : strlen(*e);
    int ok = nlen >= plen && strncmp(*e, pre, plen) == 0;
    for (size_t i = 0; ok && i < nlen; i++) ok = var_char((*e)[i], i == 0);
    if (ok) add_var(out, *e, nlen, brace);
  }
  size_t n = json_array_size(out);
  json_t **items = malloc((n ? n : 1) * sizeof *items);
  if (!items) return;
  for (size_t i = 0; i < n; i++) items[i] = json_incref(json_array_get(out, i));
  qsort(items, n, sizeof *items, cmp_json_str);
  json_array_clear(out);
  for (size_t i = 0; i < n; i++) json_array_append_new(out, items[i]);
  free(items);
}

json_t *complete_code(const char *code, size_t len, size_t pos, const ss_session *sess,
                      size_t *start, size_t *end) {
  json_t *m = json_array();
  if (!m) return NULL;
  if (pos > len) pos = len;
  size_t ts = pos;
  while (ts > 0 && !is_blank(code[ts - 1]) && code[ts - 1] != '\n' && code[ts - 1] != '"' &&
         code[ts - 1] != '\'')
    ts--;
  *start = ts;
  *end = pos;
  int brace = 0;
  long dollar = sess ? var_at(code, ts, pos, &brace) : -1;
  if (dollar >= 0) { /* a variable */
    size_t name = (size_t)dollar + 1 + (size_t)brace;
    *start = (size_t)dollar;
    complete_vars(sess, code + name, pos - name, brace, m);
    return m;
  }
  size_t ls = logical_line_start(code, pos);
  size_t fw = ls;
  while (fw < ts && is_blank(code[fw])) fw++;
  const char *tok = code + ts;
  size_t tlen = pos - ts;
  if (fw == ts) { /* the magic's name */
    size_t pct = 0;
    while (pct < tlen && tok[pct] == '%') pct++;
    if (pct == 0) pct = 1;
    if (pct > 2) pct = 2;
    const char *pre = tok;
    size_t plen = tlen;
    while (plen && *pre == '%') { pre++; plen--; }
    for (size_t i = 0; i < st_registry_count(); i++) {
      const st_stage *s = st_registry_at(i);
      if (strlen(s->name) >= plen && strncmp(s->name, pre, plen) == 0) {
        char buf[160];
        snprintf(buf, sizeof buf, "%.*s%s", (int)pct, "%%%%", s->name);
        json_array_append_new(m, json_string(buf));
      }
    }
    return m;
  }
  if (tlen && tok[0] == '-') { /* an option of the line's magic */
    char name[128];
    line_magic(code, len, ls, name, sizeof name);
    const st_stage *s = st_registry_find(name);
    const char *pre = tok;
    size_t plen = tlen;
    while (plen && *pre == '-') { pre++; plen--; }
    for (int i = 0; s && s->opts && s->opts[i].name; i++)
      if (strncmp(s->opts[i].name, pre, plen) == 0) {
        char buf[160];
        snprintf(buf, sizeof buf, "--%s", s->opts[i].name);
        json_array_append_new(m, json_string(buf));
      }
    return m;
  }
  complete_paths(tok, tlen, m);
  return m;
}

const st_stage *complete_inspect(const char *code, size_t len, size_t pos) {
  if (pos > len) pos = len;
  /* the word under the cursor when it names a magic, else the line's magic */
  size_t a = pos, b = pos;
  while (a > 0 && !is_blank(code[a - 1]) && code[a - 1] != '\n') a--;
  while (b < len && !is_blank(code[b]) && code[b] != '\n') b++;
  char word[128];
  size_t wa = a;
  while (wa < b && code[wa] == '%') wa++;
  size_t wl = b - wa;
  while (wl && code[wa + wl - 1] == '?') wl--;
  snprintf(word, sizeof word, "%.*s", (int)(wl < sizeof word ? wl : sizeof word - 1), code + wa);
  const st_stage *s = wl < sizeof word ? st_registry_find(word) : NULL;
  if (!s) {
    char name[128];
    line_magic(code, len, logical_line_start(code, pos), name, sizeof name);
    s = st_registry_find(name);
  }
  return s;
}
