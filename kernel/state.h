/*
 * state.h -- the kernel's state, shared by the message table (core.c), the
 * cell runner (exec.c) and the message senders (reply.c); and pk_chan, the
 * channel a request came in on.
 *
 * The flags are atomics: the control and signal threads set them while the
 * main thread runs a cell. Everything below "main thread only" belongs to
 * the thread that serves shell.
 */
#ifndef PK_STATE_H
#define PK_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "lib/session.h"
#include "transport.h"
#include "wire.h"

/* One executed cell (history_request). */
typedef struct pk_hist_entry {
  int line;       /* execution_count it ran as */
  char *code;
  char *output;   /* its execute_result text/plain, or NULL */
} pk_hist_entry;

typedef struct pk_kernel {
  pk_transport *tr;          /* where messages go (borrowed) */
  wire_key key;              /* signs every message (borrowed bytes) */
  char session[37];          /* uuid of this kernel process */
  atomic_int cancel;         /* the running cell was interrupted */
  atomic_int running;        /* a cell is running (SIGINT matters only then) */
  atomic_int shutdown;       /* shutdown_request or SIGTERM */
  atomic_int restart;        /* the shutdown_request asked for a restart */
  atomic_long shutdown_at_ms; /* tr->now_ms when shutdown was requested */
  /* Main thread only: */
  int exec_count;
  pk_hist_entry *hist;
  size_t n_hist, cap_hist;
  size_t hist_bytes;         /* code and output bytes held by hist */
  ss_session *sess;
  pthread_t main_thread;     /* the thread that runs cells */
  /* After a failed execute with stop_on_error: an execute that arrives
   * before abort_until_ms (tr->now_ms) and is dated before abort_before_us
   * (its header's date, microseconds since the epoch) is aborted. */
  long abort_until_ms;
  long long abort_before_us;
} pk_kernel;

/* Where a request came from: CONN_SHELL (the main thread) or CONN_CONTROL
 * (the control thread). Replies go back on it; what its thread publishes
 * keeps its order. */
typedef struct pk_chan {
  pk_kernel *k;
  int channel;
} pk_chan;

#endif
