/*
 * fuzz_magic.c -- hostile cells through the magic-line parser: logical lines
 * (backslash continuation, comments, %%cell magics), shell-style words
 * (quotes, escapes, $VAR and ${VAR} expanded from a fixed set of variables),
 * is_complete, the option parser of the magic each line names and the "did
 * you mean" suggestions. Lines naming %set, %echo, %ifset, %time, %help or
 * %pwd are run for real against a session whose output is discarded
 * (%ifset and %time run their nested line through the same path); nothing
 * else runs. The input is the cell's code, NUL bytes included.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/magic.h"
#include "lib/limits.h"
#include "lib/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void out_none(st_ctx *c, int stream, const char *buf, size_t len) {
  (void)c;
  (void)stream;
  (void)buf;
  (void)len;
}
static void display_none(st_ctx *c, const st_mime *items, int n, const char *id, int update) {
  (void)c;
  (void)items;
  (void)n;
  (void)id;
  (void)update;
}
static void progress_none(st_ctx *c, const st_progress *p) {
  (void)c;
  (void)p;
}
static int never(st_ctx *c) {
  (void)c;
  return 0;
}
static void text_none(st_ctx *c, const char *text) {
  (void)c;
  (void)text;
}

static int g_suggested;

static const char *lookup(void *ud, const char *name) {
  return ss_session_get(ud, name);
}

/* The magics that may run here: no files, sockets, environment or sleeps. */
static int harmless(const char *name) {
  static const char *const ok[] = {"set", "echo", "ifset", "time", "help", "pwd"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (strcmp(name, ok[i]) == 0) return 1;
  return 0;
}

static int line_through(st_ctx *c, const char *line, const char *body, st_error *err);

static int run_line(st_ctx *c, const char *line, st_error *err) {
  return line_through(c, line, NULL, err);
}

/* Parse one line as the front ends do; run it only when harmless. */
static int line_through(st_ctx *c, const char *line, const char *body, st_error *err) {
  const char *t = line;
  while (*t == ' ' || *t == '\t') t++;
  if (*t == '%') t++;
  char name[128];
  mg_line_name(t, name, sizeof name);
  size_t nl = strlen(name);
  if (nl > 1 && name[nl - 1] == '?') name[nl - 1] = 0;
  const st_stage *s = st_registry_find(name);
  int argc;
  char **argv;
  int rc = mg_split(t, lookup, c->session, &argc, &argv, err);
  if (rc) {
    if (!err->code) abort(); /* a failure must say why */
    return rc;
  }
  if (argc < 0 || argc > PK_LIMIT_LINE_ARGS || argv[argc] != NULL) abort();
  if (!s) {
    /* "did you mean": edit distances to every magic, costly under
     * coverage tracing; once per cell is enough */
    if (!g_suggested++) st_registry_suggest(name);
  } else if (!(s->flags & ST_F_RAW)) {
    st_args a;
    st_error e2;
    st_error_clear(&e2);
    if (argc > 0 && st_args_parse(s, argc, argv, &a, &e2) && !e2.code) abort();
  }
  free(argv);
  if (!s || !harmless(s->name)) return 0;
  st_error_clear(err);
  rc = mg_run_line(c, line, body, lookup, c->session, err);
  if (rc && !err->code) abort();
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *code = (const char *)data;
  const char *ic = mg_is_complete(code, size);
  if (strcmp(ic, "complete") && strcmp(ic, "incomplete") && strcmp(ic, "invalid")) abort();

  st_error err;
  st_error_clear(&err);
  mg_cell cell;
  if (mg_cell_parse(code, size, &cell, &err)) {
    if (!err.code) abort();
    return 0;
  }
  ss_session *sess = ss_session_new();
  if (!sess) return 0;
  ss_session_set(sess, "A", "alpha");
  ss_session_set(sess, "EMPTY", "");
  ss_session_set(sess, "SPACED", "two words");
  ss_session_set(sess, "QUOTES", "'\"\\$A ${A}");
  ss_session_set(sess, "DIR", "data/cifar-10-batches-py");
  st_ctx c;
  memset(&c, 0, sizeof c);
  c.session = sess;
  c.write = out_none;
  c.display = display_none;
  c.progress = progress_none;
  c.cancelled = never;
  c.result = text_none;
  c.page = text_none;
  c.run_line = run_line;
  g_suggested = 0;
  for (size_t i = 0; i < cell.n; i++) {
    const mg_line *l = &cell.lines[i];
    if (l->lineno < 1 || (size_t)l->lineno > size + 1) abort();
    st_error_clear(&err);
    line_through(&c, l->text, l->body, &err);
  }
  mg_cell_free(&cell);
  ss_session_free(sess);
  return 0;
}
