/*
 * cli.c -- `pipekernel run [options] CELL...`: each argument is a cell (one
 * or more magic lines); they run in order in one session, and the first
 * failure ends the run with exit status 1 (2 for usage errors, 130 for an
 * interrupt). Displays print their text/plain; with --display-dir DIR the
 * image/png and image/svg+xml parts are also written there.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kernel/magic.h"
#include "lib/dynbuf.h"
#include "lib/fileio.h"
#include "lib/limits.h"
#include "lib/session.h"
#include "cli.h"

static atomic_int g_cancel;
static int g_tty;
static int g_quiet;
static const char *g_display_dir;
static int g_display_n;
static int g_progress_active; /* a \r line is on the terminal */

static void on_sigint(int sig) {
  (void)sig;
  if (atomic_load(&g_cancel)) _exit(130); /* second interrupt: give up */
  atomic_store(&g_cancel, 1);
}

static void end_progress_line(void) {
  if (g_progress_active) {
    fputc('\n', stderr);
    g_progress_active = 0;
  }
}

static void cli_write(st_ctx *c, int stream, const char *buf, size_t len) {
  (void)c;
  end_progress_line();
  FILE *f = stream == 2 ? stderr : stdout;
  fwrite(buf, 1, len, f);
  fflush(f);
}

static void save_display(const st_mime *m) {
  const char *ext = strcmp(m->type, "image/png") == 0 ? "png"
                    : strcmp(m->type, "image/svg+xml") == 0 ? "svg"
                    : strcmp(m->type, "text/html") == 0 ? "html" : NULL;
  if (!ext) return;
  char path[4096];
  snprintf(path, sizeof path, "%s/display-%03d.%s", g_display_dir, g_display_n, ext);
  st_error e;
  st_error_clear(&e);
  FILE *f = fio_fopen_write(path, NULL, &e); /* never blocks on a FIFO at that name */
  if (!f) return;
  fwrite(m->data, 1, m->len, f);
  fclose(f);
}

static void cli_display(st_ctx *c, const st_mime *items, int n, const char *id,
                        int update) {
  (void)c;
  (void)id;
  if (update) return; /* a terminal shows the final state only once */
  end_progress_line();
  for (int i = 0; i < n; i++)
    if (strcmp(items[i].type, "text/plain") == 0) {
      fwrite(items[i].data, 1, items[i].len, stdout);
      if (items[i].len && ((const char *)items[i].data)[items[i].len - 1] != '\n')
        fputc('\n', stdout);
      fflush(stdout);
    }
  if (g_display_dir) {
    for (int i = 0; i < n; i++) save_display(&items[i]);
    g_display_n++;
  }
}

static void cli_progress(st_ctx *c, const st_progress *p) {
  (void)c;
  if (g_quiet) return;
  char line[1024];
  st_progress_view v;
  st_progress_view_of(p, &v);
  const char *state = p->state == ST_PROGRESS_DONE ? " done"
                      : p->state == ST_PROGRESS_FAILED ? " failed"
                      : p->state == ST_PROGRESS_CANCELLED ? " interrupted" : "";
  snprintf(line, sizeof line, "%s [%s] %3.0f%% %s %s %.1fs%s", v.label, v.bar,
           v.frac * 100, v.amount, v.rate, p->elapsed, state);
  if (g_tty) {
    fprintf(stderr, "\r%s\033[K", line);
    g_progress_active = 1;
    if (p->state != ST_PROGRESS_RUNNING) end_progress_line();
  } else if (p->state != ST_PROGRESS_RUNNING) {
    fprintf(stderr, "%s\n", line);
  }
  fflush(stderr);
}

static int cli_cancelled(st_ctx *c) {
  (void)c;
  return atomic_load(&g_cancel);
}

static void cli_result(st_ctx *c, const char *text) {
  (void)c;
  end_progress_line();
  printf("%s\n", text);
  fflush(stdout);
}

static void cli_page(st_ctx *c, const char *text) {
  (void)c;
  end_progress_line();
  fputs(text, stdout);
  fflush(stdout);
}

static int cli_input(st_ctx *c, const char *prompt, int password, char **out,
                     st_error *err) {
  (void)c;
  (void)password;
  end_progress_line();
  fprintf(stderr, "%s", prompt);
  fflush(stderr);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, stdin);
  if (n < 0) {
    free(line);
    return st_error_set(err, ST_ESTDIN, "stdin", -1, "end of input");
  }
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
  *out = line;
  return 0;
}

static const char *lookup(void *ud, const char *name) {
  return ss_session_get((ss_session *)ud, name);
}

static int cli_run_line(st_ctx *c, const char *line, st_error *err) {
  return mg_run_line(c, line, NULL, lookup, c->session, err);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: pipekernel run [--quiet] [--display-dir DIR] CELL...\n"
          "       pipekernel run --list\n"
          "       pipekernel help [--markdown] [NAME]\n\n"
          "Runs each CELL (lines of %%magics) in order in one session, e.g.\n"
          "  pipekernel run '%%mkdata /tmp/d' '%%md5 /tmp/d/cifar-10-python.tar.gz'\n"
          "A CELL of '-' reads a cell from standard input.\n");
}

/* A cell from f, at most PK_LIMIT_CELL_BYTES (as for a kernel's execute);
 * NULL with a message on stderr when it is longer or unreadable. */
static char *read_cell(FILE *f) {
  dynbuf b = DYN_INIT(PK_LIMIT_CELL_BYTES);
  char chunk[65536];
  while (!b.err) {
    size_t n = fread(chunk, 1, sizeof chunk, f);
    if (n == 0) break;
    dyn_add(&b, chunk, n);
  }
  if (b.err == ST_E2BIG)
    fprintf(stderr, "pipekernel run: the cell on standard input is over %u bytes "
            "(PK_LIMIT_CELL_BYTES)\n", (unsigned)PK_LIMIT_CELL_BYTES);
  else if (b.err || ferror(f))
    fprintf(stderr, "pipekernel run: cannot read the cell on standard input\n");
  if (ferror(f)) dyn_free(&b);
  return dyn_take(&b, NULL);
}

int cli_main(int argc, char **argv) {
  int i = 1;
  for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (strcmp(argv[i], "--quiet") == 0) g_quiet = 1;
    else if (strcmp(argv[i], "--display-dir") == 0 && i + 1 < argc) g_display_dir = argv[++i];
    else if (strcmp(argv[i], "--list") == 0) {
      for (size_t k = 0; k < st_registry_count(); k++)
        printf("%s\n", st_registry_at(k)->usage);
      return 0;
    } else if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "pipekernel run: unknown option %s\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  g_tty = isatty(2);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  ss_session *sess = ss_session_new();
  if (!sess) return 1;
  st_ctx ctx = {0};
  ctx.session = sess;
  ctx.write = cli_write;
  ctx.display = cli_display;
  ctx.progress = cli_progress;
  ctx.cancelled = cli_cancelled;
  ctx.result = cli_result;
  ctx.page = cli_page;
  ctx.input = cli_input;
  ctx.run_line = cli_run_line;

  int status = 0;
  for (; i < argc && !status; i++) {
    char *stdin_cell = NULL;
    const char *cell = argv[i];
    if (strcmp(cell, "-") == 0) {
      stdin_cell = read_cell(stdin);
      if (!stdin_cell) { status = 1; break; }
      cell = stdin_cell;
    }
    st_error err;
    st_error_clear(&err);
    int line = 0;
    int rc = mg_run_cell(&ctx, cell, strlen(cell), lookup, sess, &line, &err);
    if (rc) {
      char msg[4096];
      st_error_format(&err, msg, sizeof msg);
      end_progress_line();
      fprintf(stderr, "%s: %s\n", st_errname(rc), msg);
      status = rc == ST_ECANCELED ? 130 : 1;
    }
    free(stdin_cell);
  }
  ss_session_free(sess);
  return status;
}
