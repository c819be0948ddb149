/*
 * builtins.c -- %help, %lsmagic, %set, %env, %cd, %pwd, %time, %echo,
 * %sleep, %html, %markdown, %clear, %input.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "builtins.h"
#include "lib/session.h"

const st_option bi_echo_opts[] = {{"stderr", 0, NULL, "print to stderr"}, {NULL, 0, NULL, NULL}};
const st_option bi_clear_opts[] = {{"wait", 0, NULL, "clear when the next output arrives"},
                                   {NULL, 0, NULL, NULL}};
const st_option bi_input_opts[] = {{"password", 0, NULL, "hide the typed text"},
                                   {"var", 1, "NAME", "variable to store the answer (INPUT)"},
                                   {NULL, 0, NULL, NULL}};
const st_option bi_set_opts[] = {{"unset", 1, "NAME", "remove a variable"},
                                 {"default", 0, NULL,
                                  "only set names not already set (by %set or the environment)"},
                                 {NULL, 0, NULL, NULL}};

static int unknown(const char *name, st_error *err) {
  const char *sug = st_registry_suggest(name);
  if (sug)
    return st_error_set(err, ST_EUNKNOWN, NULL, -1,
                        "unknown magic %%%s; did you mean %%%s?", name, sug);
  return st_error_set(err, ST_EUNKNOWN, NULL, -1,
                      "unknown magic %%%s; %%lsmagic lists them all", name);
}

static void list_magics(st_ctx *c) {
  const char *group = NULL;
  for (size_t i = 0; i < st_registry_count(); i++) {
    const st_stage *s = st_registry_at(i);
    if (!group || strcmp(group, s->group) != 0) {
      group = s->group;
      st_printf(c, "%s%s:\n", i ? "\n" : "", group);
    }
    st_printf(c, "  %-12s %s\n", s->name, s->summary ? s->summary : "");
  }
}

int bi_help(st_ctx *c, const st_args *a, st_error *err) {
  if (a->npos == 0) {
    st_printf(c, "pipekernel: each line of a cell is a %%magic. `%%help NAME` or "
                 "`%%NAME?` shows one magic's help.\n\n");
    list_magics(c);
    return 0;
  }
  const st_stage *s = st_registry_find(a->pos[0]);
  if (!s) return unknown(a->pos[0][0] == '%' ? a->pos[0] + 1 : a->pos[0], err);
  char *h = st_registry_help(s);
  if (!h) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
  st_printf(c, "%s", h);
  free(h);
  return 0;
}

int bi_lsmagic(st_ctx *c, const st_args *a, st_error *err) {
  (void)a;
  (void)err;
  const char *group = NULL;
  for (size_t i = 0; i < st_registry_count(); i++) {
    const st_stage *s = st_registry_at(i);
    if (!group || strcmp(group, s->group) != 0) {
      group = s->group;
      st_printf(c, "%s%s:\n", i ? "\n" : "", group);
    }
    st_printf(c, "  %s\n", s->usage);
  }
  return 0;
}

static int valid_name(const char *s, size_t len) {
  if (!len || !(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
    return 0;
  for (size_t i = 1; i < len; i++)
    if (!(s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
          (s[i] >= '0' && s[i] <= '9')))
      return 0;
  return 1;
}

int bi_set(st_ctx *c, const st_args *a, st_error *err) {
  ss_session *s = c->session;
  if (!s) return st_error_set(err, ST_ESTATE, "set", -1, "no session");
  const char *un = st_arg_str(a, "unset", NULL);
  if (un && ss_session_unset(s, un))
    return st_error_set(err, ST_EINVAL, "set", -1, "variable %s is not set", un);
  if (a->npos == 0 && !un) {
    for (ss_var *v = s->vars; v; v = v->next) st_printf(c, "%s=%s\n", v->name, v->value);
    return 0;
  }
  for (int i = 0; i < a->npos; i++) {
    const char *w = a->pos[i];
    const char *eq = strchr(w, '=');
    size_t len = eq ? (size_t)(eq - w) : strlen(w);
    if (!valid_name(w, len))
      return st_error_set(err, ST_EINVAL, "set", -1,
                          "'%.*s' is not a variable name (letters, digits, _)",
                          (int)(len > 64 ? 64 : len), w);
    if (eq) {
      char name[256];
      snprintf(name, sizeof name, "%.*s", (int)(len > 255 ? 255 : len), w);
      if (st_arg_has(a, "default") && (ss_session_get(s, name) || getenv(name))) continue;
      int rc = ss_session_set(s, name, eq + 1);
      if (rc) return st_error_set(err, rc, "set", -1, "cannot set %s", name);
    } else {
      const char *v = ss_session_get(s, w);
      if (!v) v = getenv(w);
      if (!v) return st_error_set(err, ST_EINVAL, "set", -1, "variable %s is not set", w);
      st_result(c, v);
    }
  }
  return 0;
}

/* Names whose values are never shown. */
static int secret_name(const char *name) {
  static const char *const words[] = {"SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strstr(name, words[i])) return 1;
  return 0;
}

extern char **environ;

int bi_env(st_ctx *c, const st_args *a, st_error *err) {
  if (a->npos == 0) {
    for (char **e = environ; e && *e; e++) {
      const char *eq = strchr(*e, '=');
      if (!eq) continue;
      char name[256];
      snprintf(name, sizeof name, "%.*s", (int)((eq - *e) > 255 ? 255 : (eq - *e)), *e);
      st_printf(c, "%s=%s\n", name, secret_name(name) ? "<hidden>" : eq + 1);
    }
    return 0;
  }
  for (int i = 0; i < a->npos; i++) {
    const char *w = a->pos[i];
    const char *eq = strchr(w, '=');
    size_t len = eq ? (size_t)(eq - w) : strlen(w);
    if (!valid_name(w, len))
      return st_error_set(err, ST_EINVAL, "env", -1, "'%.*s' is not a variable name",
                          (int)(len > 64 ? 64 : len), w);
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(len > 255 ? 255 : len), w);
    if (eq) {
      if (setenv(name, eq + 1, 1) != 0) return st_error_errno(err, errno, "env", "setenv");
    } else {
      const char *v = getenv(name);
      if (!v) return st_error_set(err, ST_EINVAL, "env", -1, "%s is not set", name);
      st_result(c, v);
    }
  }
  return 0;
}

int bi_cd(st_ctx *c, const st_args *a, st_error *err) {
  const char *dir = a->npos ? a->pos[0] : getenv("HOME");
  if (!dir) dir = "/";
  if (chdir(dir) != 0) return st_error_errno(err, errno, dir, "cannot change directory");
  char buf[PATH_MAX];
  if (getcwd(buf, sizeof buf)) {
    setenv("PWD", buf, 1); /* $PWD follows the kernel, as in a shell */
    st_printf(c, "%s\n", buf);
  }
  return 0;
}

int bi_pwd(st_ctx *c, const st_args *a, st_error *err) {
  (void)a;
  char buf[PATH_MAX];
  if (!getcwd(buf, sizeof buf)) return st_error_errno(err, errno, ".", "getcwd");
  st_result(c, buf);
  return 0;
}

int bi_time(st_ctx *c, const st_args *a, st_error *err) {
  const char *line = a->raw;
  while (*line == ' ' || *line == '\t') line++;
  if (!*line) return st_error_set(err, ST_EINVAL, "time", -1, "usage: %%time LINE");
  if (!c->run_line)
    return st_error_set(err, ST_ENOTSUP, "time", -1, "this front end cannot run lines");
  double t0 = st_now();
  int rc = c->run_line(c, line, err);
  double dt = st_now() - t0;
  st_printf(c, "time: %.3f s (wall)%s\n", dt, rc ? ", failed" : "");
  return rc;
}

int bi_echo(st_ctx *c, const st_args *a, st_error *err) {
  (void)err;
  int stream = st_arg_has(a, "stderr") ? 2 : 1;
  for (int i = 0; i < a->npos; i++) {
    if (i) st_write(c, stream, " ", 1);
    st_write(c, stream, a->pos[i], strlen(a->pos[i]));
  }
  st_write(c, stream, "\n", 1);
  return 0;
}

int bi_sleep(st_ctx *c, const st_args *a, st_error *err) {
  double secs;
  int rc = st_parse_double(a->pos[0], "sleep", 0, 86400 * 7, &secs, err);
  if (rc) return rc;
  double start = st_now(), end = start + secs;
  /* A wait of a second or more shows a progress bar, counted in
   * milliseconds so that it moves with every update, not once a second. */
  st_progress p;
  int bar = secs >= 1;
  if (bar) st_progress_begin(c, &p, "sleep", "ms", (uint64_t)(secs * 1000 + 0.5));
  for (;;) {
    if (st_cancelled(c)) {
      if (bar) st_progress_end(&p, ST_ECANCELED);
      return st_error_set(err, ST_ECANCELED, "sleep", -1, "interrupted");
    }
    double now = st_now(), left = end - now;
    if (left <= 0) break;
    if (bar) st_progress_update(&p, (uint64_t)((now - start) * 1000));
    double step = left < 0.01 ? left : 0.01;
    struct timespec ts = {0, (long)(step * 1e9)};
    nanosleep(&ts, NULL);
  }
  if (bar) st_progress_end(&p, 0);
  return 0;
}

static const char *content(const st_args *a) {
  const char *t = a->raw;
  while (*t == ' ' || *t == '\t') t++;
  if (!*t && a->body) t = a->body;
  return t;
}

int bi_html(st_ctx *c, const st_args *a, st_error *err) {
  (void)err;
  const char *t = content(a);
  st_mime m[2] = {{"text/html", t, strlen(t), 0, 0}, {"text/plain", t, strlen(t), 0, 0}};
  st_display(c, m, 2, NULL);
  return 0;
}

int bi_markdown(st_ctx *c, const st_args *a, st_error *err) {
  (void)err;
  const char *t = content(a);
  st_mime m[2] = {{"text/markdown", t, strlen(t), 0, 0}, {"text/plain", t, strlen(t), 0, 0}};
  st_display(c, m, 2, NULL);
  return 0;
}

int bi_clear(st_ctx *c, const st_args *a, st_error *err) {
  (void)err;
  if (c->clear) c->clear(c, st_arg_has(a, "wait"));
  return 0;
}

int bi_input(st_ctx *c, const st_args *a, st_error *err) {
  const char *prompt = a->npos ? a->pos[0] : "";
  const char *var = st_arg_str(a, "var", "INPUT");
  int password = st_arg_has(a, "password");
  if (!valid_name(var, strlen(var)))
    return st_error_set(err, ST_EINVAL, "input", -1, "'%s' is not a variable name", var);
  if (!c->input)
    return st_error_set(err, ST_ESTDIN, "input", -1, "this front end has no input");
  char *answer = NULL;
  int rc = c->input(c, prompt, password, &answer, err);
  if (rc) return rc;
  rc = ss_session_set(c->session, var, answer ? answer : "");
  if (!rc && !password) st_result(c, answer ? answer : "");
  free(answer);
  if (rc) return st_error_set(err, rc, "input", -1, "cannot store the answer");
  return 0;
}

int bi_ifset(st_ctx *c, const st_args *a, st_error *err) {
  const char *p = a->raw;
  while (*p == ' ' || *p == '\t') p++;
  char name[256];
  size_t n = 0;
  while (p[n] && p[n] != ' ' && p[n] != '\t' && n + 1 < sizeof name) {
    name[n] = p[n];
    n++;
  }
  name[n] = 0;
  const char *line = p + n;
  while (*line == ' ' || *line == '\t') line++;
  if (!n || !*line)
    return st_error_set(err, ST_EINVAL, "ifset", -1, "usage: %%ifset NAME LINE");
  if (!valid_name(name, n))
    return st_error_set(err, ST_EINVAL, "ifset", -1, "'%s' is not a variable name", name);
  const char *v = ss_session_get(c->session, name);
  if (!v) v = getenv(name);
  if (!v || !*v) {
    st_printf(c, "skipped (%s is not set): %s\n", name, line);
    return 0;
  }
  if (!c->run_line)
    return st_error_set(err, ST_ENOTSUP, "ifset", -1, "this front end cannot run lines");
  return c->run_line(c, line, err);
}
