/*
 * args.c -- parse a magic line's words against its registry row, and run it.
 *
 * Words are already split shell-style by the front end. `--name value`,
 * `--name=value` and flags; `--` ends options. Positionals keep their order.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage.h"

static int opt_index(const st_stage *s, const char *name, size_t len) {
  if (!s->opts) return -1;
  for (int i = 0; s->opts[i].name && i < ST_MAX_OPTS; i++)
    if (strlen(s->opts[i].name) == len && memcmp(s->opts[i].name, name, len) == 0)
      return i;
  return -1;
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 99;
  size_t prev[65], cur[65];
  for (size_t j = 0; j <= lb; j++) prev[j] = j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
      size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
      cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
    memcpy(prev, cur, (lb + 1) * sizeof *prev);
  }
  return prev[lb];
}

/* Closest option name, or NULL. */
static const char *suggest_opt(const st_stage *s, const char *name) {
  const char *best = NULL;
  size_t bestd = 3;
  if (!s->opts) return NULL;
  for (int i = 0; s->opts[i].name; i++) {
    size_t d = edit_distance(name, s->opts[i].name);
    if (d < bestd || (strncmp(s->opts[i].name, name, strlen(name)) == 0 && !best)) {
      bestd = d;
      best = s->opts[i].name;
    }
  }
  return best;
}

int st_args_parse(const st_stage *s, int argc, char **argv, st_args *a, st_error *err) {
  memset(a, 0, sizeof *a);
  a->stage = s;
  int opts_done = 0;
  for (int i = 1; i < argc; i++) {
    char *w = argv[i];
    if (!opts_done && strcmp(w, "--") == 0) {
      opts_done = 1;
      continue;
    }
    if (!opts_done && w[0] == '-' && w[1] == '-' && w[2]) {
      const char *name = w + 2;
      const char *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      int k = opt_index(s, name, len);
      if (k < 0) {
        char tmp[128];
        snprintf(tmp, sizeof tmp, "%.*s", (int)(len < 100 ? len : 100), name);
        const char *sug = suggest_opt(s, tmp);
        return st_error_set(err, ST_EINVAL, s->name, -1,
                            "unknown option --%s%s%s%s; usage: %s", tmp,
                            sug ? " (did you mean --" : "", sug ? sug : "",
                            sug ? "?)" : "", s->usage);
      }
      const st_option *o = &s->opts[k];
      a->set[k] = 1;
      if (o->nargs == 0) {
        if (eq)
          return st_error_set(err, ST_EINVAL, s->name, -1,
                              "option --%s takes no value", o->name);
        a->val[k][0] = "";
        continue;
      }
      if (eq) {
        if (o->nargs != 1)
          return st_error_set(err, ST_EINVAL, s->name, -1,
                              "option --%s takes %d values", o->name, o->nargs);
        a->val[k][0] = eq + 1;
        continue;
      }
      for (int j = 0; j < o->nargs; j++) {
        if (i + 1 >= argc)
          return st_error_set(err, ST_EINVAL, s->name, -1,
                              "option --%s needs %s%s; usage: %s", o->name,
                              o->nargs > 1 ? "values " : "a value ",
                              o->metavar ? o->metavar : "", s->usage);
        a->val[k][j] = argv[++i];
      }
      continue;
    }
    if (a->npos >= ST_MAX_POS)
      return st_error_set(err, ST_E2BIG, s->name, -1, "too many arguments");
    a->pos[a->npos++] = w;
  }
  if (a->npos < s->arity_min || (s->arity_max >= 0 && a->npos > s->arity_max)) {
    if (a->npos < s->arity_min)
      return st_error_set(err, ST_EINVAL, s->name, -1,
                          "missing argument; usage: %s", s->usage);
    return st_error_set(err, ST_EINVAL, s->name, -1,
                        "unexpected argument '%s'; usage: %s",
                        a->pos[s->arity_max < 0 ? 0 : s->arity_max], s->usage);
  }
  return 0;
}

int st_run(st_ctx *c, const st_stage *s, int argc, char **argv, const char *raw,
           const char *body, st_error *err) {
  st_args a;
  int rc;
  if (s->flags & ST_F_RAW) {
    memset(&a, 0, sizeof a);
    a.stage = s;
    for (int i = 1; i < argc && a.npos < ST_MAX_POS; i++) a.pos[a.npos++] = argv[i];
  } else {
    rc = st_args_parse(s, argc, argv, &a, err);
    if (rc) return rc;
  }
  a.raw = raw ? raw : "";
  a.body = body;
  const char *saved_magic = c->cur_magic, *saved_args = c->cur_args;
  c->cur_magic = s->name;
  c->cur_args = a.raw;
  rc = s->fn(c, &a, err);
  c->cur_magic = saved_magic;
  c->cur_args = saved_args;
  if (rc && err && !err->code) st_error_set(err, rc, s->name, -1, NULL);
  if (!rc && st_cancelled(c)) rc = 0; /* finished before it saw the flag */
  return rc;
}

static int find(const st_args *a, const char *name) {
  const st_stage *s = a->stage;
  if (!s || !s->opts) return -1;
  return opt_index(s, name, strlen(name));
}

int st_arg_has(const st_args *a, const char *name) {
  int k = find(a, name);
  return k >= 0 && a->set[k];
}

const char *st_arg_str(const st_args *a, const char *name, const char *dflt) {
  int k = find(a, name);
  return (k >= 0 && a->set[k] && a->val[k][0]) ? a->val[k][0] : dflt;
}

const char *st_arg_str2(const st_args *a, const char *name, int i) {
  int k = find(a, name);
  return (k >= 0 && a->set[k] && i >= 0 && i < 2) ? a->val[k][i] : NULL;
}

int st_parse_int(const char *s, const char *what, long long min, long long max,
                 long long *out, st_error *err) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || errno)
    return st_error_set(err, ST_EINVAL, what, -1, "expected an integer, got '%s'", s);
  if (v < min || v > max)
    return st_error_set(err, ST_EINVAL, what, -1,
                        "%lld is out of range (%lld to %lld)", v, min, max);
  *out = v;
  return 0;
}

int st_parse_double(const char *s, const char *what, double min, double max,
                    double *out, st_error *err) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !isfinite(v))
    return st_error_set(err, ST_EINVAL, what, -1, "expected a number, got '%s'", s);
  if (v < min || v > max)
    return st_error_set(err, ST_EINVAL, what, -1, "%g is out of range (%g to %g)",
                        v, min, max);
  *out = v;
  return 0;
}

int st_arg_int(const st_args *a, const char *name, long long dflt, long long min,
               long long max, long long *out, st_error *err) {
  const char *v = st_arg_str(a, name, NULL);
  if (!v) {
    *out = dflt;
    return 0;
  }
  char what[64];
  snprintf(what, sizeof what, "--%s", name);
  return st_parse_int(v, what, min, max, out, err);
}

int st_arg_double(const st_args *a, const char *name, double dflt, double min,
                  double max, double *out, st_error *err) {
  const char *v = st_arg_str(a, name, NULL);
  if (!v) {
    *out = dflt;
    return 0;
  }
  char what[64];
  snprintf(what, sizeof what, "--%s", name);
  return st_parse_double(v, what, min, max, out, err);
}

/* Used by the registry for "did you mean". */
size_t st__edit_distance(const char *a, const char *b) { return edit_distance(a, b); }
