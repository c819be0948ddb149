/*
 * magic.c -- the magic language's parser and line runner.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dynbuf.h"
#include "lib/limits.h"
#include "magic.h"

static int is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; }

void mg_cell_free(mg_cell *cell) {
  for (size_t i = 0; i < cell->n; i++) {
    free(cell->lines[i].text);
    free(cell->lines[i].body);
  }
  free(cell->lines);
  cell->lines = NULL;
  cell->n = 0;
}

void mg_line_name(const char *text, char *buf, size_t cap) {
  size_t i = 0;
  while (text[i] && !is_blank(text[i]) && text[i] != '\n' && i + 1 < cap) {
    buf[i] = text[i];
    i++;
  }
  buf[i] = 0;
}

/* Count trailing backslashes of [s, s+len). */
static size_t trailing_bs(const char *s, size_t len) {
  size_t k = 0;
  while (len > k && is_blank(s[len - 1 - k])) len--;
  while (k < len && s[len - 1 - k] == '\\') k++;
  return k;
}

static int push_line(mg_cell *cell, size_t *cap, int lineno, const char *text,
                     size_t tlen, st_error *err) {
  /* a line takes at least 2 bytes of the cell ("%x" or "\n") */
  int rc = dyn_grow_array(&cell->lines, cap, cell->n + 1, sizeof *cell->lines,
                          PK_LIMIT_CELL_BYTES / 2 + 1);
  if (rc) return st_error_set(err, rc, NULL, -1, NULL);
  mg_line *l = &cell->lines[cell->n];
  memset(l, 0, sizeof *l);
  l->lineno = lineno;
  l->text = malloc(tlen + 1);
  if (!l->text) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
  memcpy(l->text, text, tlen);
  l->text[tlen] = 0;
  cell->n++;
  return 0;
}

int mg_cell_parse(const char *code, size_t len, mg_cell *cell, st_error *err) {
  memset(cell, 0, sizeof *cell);
  if (len > PK_LIMIT_CELL_BYTES)
    return st_error_set(err, ST_E2BIG, "cell", -1,
                        "cell is %zu bytes; the limit is %u", len,
                        (unsigned)PK_LIMIT_CELL_BYTES);
  size_t cap = 0, pos = 0;
  int lineno = 0;
  /* one logical line, continuations joined: never longer than the cell */
  dynbuf line = DYN_INIT(PK_LIMIT_CELL_BYTES);
  int rc = 0;
  while (pos < len && !rc) {
    /* gather one logical line */
    int start_line = lineno + 1;
    dyn_reset(&line);
    for (;;) {
      const char *s = code + pos;
      const char *nl = memchr(s, '\n', len - pos);
      size_t l = nl ? (size_t)(nl - s) : len - pos;
      pos += l + (nl ? 1 : 0);
      lineno++;
      int cont = trailing_bs(s, l) % 2 == 1;
      size_t keep = l;
      if (cont) {
        while (keep && is_blank(s[keep - 1])) keep--;
        keep--; /* the backslash */
      }
      dyn_add(&line, s, keep);
      if (cont) dyn_putc(&line, ' ');
      if (!cont || pos >= len) break;
    }
    if (line.err) { /* out of memory: a joined line is never longer than the cell */
      rc = st_error_set(err, line.err, NULL, -1, NULL);
      break;
    }
    const char *joined = line.p ? line.p : "";
    size_t jlen = line.len;
    size_t a = 0;
    while (a < jlen && is_blank(joined[a])) a++;
    size_t b = jlen;
    while (b > a && is_blank(joined[b - 1])) b--;
    if (a == b || joined[a] == '#') continue;
    if (joined[a] != '%') {
      char where[32];
      snprintf(where, sizeof where, "line %d", start_line);
      rc = st_error_set(err, ST_EINVAL, where, -1,
                        "expected a %%magic or a # comment, got '%.*s'; "
                        "%%lsmagic lists the magics", (int)(b - a < 60 ? b - a : 60),
                        joined + a);
      break;
    }
    a++;
    int cellmagic = 0;
    if (a < b && joined[a] == '%') { a++; cellmagic = 1; }
    rc = push_line(cell, &cap, start_line, joined + a, b - a, err);
    if (rc) break;
    mg_line *ml = &cell->lines[cell->n - 1];
    char name[128];
    mg_line_name(ml->text, name, sizeof name);
    size_t nl_len = strlen(name);
    if (nl_len > 1 && name[nl_len - 1] == '?') ml->help = 1;
    /* A cell magic alone on its line takes the rest of the cell. */
    const st_stage *st = st_registry_find(name);
    int alone = ml->text[nl_len] == 0;
    if (st && (st->flags & ST_F_CELL) && (alone || cellmagic) && pos < len) {
      if (!alone) { /* %%html extra words: keep them as the first body line */ }
      ml->body = strndup(code + pos, len - pos);
      if (!ml->body) rc = st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
      pos = len;
    }
  }
  dyn_free(&line);
  if (rc) mg_cell_free(cell);
  return rc;
}

/* ---- word splitting ---------------------------------------------------- */

/* A line's words, expanded, hold at most what a cell may hold; past that
 * (or out of memory) the buffer's first failure becomes the error. */
static int words_failed(const dynbuf *b, st_error *err) {
  if (b->err == ST_E2BIG)
    return st_error_set(err, ST_E2BIG, "line", -1,
                        "its words expand to more than %u bytes (the cell limit)",
                        (unsigned)PK_LIMIT_CELL_BYTES);
  return st_error_set(err, b->err, NULL, -1, NULL);
}

static int var_char(char ch, int first) {
  return ch == '_' || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
         (!first && ch >= '0' && ch <= '9');
}

/* Expand the variable at line[*i] ('$'); appends to out. */
static int expand_var(const char *line, size_t *i, mg_lookup_fn lookup, void *ud,
                      dynbuf *out, st_error *err) {
  size_t j = *i + 1;
  char name[256];
  size_t n = 0;
  if (line[j] == '{') {
    j++;
    while (line[j] && line[j] != '}' && n + 1 < sizeof name) name[n++] = line[j++];
    if (line[j] != '}' || n == 0)
      return st_error_set(err, ST_EINVAL, "variable", (long long)*i,
                          "unterminated or empty ${...}");
    j++;
  } else if (var_char(line[j], 1)) {
    while (var_char(line[j], n == 0) && n + 1 < sizeof name) name[n++] = line[j++];
  } else { /* a lone '$' is literal */
    *i = j;
    return dyn_putc(out, '$') ? words_failed(out, err) : 0;
  }
  name[n] = 0;
  const char *v = lookup ? lookup(ud, name) : NULL;
  if (!v) v = getenv(name);
  if (!v)
    return st_error_set(err, ST_EINVAL, name, -1,
                        "variable $%s is not set (use %%set %s=VALUE)", name, name);
  *i = j;
  return dyn_puts(out, v) ? words_failed(out, err) : 0;
}

int mg_split(const char *line, mg_lookup_fn lookup, void *ud, int *argc_out,
             char ***argv_out, st_error *err) {
  /* Words are collected into one buffer separated by NULs; cur is the word
   * being read. */
  dynbuf words = DYN_INIT(PK_LIMIT_CELL_BYTES), cur = DYN_INIT(PK_LIMIT_CELL_BYTES);
  size_t offs[PK_LIMIT_LINE_ARGS];
  int argc = 0, rc = 0, inword = 0;
  size_t i = 0;
  char q = 0;
  for (;;) {
    char ch = line[i];
    if (!q && (ch == 0 || is_blank(ch) || ch == '\n')) {
      if (inword) {
        if (argc >= PK_LIMIT_LINE_ARGS) {
          rc = st_error_set(err, ST_E2BIG, "line", -1, "more than %d words",
                            PK_LIMIT_LINE_ARGS);
          break;
        }
        offs[argc++] = words.len;
        if (dyn_add(&words, cur.p, cur.len) || dyn_putc(&words, 0)) {
          rc = words_failed(&words, err);
          break;
        }
        dyn_reset(&cur);
        inword = 0;
      }
      if (ch == 0) break;
      i++;
      continue;
    }
    inword = 1;
    if (ch == 0) { /* inside quotes */
      rc = st_error_set(err, ST_EINVAL, "line", (long long)i, "unterminated %s quote",
                        q == '\'' ? "single" : "double");
      break;
    }
    if (q == '\'') {
      if (ch == '\'') q = 0;
      else dyn_putc(&cur, ch);
      i++;
    } else if (ch == '\\') {
      char nx = line[i + 1];
      if (nx == 0) { i++; continue; }
      if (q == '"' && !(nx == '"' || nx == '\\' || nx == '$' || nx == '`')) dyn_putc(&cur, '\\');
      dyn_putc(&cur, nx);
      i += 2;
    } else if (ch == '$') {
      rc = expand_var(line, &i, lookup, ud, &cur, err);
    } else if (!q && (ch == '\'' || ch == '"')) {
      q = ch;
      i++;
    } else if (q == '"' && ch == '"') {
      q = 0;
      i++;
    } else {
      dyn_putc(&cur, ch);
      i++;
    }
    if (!rc && cur.err) rc = words_failed(&cur, err);
    if (rc) break;
  }
  dyn_free(&cur);
  if (rc) {
    dyn_free(&words);
    return rc;
  }
  /* One allocation: pointer array, then the strings. */
  size_t ptrs = (size_t)(argc + 1) * sizeof(char *);
  char **argv = malloc(ptrs + words.len + 1);
  if (!argv) {
    dyn_free(&words);
    return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
  }
  char *base = (char *)argv + ptrs;
  if (words.len) memcpy(base, words.p, words.len);
  base[words.len] = 0;
  for (int k = 0; k < argc; k++) argv[k] = base + offs[k];
  argv[argc] = NULL;
  dyn_free(&words);
  *argc_out = argc;
  *argv_out = argv;
  return 0;
}

const char *mg_is_complete(const char *code, size_t len) {
  /* trailing backslash on the last non-blank line: incomplete */
  size_t e = len;
  while (e && (code[e - 1] == '\n' || is_blank(code[e - 1]))) e--;
  if (e && trailing_bs(code, e) % 2 == 1) return "incomplete";
  /* quotes balanced per logical line */
  char q = 0;
  int line_start = 1, bad = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = code[i];
    if (line_start && !q) {
      size_t j = i;
      while (j < len && is_blank(code[j])) j++;
      if (j < len && code[j] != '\n' && code[j] != '%' && code[j] != '#') bad = 1;
      line_start = 0;
    }
    if (q == '\'') {
      if (ch == '\'') q = 0;
    } else if (ch == '\\' && i + 1 < len) {
      if (code[i + 1] == '\n') { i++; continue; }
      i++;
    } else if (!q && (ch == '\'' || ch == '"')) q = ch;
    else if (q == '"' && ch == '"') q = 0;
    else if (ch == '#' && !q) {
      /* comment lines only when first on the line, handled above */
    }
    if (ch == '\n' && !q) line_start = 1;
  }
  if (q) return "incomplete";
  return bad ? "invalid" : "complete";
}

/* ---- running ------------------------------------------------------------ */

static int run_line(st_ctx *c, const char *line, const char *body, mg_lookup_fn lookup,
                    void *ud, st_error *err);

/* Lines run by lines (%time LINE, %ifset NAME LINE, %pipeline) come back
 * here through c->run_line; without a bound a long enough line of
 * "%time %time ..." would overflow the stack. */
static _Thread_local int g_depth;

int mg_run_line(st_ctx *c, const char *line, const char *body, mg_lookup_fn lookup,
                void *ud, st_error *err) {
  if (g_depth >= PK_LIMIT_LINE_DEPTH)
    return st_error_set(err, ST_E2BIG, NULL, -1,
                        "lines run inside lines (%%time, %%ifset) nested deeper than %d",
                        PK_LIMIT_LINE_DEPTH);
  g_depth++;
  int rc = run_line(c, line, body, lookup, ud, err);
  g_depth--;
  return rc;
}

static int run_line(st_ctx *c, const char *line, const char *body, mg_lookup_fn lookup,
                    void *ud, st_error *err) {
  while (is_blank(*line)) line++;
  if (*line == '%') line++;
  char name[128];
  mg_line_name(line, name, sizeof name);
  size_t nlen = strlen(name);
  int help = nlen > 1 && name[nlen - 1] == '?';
  if (help) name[nlen - 1] = 0;
  if (!name[0])
    return st_error_set(err, ST_EINVAL, NULL, -1, "empty magic name; %%lsmagic lists them");
  const st_stage *s = st_registry_find(name);
  if (!s) {
    const char *sug = st_registry_suggest(name);
    if (sug)
      return st_error_set(err, ST_EUNKNOWN, NULL, -1,
                          "unknown magic %%%s; did you mean %%%s?", name, sug);
    return st_error_set(err, ST_EUNKNOWN, NULL, -1,
                        "unknown magic %%%s; %%lsmagic lists them all", name);
  }
  if (help) {
    char *h = st_registry_help(s);
    if (!h) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
    if (c->page) c->page(c, h);
    else st_printf(c, "%s", h);
    free(h);
    return 0;
  }
  const char *raw = line + nlen;
  while (is_blank(*raw)) raw++;
  int argc = 0;
  char **argv = NULL;
  int rc;
  if (s->flags & ST_F_RAW) {
    /* no expansion: the stage reads a->raw */
    argv = malloc(2 * sizeof *argv);
    if (!argv) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
    argv[0] = name;
    argv[1] = NULL;
    argc = 1;
    rc = st_run(c, s, argc, argv, raw, body, err);
    free(argv);
    return rc;
  }
  rc = mg_split(line, lookup, ud, &argc, &argv, err);
  if (rc) return rc;
  rc = st_run(c, s, argc, argv, raw, body, err);
  free(argv);
  return rc;
}

int mg_run_cell(st_ctx *c, const char *code, size_t len, mg_lookup_fn lookup,
                void *ud, int *failed_line, st_error *err) {
  mg_cell cell;
  *failed_line = 0;
  int rc = mg_cell_parse(code, len, &cell, err);
  if (rc) return rc;
  for (size_t i = 0; i < cell.n && !rc; i++) {
    if (st_cancelled(c)) {
      rc = st_error_set(err, ST_ECANCELED, NULL, -1, "interrupted");
      *failed_line = cell.lines[i].lineno;
      break;
    }
    rc = mg_run_line(c, cell.lines[i].text, cell.lines[i].body, lookup, ud, err);
    if (rc) *failed_line = cell.lines[i].lineno;
  }
  mg_cell_free(&cell);
  return rc;
}
