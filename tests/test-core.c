/*
 * test-core.c -- the stage contract (errors, args, registry, progress) and
 * the magic language (splitting, cells, is_complete, built-ins).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../kernel/magic.h"
#include "lib/dynbuf.h"
#include "lib/safepath.h"
#include "lib/session.h"
#include "lib/strv.h"
#include "task.h"

/* ---- a capturing context ---- */
typedef struct {
  char out[16384];
  size_t out_len;
  char err[4096];
  size_t err_len;
  char result[1024];
  int displays, progress_calls, progress_final;
} cap_t;

static void cap_write(st_ctx *c, int stream, const char *buf, size_t len) {
  cap_t *k = c->fe;
  char *dst = stream == 2 ? k->err : k->out;
  size_t *l = stream == 2 ? &k->err_len : &k->out_len;
  size_t cap = stream == 2 ? sizeof k->err : sizeof k->out;
  if (*l + len >= cap) len = cap - *l - 1;
  memcpy(dst + *l, buf, len);
  *l += len;
  dst[*l] = 0;
}
static void cap_display(st_ctx *c, const st_mime *m, int n, const char *id, int up) {
  (void)m; (void)n; (void)id; (void)up;
  ((cap_t *)c->fe)->displays++;
}
static void cap_progress(st_ctx *c, const st_progress *p) {
  cap_t *k = c->fe;
  k->progress_calls++;
  if (p->state != ST_PROGRESS_RUNNING) k->progress_final++;
}
static void cap_result(st_ctx *c, const char *t) {
  snprintf(((cap_t *)c->fe)->result, 1024, "%s", t);
}
static const char *lookup(void *ud, const char *name) {
  return ss_session_get((ss_session *)ud, name);
}
static int cap_run_line(st_ctx *c, const char *line, st_error *err) {
  return mg_run_line(c, line, NULL, lookup, c->session, err);
}
static void ctx_init(st_ctx *c, cap_t *k) {
  memset(c, 0, sizeof *c);
  memset(k, 0, sizeof *k);
  c->fe = k;
  c->session = ss_session_new();
  c->write = cap_write;
  c->display = cap_display;
  c->progress = cap_progress;
  c->result = cap_result;
  c->run_line = cap_run_line;
}

TEST_IMPL(errors_table) {
  ASSERT_STR_EQ(st_errname(ST_ECHECKSUM), "ChecksumError");
  ASSERT_STR_EQ(st_strerror(ST_ENOSPC), "no space left on device");
  ASSERT_STR_EQ(st_errname(ST_ECANCELED), "KeyboardInterrupt");
  ASSERT_STR_EQ(st_errname(-9999), "Error");
  ASSERT_EQ(st_from_errno(28 /* ENOSPC */), ST_ENOSPC);
  /* codes are distinct and negative */
  ASSERT(ST_EINVAL < 0 && ST_EINTERNAL < ST_EINVAL);
  return 0;
}

TEST_IMPL(error_first_wins) {
  st_error e;
  st_error_clear(&e);
  ASSERT_EQ(st_error_set(&e, ST_EFORMAT, "a.pkl", 17, "bad opcode 0x%02x", 0x69), ST_EFORMAT);
  ASSERT_EQ(st_error_set(&e, ST_EIO, "b", -1, "second"), ST_EIO);
  ASSERT_EQ(e.code, ST_EFORMAT);
  char buf[256];
  st_error_format(&e, buf, sizeof buf);
  ASSERT_STR_EQ(buf, "a.pkl: bad opcode 0x69 (at byte 17)");
  ASSERT_EQ(st_error_set(NULL, ST_EIO, NULL, -1, NULL), ST_EIO);
  return 0;
}

static const st_option topts[] = {{"to", 1, "PATH", "target"},
                                  {"jobs", 1, "N", "jobs"},
                                  {"gzip", 0, NULL, "gzip"},
                                  {"compare", 2, "A B", "two"},
                                  {NULL, 0, NULL, NULL}};
static int tfn(st_ctx *c, const st_args *a, st_error *e) { (void)c; (void)a; (void)e; return 0; }
static const st_stage tstage = {"demo", tfn, 1, 2, 0, "test", "%demo SRC [DST] [--to PATH]",
                                "demo", "", topts};

TEST_IMPL(args_parse) {
  char *argv[] = {"demo", "src", "--to", "x y", "--gzip", "--jobs=4", "--compare", "a", "b", "--", "--dst", NULL};
  st_args a;
  st_error e;
  st_error_clear(&e);
  ASSERT_EQ(st_args_parse(&tstage, 11, argv, &a, &e), 0);
  ASSERT_EQ(a.npos, 2);
  ASSERT_STR_EQ(a.pos[0], "src");
  ASSERT_STR_EQ(a.pos[1], "--dst");
  ASSERT_STR_EQ(st_arg_str(&a, "to", NULL), "x y");
  ASSERT(st_arg_has(&a, "gzip"));
  long long j;
  ASSERT_EQ(st_arg_int(&a, "jobs", 1, 1, 64, &j, &e), 0);
  ASSERT_EQ(j, 4);
  ASSERT_STR_EQ(st_arg_str2(&a, "compare", 1), "b");
  ASSERT(!st_arg_has(&a, "nope"));
  return 0;
}

TEST_IMPL(args_errors) {
  st_args a;
  st_error e;
  char *v1[] = {"demo", "src", "--too", "x", NULL};
  st_error_clear(&e);
  ASSERT_EQ(st_args_parse(&tstage, 4, v1, &a, &e), ST_EINVAL);
  ASSERT_CONTAINS(e.text, "did you mean --to");
  char *v2[] = {"demo", NULL};
  st_error_clear(&e);
  ASSERT_EQ(st_args_parse(&tstage, 1, v2, &a, &e), ST_EINVAL);
  ASSERT_CONTAINS(e.text, "missing argument");
  char *v3[] = {"demo", "a", "b", "c", NULL};
  st_error_clear(&e);
  ASSERT_EQ(st_args_parse(&tstage, 4, v3, &a, &e), ST_EINVAL);
  ASSERT_CONTAINS(e.text, "unexpected argument 'c'");
  char *v4[] = {"demo", "a", "--to", NULL};
  st_error_clear(&e);
  ASSERT_EQ(st_args_parse(&tstage, 3, v4, &a, &e), ST_EINVAL);
  ASSERT_CONTAINS(e.text, "needs");
  char *v5[] = {"demo", "a", "--jobs", "x", NULL};
  st_error_clear(&e);
  ASSERT_EQ(st_args_parse(&tstage, 4, v5, &a, &e), 0);
  long long j;
  ASSERT_EQ(st_arg_int(&a, "jobs", 1, 1, 64, &j, &e), ST_EINVAL);
  ASSERT_CONTAINS(e.text, "expected an integer");
  return 0;
}

TEST_IMPL(registry_find_suggest) {
  ASSERT(st_registry_find("help") != NULL);
  ASSERT(st_registry_find("%help") != NULL);
  ASSERT(st_registry_find("nope") == NULL);
  ASSERT_STR_EQ(st_registry_suggest("hepl"), "help");
  ASSERT_STR_EQ(st_registry_suggest("slep"), "sleep");
  ASSERT(st_registry_suggest("zzzzzzzz") == NULL);
  /* every row is well formed */
  for (size_t i = 0; i < st_registry_count(); i++) {
    const st_stage *s = st_registry_at(i);
    ASSERT(s->name && s->fn && s->usage && s->summary && s->group);
    ASSERT(s->usage[0] == '%');
    char *h = st_registry_help(s);
    ASSERT(h && strstr(h, s->usage));
    free(h);
  }
  return 0;
}

static const char *vars(void *ud, const char *name) {
  (void)ud;
  if (strcmp(name, "A") == 0) return "alpha";
  if (strcmp(name, "SP") == 0) return "two words";
  return NULL;
}

TEST_IMPL(magic_split) {
  struct { const char *in; int argc; const char *w[4]; } rows[] = {
      {"md5 a b", 3, {"md5", "a", "b"}},
      {"echo 'a b'  \"c d\"", 3, {"echo", "a b", "c d"}},
      {"echo a\\ b", 2, {"echo", "a b"}},
      {"echo $A ${A}x '$A'", 4, {"echo", "alpha", "alphax", "$A"}},
      {"echo \"$SP\"", 2, {"echo", "two words"}},
      {"echo \"a\\\"b\" \\$A", 3, {"echo", "a\"b", "$A"}},
      {"echo '' x", 3, {"echo", "", "x"}},
      {"echo $ 5$", 3, {"echo", "$", "5$"}},
  };
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    int argc;
    char **argv;
    st_error e;
    st_error_clear(&e);
    ASSERT_EQ(mg_split(rows[r].in, vars, NULL, &argc, &argv, &e), 0);
    ASSERT_EQ(argc, rows[r].argc);
    for (int i = 0; i < argc; i++) ASSERT_STR_EQ(argv[i], rows[r].w[i]);
    ASSERT(argv[argc] == NULL);
    free(argv);
  }
  return 0;
}

TEST_IMPL(magic_split_errors) {
  int argc;
  char **argv;
  st_error e;
  st_error_clear(&e);
  ASSERT_EQ(mg_split("echo 'open", vars, NULL, &argc, &argv, &e), ST_EINVAL);
  ASSERT_CONTAINS(e.text, "unterminated single quote");
  st_error_clear(&e);
  ASSERT_EQ(mg_split("echo $NOPE_NOT_SET_X", vars, NULL, &argc, &argv, &e), ST_EINVAL);
  ASSERT_CONTAINS(e.text, "$NOPE_NOT_SET_X is not set");
  st_error_clear(&e);
  ASSERT_EQ(mg_split("echo ${", vars, NULL, &argc, &argv, &e), ST_EINVAL);
  return 0;
}

TEST_IMPL(magic_cell_parse) {
  const char *code = "# comment\n\n%echo a \\\n  b\n  %sleep 0\n%html\n<b>x</b>\n%echo no\n";
  mg_cell cell;
  st_error e;
  st_error_clear(&e);
  ASSERT_EQ(mg_cell_parse(code, strlen(code), &cell, &e), 0);
  ASSERT_EQ(cell.n, 3);
  ASSERT_STR_EQ(cell.lines[0].text, "echo a    b");
  ASSERT_EQ(cell.lines[0].lineno, 3);
  ASSERT_STR_EQ(cell.lines[1].text, "sleep 0");
  ASSERT_EQ(cell.lines[2].lineno, 6);
  ASSERT_STR_EQ(cell.lines[2].body, "<b>x</b>\n%echo no\n");
  mg_cell_free(&cell);
  const char *bad = "%echo a\nprint(1)\n";
  st_error_clear(&e);
  ASSERT_EQ(mg_cell_parse(bad, strlen(bad), &cell, &e), ST_EINVAL);
  ASSERT_STR_EQ(e.where, "line 2");
  const char *q = "%md5?\n";
  st_error_clear(&e);
  ASSERT_EQ(mg_cell_parse(q, strlen(q), &cell, &e), 0);
  ASSERT(cell.lines[0].help);
  mg_cell_free(&cell);
  return 0;
}

TEST_IMPL(magic_is_complete) {
  ASSERT_STR_EQ(mg_is_complete("%echo hi", 8), "complete");
  ASSERT_STR_EQ(mg_is_complete("%echo hi \\", 10), "incomplete");
  ASSERT_STR_EQ(mg_is_complete("%echo 'hi", 9), "incomplete");
  ASSERT_STR_EQ(mg_is_complete("%echo \"a\nb", 10), "incomplete");
  ASSERT_STR_EQ(mg_is_complete("print(1)", 8), "invalid");
  ASSERT_STR_EQ(mg_is_complete("# just a comment\n", 17), "complete");
  ASSERT_STR_EQ(mg_is_complete("", 0), "complete");
  return 0;
}

TEST_IMPL(builtins_run) {
  st_ctx c;
  cap_t k;
  ctx_init(&c, &k);
  st_error e;
  int line;
  const char *cell = "%set X=42 Y=\"a b\"\n%echo $X-${Y}\n%echo --stderr oops\n%set X\n";
  st_error_clear(&e);
  ASSERT_EQ(mg_run_cell(&c, cell, strlen(cell), lookup, c.session, &line, &e), 0);
  ASSERT_STR_EQ(k.out, "42-a b\n");
  ASSERT_STR_EQ(k.err, "oops\n");
  ASSERT_STR_EQ(k.result, "42");
  /* --default keeps what is set (here and in the environment) */
  setenv("PK_TEST_ENV_DEFAULT", "env", 1);
  const char *dflt = "%set --default X=7 Z=9 PK_TEST_ENV_DEFAULT=nb\n%echo $X $Z $PK_TEST_ENV_DEFAULT";
  st_error_clear(&e);
  k.out_len = 0;
  ASSERT_EQ(mg_run_cell(&c, dflt, strlen(dflt), lookup, c.session, &line, &e), 0);
  ASSERT_STR_EQ(k.out, "42 9 env\n");
  /* unknown magic suggests */
  st_error_clear(&e);
  const char *bad = "%echo ok\n%ech hi\n%echo never\n";
  k.out_len = 0;
  k.out[0] = 0;
  ASSERT_EQ(mg_run_cell(&c, bad, strlen(bad), lookup, c.session, &line, &e), ST_EUNKNOWN);
  ASSERT_EQ(line, 2);
  ASSERT_CONTAINS(e.text, "did you mean %echo");
  ASSERT_STR_EQ(k.out, "ok\n");
  /* %time runs a line */
  st_error_clear(&e);
  k.out_len = 0;
  ASSERT_EQ(mg_run_cell(&c, "%time %echo t", 13, lookup, c.session, &line, &e), 0);
  ASSERT_CONTAINS(k.out, "t\ntime: ");
  /* lines nested in lines are bounded (a long "%time %time ..." overflowed
   * the stack) */
  size_t reps = 100000, wl = strlen("%time ");
  char *deep = malloc(reps * wl + 16);
  ASSERT(deep != NULL);
  for (size_t i = 0; i < reps; i++) memcpy(deep + i * wl, "%time ", wl);
  memcpy(deep + reps * wl, "%echo deep", sizeof "%echo deep");
  st_error_clear(&e);
  ASSERT_EQ(mg_run_cell(&c, deep, strlen(deep), lookup, c.session, &line, &e), ST_E2BIG);
  ASSERT_CONTAINS(e.text, "nested deeper than 16");
  ASSERT_EQ(line, 1);
  free(deep);
  char ok[16 * 6 + 16];
  size_t okn = 0;
  for (int i = 0; i < 15; i++) okn += (size_t)snprintf(ok + okn, sizeof ok - okn, "%%time ");
  snprintf(ok + okn, sizeof ok - okn, "%%echo fine");
  st_error_clear(&e);
  k.out_len = 0;
  ASSERT_EQ(mg_run_cell(&c, ok, strlen(ok), lookup, c.session, &line, &e), 0);
  ASSERT_CONTAINS(k.out, "fine\ntime: ");
  /* %help NAME prints usage; %lsmagic lists */
  st_error_clear(&e);
  k.out_len = 0;
  ASSERT_EQ(mg_run_cell(&c, "%help sleep", 11, lookup, c.session, &line, &e), 0);
  ASSERT_CONTAINS(k.out, "%sleep SECONDS");
  /* %ifset runs or skips a line */
  st_error_clear(&e);
  k.out_len = 0;
  const char *ifs = "%set EMPTY= FULL=yes\n%ifset EMPTY %echo no\n%ifset FULL %echo $FULL\n%ifset NOT_SET_ANYWHERE_X %echo no";
  ASSERT_EQ(mg_run_cell(&c, ifs, strlen(ifs), lookup, c.session, &line, &e), 0);
  ASSERT_CONTAINS(k.out, "skipped (EMPTY is not set): %echo no\nyes\nskipped (NOT_SET_ANYWHERE_X");
  /* %html display */
  st_error_clear(&e);
  ASSERT_EQ(mg_run_cell(&c, "%html <b>x</b>", 14, lookup, c.session, &line, &e), 0);
  ASSERT_EQ(k.displays, 1);
  /* %pwd value, %cd */
  st_error_clear(&e);
  ASSERT_EQ(mg_run_cell(&c, "%cd /\n%pwd", 10, lookup, c.session, &line, &e), 0);
  ASSERT_STR_EQ(k.result, "/");
  st_error_clear(&e);
  ASSERT_EQ(mg_run_cell(&c, "%cd /does/not/exist", 19, lookup, c.session, &line, &e), ST_ENOENT);
  ASSERT_CONTAINS(e.where, "/does/not/exist");
  ss_session_free(c.session);
  return 0;
}

TEST_IMPL(progress_throttle) {
  st_ctx c;
  cap_t k;
  ctx_init(&c, &k);
  st_progress p;
  st_progress_begin(&c, &p, "x", "B", 1000000);
  for (int i = 0; i < 100000; i++) st_progress_update(&p, (uint64_t)i * 10);
  st_progress_end(&p, 0);
  ASSERT(k.progress_calls >= 2);
  ASSERT(k.progress_calls < 50); /* far fewer than 100000 updates */
  ASSERT_EQ(k.progress_final, 1);
  ASSERT_EQ(p.done, 1000000);
  ss_session_free(c.session);
  return 0;
}

#include "lib/table.h"

TEST_IMPL(table_render) {
  const char *h[] = {"file", "bytes"};
  int right[] = {0, 1};
  tbl *t = tbl_new(2, h, right);
  ASSERT(t);
  const char *r1[] = {"a<b>", "10"};
  const char *r2[] = {"ünïcode", "2000"};
  const char *r3[] = {"total", "2010"};
  ASSERT_EQ(tbl_add(t, r1, 0), 0);
  ASSERT_EQ(tbl_add(t, r2, 0), 0);
  ASSERT_EQ(tbl_add(t, r3, 1), 0);
  char *html = tbl_html(t, "cap");
  ASSERT_CONTAINS(html, "<td style=\"text-align:left\">a&lt;b&gt;</td>");
  ASSERT_CONTAINS(html, "<caption");
  char *text = tbl_text(t, NULL);
  ASSERT_STR_EQ(text, "file     bytes\n"
                      "--------------\n"
                      "a<b>        10\n"
                      "ünïcode   2000\n"
                      "--------------\n"
                      "total     2010\n");
  free(html);
  free(text);
  tbl_free(t);
  return 0;
}

/* Sizes and rates in summaries: units that keep small figures readable. */
TEST_IMPL(format_bytes_and_rates) {
  char b[32];
  st_fmt_rate(b, sizeof b, 185948160, 0.5);
  ASSERT_STR_EQ(b, "372 MB/s");
  st_fmt_rate(b, sizeof b, 5500000, 1.0);
  ASSERT_STR_EQ(b, "5.5 MB/s");
  st_fmt_rate(b, sizeof b, 30, 0.001); /* a 30-byte file: not "0.0 MB/s" */
  ASSERT_STR_EQ(b, "30 kB/s");
  st_fmt_rate(b, sizeof b, 500, 1.0);
  ASSERT_STR_EQ(b, "500 B/s");
  st_fmt_rate(b, sizeof b, 1, 0);
  ASSERT_STR_EQ(b, "-- MB/s");
  return 0;
}

/* The one growable buffer: grows, stays NUL-terminated, refuses past its
 * cap with ST_E2BIG (sticky, nothing of the refused add kept), takes. */
TEST_IMPL(dynbuf_caps) {
  dynbuf b = DYN_INIT(10);
  ASSERT_EQ(dyn_puts(&b, "abc"), 0);
  ASSERT_EQ(dyn_printf(&b, "%d-%s", 42, "x"), 0);
  ASSERT_STR_EQ(b.p, "abc42-x");
  ASSERT_EQ(b.len, 7);
  ASSERT_EQ(dyn_printf(&b, "%s", "toolong"), ST_E2BIG);
  ASSERT_STR_EQ(b.p, "abc42-x"); /* the refused piece is not kept */
  ASSERT_EQ(dyn_putc(&b, 'z'), ST_E2BIG); /* sticky */
  ASSERT(b.cap <= 11);
  ASSERT(dyn_take(&b, NULL) == NULL); /* failed: freed */
  ASSERT(b.p == NULL && b.len == 0 && b.max == 10 && b.err == 0);

  size_t n = 99;
  char *e = dyn_take(&b, &n); /* nothing added: "" */
  ASSERT(e && e[0] == 0 && n == 0);
  free(e);

  dynbuf big = DYN_INIT(1u << 20);
  for (int i = 0; i < 10000; i++) ASSERT_EQ(dyn_printf(&big, "%04d", i % 10000), 0);
  ASSERT_EQ(big.len, 40000);
  ASSERT(memcmp(big.p + 39996, "9999", 5) == 0);
  char *r = dyn_reserve(&big, 100);
  ASSERT(r == big.p + big.len);
  memcpy(r, "hello", 5);
  dyn_commit(&big, 5);
  ASSERT_EQ(big.len, 40005);
  ASSERT_STR_EQ(big.p + 40000, "hello");
  dyn_reset(&big);
  ASSERT(big.len == 0 && big.p[0] == 0);
  ASSERT(dyn_reserve(&big, (1u << 20) + 1) == NULL && big.err == ST_E2BIG);
  dyn_free(&big);
  dyn_free(&big); /* freed twice: a no-op */

  int *arr = NULL;
  size_t cap = 0;
  ASSERT_EQ(dyn_grow_array(&arr, &cap, 17, sizeof *arr, 100), 0);
  ASSERT(cap >= 17 && cap <= 100);
  ASSERT_EQ(dyn_grow_array(&arr, &cap, 101, sizeof *arr, 100), ST_E2BIG);
  ASSERT(cap >= 17 && cap <= 100); /* as it was */
  free(arr);

  strv l = {0};
  ASSERT_EQ(strv_push(&l, "abcdef", 3), 0);
  ASSERT_STR_EQ(l.v[0], "abc");
  strv_free(&l);
  strv_free(&l);
  return 0;
}

/* Relative paths from outside: what is refused, and the walk below a root
 * that makes folders and never follows a symlink. */
TEST_IMPL(safepath_check_and_walk) {
  static const char *const good[] = {"a", "a/b/c", "a.b/..c/c..", ".hidden/x", "a b/c"};
  static const char *const bad[] = {"", "/a", "a//b", "a/", "./a", "a/./b", "..", "a/../b",
                                    "a/.."};
  const char *why = NULL;
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) ASSERT_EQ(sp_check_rel(good[i], 8, &why), 0);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    why = NULL;
    ASSERT_EQ(sp_check_rel(bad[i], 8, &why), -1);
    ASSERT(why != NULL);
  }
  ASSERT_EQ(sp_check_rel("a/b/c", 2, &why), -1);
  ASSERT_CONTAINS(why, "too many");

  char root[] = "/tmp/pk-sp-XXXXXX";
  ASSERT(mkdtemp(root));
  char outside[] = "/tmp/pk-sp-out-XXXXXX";
  ASSERT(mkdtemp(outside));
  int rfd = open(root, O_RDONLY | O_DIRECTORY);
  ASSERT(rfd >= 0);
  char rel[] = "x/y/z.bin";
  const char *leaf = NULL;
  int dfd = sp_open_parent(rfd, rel, &leaf, 1, NULL, NULL);
  ASSERT(dfd >= 0);
  ASSERT_STR_EQ(leaf, "z.bin");
  ASSERT_STR_EQ(rel, "x/y/z.bin"); /* restored */
  close(dfd);
  char p[256];
  snprintf(p, sizeof p, "%s/x/y", root);
  struct stat st;
  ASSERT(stat(p, &st) == 0 && S_ISDIR(st.st_mode));
  /* a symlink on the way, to a folder outside: refused, nothing made there */
  snprintf(p, sizeof p, "%s/link", root);
  ASSERT(symlink(outside, p) == 0);
  char rel2[] = "link/sub/f";
  errno = 0;
  ASSERT(sp_open_parent(rfd, rel2, &leaf, 1, NULL, NULL) < 0);
  ASSERT(errno == ELOOP || errno == ENOTDIR);
  snprintf(p, sizeof p, "%s/sub", outside);
  ASSERT(stat(p, &st) != 0);
  /* a file on the way */
  snprintf(p, sizeof p, "%s/file", root);
  int f = open(p, O_WRONLY | O_CREAT, 0644);
  ASSERT(f >= 0);
  close(f);
  char rel3[] = "file/f";
  errno = 0;
  ASSERT(sp_open_parent(rfd, rel3, &leaf, 1, NULL, NULL) < 0);
  ASSERT_EQ(errno, ENOTDIR);
  close(rfd);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", root, outside);
  ASSERT(system(cmd) == 0);
  return 0;
}

/* A long label is shortened in the middle (its stage word and the end of
 * the path stay), never cutting a code point; a short one is kept. */
TEST_IMPL(progress_label_short) {
  st_progress p;
  memset(&p, 0, sizeof p);
  snprintf(p.unit, sizeof p.unit, "B");
  st_progress_view v;
  snprintf(p.label, sizeof p.label, "download cifar-10-python.tar.gz");
  st_progress_view_of(&p, &v);
  ASSERT_STR_EQ(v.label, "download cifar-10-python.tar.gz");
  snprintf(p.label, sizeof p.label,
           "download /a/very/long/folder/name/that/goes/on/and/on/cifar-10-python.tar.gz");
  st_progress_view_of(&p, &v);
  ASSERT(strncmp(v.label, "download \xe2\x80\xa6", 12) == 0);
  size_t n = strlen(v.label), cps = 0;
  for (size_t i = 0; i < n; i++) cps += ((unsigned char)v.label[i] & 0xC0) != 0x80;
  ASSERT_EQ(cps, ST_PROGRESS_LABEL_SHOWN);
  ASSERT(n > 20 && strcmp(v.label + n - 20, "cifar-10-python.tar.gz" + 2) == 0);
  /* multi-byte code points at the cut: the tail starts on a whole one */
  snprintf(p.label, sizeof p.label, "verify %s",
           "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
           "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
           "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
           "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
           "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
  st_progress_view_of(&p, &v);
  n = strlen(v.label);
  cps = 0;
  for (size_t i = 0; i < n; i++) cps += ((unsigned char)v.label[i] & 0xC0) != 0x80;
  ASSERT_EQ(cps, ST_PROGRESS_LABEL_SHOWN);
  const char *ell = strstr(v.label, "\xe2\x80\xa6");
  ASSERT(ell && (unsigned char)ell[3] == 0xc3);
  return 0;
}

/* Names from outside as text: table of {input, shown}. */
#include "lib/escape.h"
TEST_IMPL(escape_names) {
  static const struct {
    const char *in, *out;
  } rows[] = {
      {"plain name.txt", "plain name.txt"},
      {"caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac"},   /* UTF-8 stays */
      {"a\nb", "a\\x0ab"},
      {"\x1b[2J\x1b]0;t\x07", "\\x1b[2J\\x1b]0;t\\x07"},
      {"tab\there\r", "tab\\x09here\\x0d"},
      {"del\x7f", "del\\x7f"},
      {"bad \xff\xfe utf8 \xc3", "bad \\xff\\xfe utf8 \\xc3"},     /* not UTF-8: bytes */
      {"\xc0\xaf overlong", "\\xc0\\xaf overlong"},
      {"\xed\xa0\x80 surrogate", "\\xed\\xa0\\x80 surrogate"},
      {"c1 \xc2\x9b csi", "c1 \\u009b csi"},
      {"gnp\xe2\x80\xae.exe", "gnp\\u202e.exe"},                  /* a bidi override */
      {"sep\xe2\x80\xa8", "sep\\u2028"},
      {"back\\slash \\x1b", "back\\slash \\x1b"},                 /* shown as it is */
  };
  char out[256], again[256];
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    size_t n = esc_text(out, sizeof out, rows[i].in, strlen(rows[i].in));
    ASSERT_EQ(n, strlen(rows[i].out));
    ASSERT_STR_EQ(out, rows[i].out);
    ASSERT_EQ(esc_needed(rows[i].in, strlen(rows[i].in)), strcmp(rows[i].in, rows[i].out) != 0);
    ASSERT(!esc_needed(out, n));
    esc_text(again, sizeof again, out, n); /* escaping twice changes nothing */
    ASSERT_STR_EQ(again, out);
  }
  /* never an escape cut in half */
  ASSERT_EQ(esc_text(out, 6, "ab\x1b", 3), 2);
  ASSERT_STR_EQ(out, "ab");
  /* esc_name cuts long names with "..." (at a whole code point) */
  char longname[5000];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  esc_buf b;
  const char *s = esc_name(&b, longname);
  ASSERT(strlen(s) < sizeof b.s && !strcmp(s + strlen(s) - 3, "..."));
  ASSERT_STR_EQ(esc_name(&b, NULL), "");
  /* errors and tables escape whatever the caller put in */
  st_error e;
  st_error_clear(&e);
  st_error_set(&e, ST_EUNSAFE, "dir/\x1b[2J", -1, "member \"%s\" refused", "a\nverify: all OK");
  ASSERT_STR_EQ(e.where, "dir/\\x1b[2J");
  ASSERT_STR_EQ(e.text, "member \"a\\x0averify: all OK\" refused");
  char *d = esc_dup("x\x1by");
  ASSERT_STR_EQ(d, "x\\x1by");
  free(d);
  char inplace[32] = "k\x1b";
  esc_inplace(inplace, sizeof inplace);
  ASSERT_STR_EQ(inplace, "k\\x1b");
  return 0;
}

/* Opening what a user names: a FIFO, a socket, a folder are refused at once
 * (this test would time out on a blocking open), saying what they are. */
#include <sys/socket.h>
#include <sys/un.h>
#include "lib/fileio.h"
TEST_IMPL(fileio_never_blocks) {
  char dir[] = "/tmp/pk-fio-XXXXXX";
  ASSERT(mkdtemp(dir));
  char fifo[64], sock[64], file[64];
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  snprintf(sock, sizeof sock, "%s/sock", dir);
  snprintf(file, sizeof file, "%s/file", dir);
  ASSERT(mkfifo(fifo, 0600) == 0);
  int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
  ASSERT(sfd >= 0 && bind(sfd, (struct sockaddr *)&sa, sizeof sa) == 0);
  FILE *f = fopen(file, "w");
  ASSERT(f && fputs("twelve bytes", f) >= 0 && fclose(f) == 0);
  static const struct {
    const char *name;
    int flags;
    unsigned want;
    const char *says;
  } rows[] = {
      {"fifo", O_RDONLY, FIO_FILE, "the manifest is a FIFO, not a regular file"},
      {"fifo", O_WRONLY | O_CREAT | O_TRUNC, FIO_FILE, "the manifest is a FIFO, not a regular file"},
      {"sock", O_RDONLY, FIO_FILE, "the manifest is a socket, not a regular file"},
      {"", O_RDONLY, FIO_FILE, "the manifest is a folder, not a regular file"},
      {"file", O_RDONLY | O_DIRECTORY, FIO_DIR, "the manifest is a regular file, not a folder"},
      {"fifo", O_RDONLY | O_DIRECTORY, FIO_DIR, "the manifest is a FIFO, not a folder"},
      {"none", O_RDONLY, FIO_FILE, "cannot open the manifest: No such file or directory"},
  };
  char p[128];
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, rows[i].name);
    st_error e;
    st_error_clear(&e);
    int fd = fio_open(p, rows[i].flags, rows[i].want, "the manifest", NULL, &e);
    ASSERT(fd < 0 && fd == e.code);
    ASSERT_CONTAINS(e.text, rows[i].says);
    ASSERT_STR_EQ(e.where, p);
  }
  /* what is wanted opens, blocking again; a FIFO only where asked for */
  struct stat st;
  st_error e;
  st_error_clear(&e);
  int fd = fio_open(file, O_RDONLY, FIO_FILE, NULL, &st, &e);
  ASSERT(fd >= 0 && st.st_size == 12 && !(fcntl(fd, F_GETFL) & O_NONBLOCK));
  close(fd);
  fd = fio_open(fifo, O_RDONLY, FIO_FILE | FIO_FIFO, NULL, &st, &e);
  ASSERT(fd >= 0 && S_ISFIFO(st.st_mode) && (fcntl(fd, F_GETFL) & O_NONBLOCK));
  close(fd);
  /* the whole of a file, within a limit */
  char *buf;
  size_t len;
  ASSERT_EQ(fio_read_all(file, 100, "PK_LIMIT_X", "the record", &buf, &len, &e), 0);
  ASSERT(len == 12 && !strcmp(buf, "twelve bytes"));
  free(buf);
  st_error_clear(&e);
  ASSERT_EQ(fio_read_all(file, 11, "PK_LIMIT_X", "the record", &buf, &len, &e), ST_E2BIG);
  ASSERT_CONTAINS(e.text, "the record is 12 bytes; the limit is 11 (PK_LIMIT_X)");
  st_error_clear(&e);
  ASSERT(fio_fopen_write(fifo, "the losses file", &e) == NULL);
  ASSERT_CONTAINS(e.text, "the losses file is a FIFO");
  ASSERT_STR_EQ(fio_kind(S_IFCHR), "a character device");
  ASSERT_STR_EQ(fio_kind(S_IFBLK), "a block device");
  close(sfd);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ASSERT(system(cmd) == 0);
  return 0;
}

/* sp_open_below: nothing outside the root is opened; links are followed by
 * sp_link_stays, %extract's rule. */
TEST_IMPL(safepath_open_below) {
  static const struct {
    const char *rel, *target;
    int stays;
  } links[] = {
      {"l", "a", 1}, {"d/l", "../a", 1}, {"d/l", "../../a", 0}, {"l", "..", 0}, {"l", "/etc", 0},
      {"d/e/l", "../../x/y", 1}, {"d/l", "x/../../y", 0}, {"l", "", 0}, {"l", "./a/./b", 1},
  };
  for (size_t i = 0; i < sizeof links / sizeof *links; i++)
    ASSERT_EQ(sp_link_stays(links[i].rel, links[i].target), links[i].stays);

  char root[] = "/tmp/pk-spb-XXXXXX";
  ASSERT(mkdtemp(root));
  char p[300], q[300];
  snprintf(p, sizeof p, "%s/outside.txt", root);
  FILE *f = fopen(p, "w");
  ASSERT(f && fputs("secret", f) >= 0 && fclose(f) == 0);
  snprintf(q, sizeof q, "%s/r", root);
  snprintf(p, sizeof p, "%s/r/d", root);
  ASSERT(mkdir(q, 0755) == 0 && mkdir(p, 0755) == 0);
  snprintf(p, sizeof p, "%s/r/d/in.txt", root);
  f = fopen(p, "w");
  ASSERT(f && fputs("inside", f) >= 0 && fclose(f) == 0);
  snprintf(p, sizeof p, "%s/r/up", root);
  ASSERT(symlink("../outside.txt", p) == 0);
  snprintf(p, sizeof p, "%s/r/abs", root);
  snprintf(q, sizeof q, "%s/outside.txt", root);
  ASSERT(symlink(q, p) == 0);
  snprintf(p, sizeof p, "%s/r/good", root);
  ASSERT(symlink("d/in.txt", p) == 0);
  snprintf(p, sizeof p, "%s/r/d/back", root);
  ASSERT(symlink("../good", p) == 0); /* a chain, inside */
  snprintf(p, sizeof p, "%s/r/loop", root);
  ASSERT(symlink("loop", p) == 0);
  snprintf(p, sizeof p, "%s/r/fifo", root);
  ASSERT(mkfifo(p, 0600) == 0);
  snprintf(p, sizeof p, "%s/r", root);
  int rfd = open(p, O_RDONLY | O_DIRECTORY);
  ASSERT(rfd >= 0);
  static const struct {
    const char *rel;
    unsigned want;
    int status;
    const char *link;
  } rows[] = {
      {"d/in.txt", FIO_FILE, SP_FOUND, ""},     {"good", FIO_FILE, SP_FOUND, ""},
      {"d/back", FIO_FILE, SP_FOUND, ""},       {"d", FIO_DIR, SP_FOUND, ""},
      {"", FIO_DIR, SP_FOUND, ""},              {"up", FIO_FILE, SP_OUTSIDE, "up"},
      {"abs", FIO_FILE, SP_OUTSIDE, "abs"},     {"d/nope", FIO_FILE, SP_MISSING, ""},
      {"d/in.txt/x", FIO_FILE, SP_MISSING, ""}, {"fifo", FIO_FILE, SP_OTHER, ""},
      {"d", FIO_FILE, SP_OTHER, ""},            {"loop", FIO_FILE, SP_ERROR, ""},
  };
  sp_found *found = malloc(sizeof *found);
  ASSERT(found);
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    int fd = sp_open_below(rfd, rows[i].rel, rows[i].want, found);
    if (found->status != rows[i].status)
      fprintf(stderr, "sp_open_below(%s): status %d, expected %d\n", rows[i].rel, found->status,
              rows[i].status);
    ASSERT_EQ(found->status, rows[i].status);
    ASSERT_EQ(fd >= 0, rows[i].status == SP_FOUND);
    if (rows[i].status == SP_OUTSIDE) ASSERT_STR_EQ(found->link, rows[i].link);
    if (fd >= 0 && rows[i].want == FIO_FILE) {
      char b[16] = "";
      ASSERT(read(fd, b, sizeof b - 1) == 6 && !strcmp(b, "inside"));
    }
    if (fd >= 0) close(fd);
  }
  free(found);
  close(rfd);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  ASSERT(system(cmd) == 0);
  return 0;
}

/* A split's memory shared with a holder outside the session (the Python
 * module's arrays): it outlives the split and the dataset a later load
 * replaces, the struct moves with its ownership (as %load keeping the other
 * split does), and the last release frees it, malloc'd or mmap'd (a leak or
 * a second free is a failure under ASan and valgrind). */
static void fill_split(ss_split *sp, size_t n, int mapped, uint8_t seed) {
  memset(sp, 0, sizeof *sp);
  sp->n = n;
  sp->files = 1;
  size_t bytes = n * SS_IMAGE_BYTES;
  if (mapped) {
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(m != MAP_FAILED);
    sp->pixels = m;
    sp->map_len = bytes;
  } else {
    sp->pixels = malloc(bytes);
    ASSERT(sp->pixels);
  }
  sp->labels = malloc(n);
  ASSERT(sp->labels);
  for (size_t i = 0; i < bytes; i++) sp->pixels[i] = (uint8_t)(seed + i);
  for (size_t i = 0; i < n; i++) sp->labels[i] = (uint8_t)(seed + i % 10);
}

static int holds(const ss_block *b, size_t n, uint8_t seed) {
  if (ss_block_count(b) != n) return 0;
  for (size_t i = 0; i < n * SS_IMAGE_BYTES; i++)
    if (ss_block_pixels(b)[i] != (uint8_t)(seed + i)) return 0;
  for (size_t i = 0; i < n; i++)
    if (ss_block_labels(b)[i] != (uint8_t)(seed + i % 10)) return 0;
  return 1;
}

TEST_IMPL(session_shared_split) {
  for (int mapped = 0; mapped < 2; mapped++) {
    ss_split sp;
    fill_split(&sp, 3, mapped, 7);
    uint8_t *px = sp.pixels;
    ss_block *a = ss_split_share(&sp), *b = ss_split_share(&sp);
    ASSERT(a && a == b && sp.shared == a);
    ASSERT(sp.pixels == px && ss_block_pixels(a) == px); /* no copy, nothing moved */
    ss_split_free(&sp);                                 /* the split goes first */
    ASSERT(sp.pixels == NULL && sp.shared == NULL);
    ASSERT(holds(a, 3, 7));
    ss_block_release(a);
    ASSERT(holds(b, 3, 7));
    ss_block_release(b); /* the last one frees */
    ss_block_release(NULL);
  }

  /* A dataset replaced by a later load of the same name, under a live
   * reference; the other split moved into the new dataset keeps its own. */
  ss_session *s = ss_session_new();
  ASSERT(s);
  ss_dataset *d1 = ss_dataset_new("cifar10");
  fill_split(&d1->train, 4, 1, 1);
  fill_split(&d1->test, 2, 0, 2);
  ss_session_put_dataset(s, d1);
  ss_block *train1 = ss_split_share(&ss_session_dataset(s, "cifar10")->train);
  ss_block *test1 = ss_split_share(&ss_session_dataset(s, "cifar10")->test);
  ASSERT(train1 && test1);
  ss_dataset *d2 = ss_dataset_new("cifar10");
  fill_split(&d2->train, 5, 1, 3);
  d2->test = d1->test; /* as %load --split train keeps the earlier test split */
  memset(&d1->test, 0, sizeof d1->test);
  ss_session_put_dataset(s, d2); /* frees d1 */
  ASSERT(ss_session_dataset(s, NULL) == d2);
  ASSERT(holds(train1, 4, 1));
  ASSERT(d2->test.shared == test1 && holds(test1, 2, 2));
  ss_block_release(test1); /* the dataset still holds the test split */
  ASSERT(holds(test1, 2, 2) && d2->test.pixels == ss_block_pixels(test1));
  ss_block *train2 = ss_split_share(&d2->train);
  ASSERT(train2 && train2 != train1 && holds(train2, 5, 3));
  ss_session_free(s); /* frees d2 and its test split; train2 lives on */
  ASSERT(holds(train2, 5, 3) && holds(train1, 4, 1));
  ss_block_release(train2);
  ss_block_release(train1);

  /* an empty split (no pixels) shares too */
  ss_split e;
  memset(&e, 0, sizeof e);
  e.labels = malloc(1);
  ss_block *eb = ss_split_share(&e);
  ASSERT(eb && ss_block_count(eb) == 0 && ss_block_pixels(eb) == NULL);
  ss_split_free(&e);
  ss_block_release(eb);
  return 0;
}
