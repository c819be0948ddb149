/*
 * core.h -- the kernel's state and its message table.
 *
 * Threads (server.c): the main thread owns shell and stdin and runs cells;
 * the control thread owns control; the iopub thread owns the PUB socket and
 * forwards what every other thread pushes to it over inproc (one PUSH per
 * producer thread, so each thread's messages keep their order); the
 * heartbeat thread echoes; the signal thread takes SIGINT and SIGTERM.
 */
#ifndef PK_CORE_H
#define PK_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include <jansson.h>

#include "lib/session.h"
#include "conn.h"
#include "wire.h"

#define PK_IMPLEMENTATION_VERSION "0.1.0"
#define PK_LANGUAGE "pipeline"
#define PK_LANGUAGE_VERSION "1.0"
#define PK_IOPUB_INPROC "inproc://iopub"
#define PK_IOPUB_STOP "\x01stop" /* one-frame message: the iopub thread drains and ends */
#define PK_CELL_ECHO_BYTES 4096  /* of a cell over PK_LIMIT_CELL_BYTES: echoed and kept */

/* One executed cell (history_request). */
typedef struct pk_hist_entry {
  int line;       /* execution_count it ran as */
  char *code;
  char *output;   /* its execute_result text/plain, or NULL */
} pk_hist_entry;

typedef struct pk_kernel {
  pk_conn conn;
  wire_key key;
  char session[37];          /* uuid of this kernel process */
  void *zctx;
  void *shell, *stdin_sock, *control, *hb, *pub, *pull;
  void *push_main, *push_ctrl; /* per-thread PUSH ends of the iopub pipe */
  atomic_int cancel;         /* the running cell was interrupted */
  atomic_int running;        /* a cell is running (SIGINT matters only then) */
  atomic_int shutdown;       /* shutdown_request or SIGTERM */
  atomic_int restart;        /* the shutdown_request asked for a restart */
  atomic_long shutdown_at_ms; /* monotonic ms when shutdown was requested */
  /* Main thread only: */
  int exec_count;
  pk_hist_entry *hist;
  size_t n_hist, cap_hist;
  size_t hist_bytes;         /* code and output bytes held by hist */
  ss_session *sess;
  pthread_t main_thread;
} pk_kernel;

/* Where a request came from: the socket to reply on and this thread's PUSH
 * to the iopub thread. */
typedef struct pk_chan {
  pk_kernel *k;
  void *sock;
  void *pub;
  int channel;               /* CONN_SHELL or CONN_CONTROL */
} pk_chan;

/* Server log (stderr). */
void pk_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sends frames on a socket (multipart). Returns 0 or -1. */
int srv_send_frames(void *sock, const wire_buf *f, size_t n);
/* Receives one multipart message and parses it. Returns 0 with *out filled,
 * 1 when the message was malformed (logged and dropped), -1 on a socket
 * error (errno: ETERM when the context is shutting down, EAGAIN). */
int srv_recv(pk_kernel *k, void *sock, int flags, const char *chan_name, wire_msg *out);
long srv_now_ms(void);

/* A JSON string of arbitrary bytes, invalid UTF-8 replaced (U+FFFD). */
json_t *core_text_json(const char *s, size_t len);
/* Publish on iopub with the given parent header (NULL: {}); steals content. */
void core_publish(pk_chan *ch, const char *msg_type, json_t *parent, json_t *content);
void core_status(pk_chan *ch, json_t *parent, const char *state);
/* Reply to req on ch->sock; steals content. */
void core_reply(pk_chan *ch, const wire_msg *req, const char *msg_type, json_t *content);
/* busy, the handler for req's msg_type, idle. On shell, a failed execute with
 * stop_on_error then aborts the executes already queued. */
void core_dispatch(pk_chan *ch, wire_msg *req);
json_t *core_kernel_info(void);

/* Completion of code at byte offset pos (also used by the C tests): magic
 * names at the start of a line, --options of the line's magic, file paths.
 * Returns a new array of matches; [*start, *end) is the replaced byte range. */
json_t *core_complete(const char *code, size_t len, size_t pos, size_t *start, size_t *end);

/* ---- exec.c: one cell ---- */
typedef struct pk_cell_result {
  int rc;                 /* 0 or ST_E* */
  st_error err;
  int failed_line;        /* 1-based, 0 when none */
  char *failed_text;      /* the failing line (malloc'd) */
  char *result;           /* execute_result text (malloc'd) or NULL */
  json_t *payload;        /* array (new reference) */
} pk_cell_result;

/* Runs code as a cell on the main thread, publishing its output with req as
 * parent. allow_stdin 0 makes %input fail with StdinNotImplementedError.
 * The caller sets k->running (and clears k->cancel) first; this clears
 * k->running when the cell ends. */
void exec_cell(pk_chan *ch, const wire_msg *req, const char *code, size_t len,
               int allow_stdin, pk_cell_result *out);
void exec_result_free(pk_cell_result *r);

#endif
