/*
 * server.c -- ZeroMQ sockets and threads, signals, and kernel_main.
 *
 *   main thread     shell ROUTER (requests run here, in order), stdin ROUTER
 *   control thread  control ROUTER: kernel_info, shutdown, interrupt while
 *                   a cell runs
 *   iopub thread    PUB; forwards what the inproc PULL receives from one
 *                   PUSH per producer thread
 *   heartbeat       zmq_proxy(hb, hb): echoes every message
 *   signal thread   sigwait: SIGINT sets the cancel flag while a cell runs
 *                   (nothing at rest), SIGTERM shuts down cleanly
 *
 * SIGINT/SIGTERM are blocked before any thread exists, so only the signal
 * thread ever takes them. Shutdown: the main loop sees the flag, stops the
 * iopub thread after it drained, shuts the context down (control and
 * heartbeat wake with ETERM), closes every socket and terminates the
 * context. A watchdog in the signal thread exits the process if that takes
 * longer than PK_SHUTDOWN_GRACE_MS.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "lib/limits.h"
#include "kernel.h"
#include "server.h"

#ifndef PK_SHUTDOWN_GRACE_MS /* `make valgrind` raises it: everything is slower there */
#define PK_SHUTDOWN_GRACE_MS 900 /* exit anyway after this (clients wait 2.5 s) */
#endif
#define PK_LINGER_MS 500

void pk_log(const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "pipekernel[%d]: %s\n", (int)getpid(), msg);
}

long srv_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int srv_send_frames(void *sock, const wire_buf *f, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int flags = i + 1 < n ? ZMQ_SNDMORE : 0;
    while (zmq_send(sock, f[i].p, f[i].len, flags) < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
  }
  return 0;
}

/* libzmq refuses a frame over ZMQ_MAXMSGSIZE (PK_LIMIT_MSG_BYTES) before
 * allocating it and closes that connection. It has no bound on the frames of
 * one message, and queues a message whole before zmq_msg_recv sees it; here
 * the frames are counted and summed as they are taken, and once a limit is
 * passed the frames taken so far are released at once and the rest one by
 * one, then the message is logged and dropped. */
int srv_recv(pk_kernel *k, void *sock, int flags, const char *chan_name, wire_msg *out) {
  zmq_msg_t parts[PK_LIMIT_MSG_FRAMES];
  size_t n = 0, dropped = 0, total = 0;
  int more = 1, rc = 0;
  while (more) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    int r;
    while ((r = zmq_msg_recv(&m, sock, n || dropped ? 0 : flags)) < 0 && errno == EINTR) {}
    if (r < 0) {
      int e = errno;
      zmq_msg_close(&m);
      for (size_t i = 0; i < n; i++) zmq_msg_close(&parts[i]);
      errno = e;
      return -1;
    }
    more = zmq_msg_more(&m);
    total += zmq_msg_size(&m);
    if (!dropped && n < PK_LIMIT_MSG_FRAMES && total <= PK_LIMIT_MSG_BYTES) {
      parts[n++] = m;
    } else {
      zmq_msg_close(&m);
      for (size_t i = 0; i < n; i++) zmq_msg_close(&parts[i]);
      dropped += n + 1;
      n = 0;
    }
  }
  char why[512];
  if (dropped) {
    if (total > PK_LIMIT_MSG_BYTES)
      snprintf(why, sizeof why, "%zu bytes in %zu frames; the limit is %u bytes", total, dropped,
               (unsigned)PK_LIMIT_MSG_BYTES);
    else
      snprintf(why, sizeof why, "%zu frames; the limit is %d", dropped, PK_LIMIT_MSG_FRAMES);
    rc = -1;
  } else {
    wire_frame fr[PK_LIMIT_MSG_FRAMES];
    for (size_t i = 0; i < n; i++) fr[i] = (wire_frame){zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i])};
    rc = wire_parse(fr, n, &k->key, out, why, sizeof why);
  }
  for (size_t i = 0; i < n; i++) zmq_msg_close(&parts[i]);
  if (rc) {
    pk_log("%s: dropped a message: %s", chan_name, why);
    return 1;
  }
  return 0;
}

/* ---- threads ---------------------------------------------------------------- */

static void *iopub_thread(void *arg) {
  pk_kernel *k = arg;
  int draining = 0;
  for (;;) {
    if (draining) {
      zmq_pollitem_t it = {k->pull, 0, ZMQ_POLLIN, 0};
      if (zmq_poll(&it, 1, 20) <= 0) break; /* nothing more within 20 ms */
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    int first = 1, stop = 0;
    for (;;) {
      if (zmq_msg_recv(&m, k->pull, 0) < 0) {
        if (errno == EINTR) continue;
        zmq_msg_close(&m);
        goto out; /* ETERM */
      }
      int more = zmq_msg_more(&m);
      if (first && !more && zmq_msg_size(&m) == sizeof PK_IOPUB_STOP - 1 &&
          memcmp(zmq_msg_data(&m), PK_IOPUB_STOP, sizeof PK_IOPUB_STOP - 1) == 0) {
        stop = 1;
        break;
      }
      first = 0;
      if (zmq_msg_send(&m, k->pub, more ? ZMQ_SNDMORE : 0) < 0) zmq_msg_close(&m);
      if (!more) break;
      zmq_msg_init(&m);
    }
    if (stop) {
      zmq_msg_close(&m);
      draining = 1;
    }
  }
out:;
  int linger = PK_LINGER_MS;
  zmq_setsockopt(k->pub, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(k->pub);
  zmq_close(k->pull);
  k->pub = k->pull = NULL;
  return NULL;
}

static void *hb_thread(void *arg) {
  pk_kernel *k = arg;
  while (zmq_proxy(k->hb, k->hb, NULL) < 0 && errno == EINTR) {}
  int linger = 0;
  zmq_setsockopt(k->hb, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(k->hb);
  k->hb = NULL;
  return NULL;
}

static void *control_thread(void *arg) {
  pk_kernel *k = arg;
  pk_chan ch = {k, k->control, k->push_ctrl, CONN_CONTROL};
  for (;;) {
    wire_msg msg;
    int r = srv_recv(k, k->control, 0, "control", &msg);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      break; /* ETERM */
    }
    if (r > 0) continue;
    core_dispatch(&ch, &msg);
    wire_msg_free(&msg);
  }
  int linger = PK_LINGER_MS, zero = 0;
  zmq_setsockopt(k->control, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(k->control);
  zmq_setsockopt(k->push_ctrl, ZMQ_LINGER, &zero, sizeof zero);
  zmq_close(k->push_ctrl);
  k->control = k->push_ctrl = NULL;
  return NULL;
}

static sigset_t g_sigs;
static atomic_int g_sig_done;

static void *signal_thread(void *arg) {
  pk_kernel *k = arg;
  while (!atomic_load(&g_sig_done)) {
    struct timespec ts = {0, 100 * 1000000L};
    int sig = sigtimedwait(&g_sigs, NULL, &ts);
    if (sig == SIGINT) {
      if (atomic_load(&k->running)) {
        atomic_store(&k->cancel, 1);
        pk_log("SIGINT: interrupting the running cell");
      } else {
        pk_log("SIGINT at rest: ignored");
      }
    } else if (sig == SIGTERM) {
      pk_log("SIGTERM: shutting down");
      if (!atomic_load(&k->shutdown)) atomic_store(&k->shutdown_at_ms, srv_now_ms());
      atomic_store(&k->cancel, 1);
      atomic_store(&k->shutdown, 1);
    }
    if (atomic_load(&k->shutdown) && !atomic_load(&g_sig_done) &&
        srv_now_ms() - atomic_load(&k->shutdown_at_ms) > PK_SHUTDOWN_GRACE_MS) {
      pk_log("shutdown did not finish within %d ms; exiting now", PK_SHUTDOWN_GRACE_MS);
      _exit(0);
    }
  }
  return NULL;
}

/* ---- sockets ------------------------------------------------------------------ */

static void *make_socket(pk_kernel *k, int type, int channel, char *why, size_t cap) {
  void *s = zmq_socket(k->zctx, type);
  if (!s) {
    snprintf(why, cap, "zmq_socket: %s", zmq_strerror(errno));
    return NULL;
  }
  int64_t maxsz = (int64_t)PK_LIMIT_MSG_BYTES;
  int linger = PK_LINGER_MS;
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  if (type == ZMQ_ROUTER) zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
  if (type == ZMQ_REP) {
    int64_t hbmax = 1 << 16;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &hbmax, sizeof hbmax);
  }
  char ep[512];
  conn_endpoint(&k->conn, channel, ep, sizeof ep);
  if (zmq_bind(s, ep) != 0) {
    snprintf(why, cap, "cannot bind the %s socket to %s: %s", conn_channel_name(channel), ep,
             zmq_strerror(errno));
    zmq_close(s);
    return NULL;
  }
  return s;
}

/* Shell connections that end: a client that went away, or one whose frame
 * was over ZMQ_MAXMSGSIZE (libzmq closes the connection without telling the
 * socket, so this log line is the only trace of such a request). */
#define PK_SHELL_MONITOR "inproc://shell-monitor"

static void *shell_monitor(pk_kernel *k) {
  if (zmq_socket_monitor(k->shell, PK_SHELL_MONITOR, ZMQ_EVENT_DISCONNECTED) != 0) return NULL;
  void *mon = zmq_socket(k->zctx, ZMQ_PAIR);
  if (mon && zmq_connect(mon, PK_SHELL_MONITOR) != 0) {
    zmq_close(mon);
    mon = NULL;
  }
  return mon;
}

static void shell_monitor_read(void *mon) {
  for (;;) {
    zmq_msg_t ev, addr;
    zmq_msg_init(&ev);
    if (zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&ev);
      return;
    }
    zmq_msg_init(&addr);
    if (zmq_msg_more(&ev)) zmq_msg_recv(&addr, mon, 0);
    uint16_t id = 0;
    if (zmq_msg_size(&ev) >= 2) memcpy(&id, zmq_msg_data(&ev), 2);
    if (id == ZMQ_EVENT_DISCONNECTED)
      pk_log("shell: a client connection on %.*s closed (the client went away, or it sent a "
             "frame over %u bytes, which is refused unread and gets no reply)",
             (int)zmq_msg_size(&addr), (const char *)zmq_msg_data(&addr),
             (unsigned)PK_LIMIT_MSG_BYTES);
    zmq_msg_close(&addr);
    zmq_msg_close(&ev);
  }
}

static void close0(void **s) {
  if (*s) {
    int zero = 0;
    zmq_setsockopt(*s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(*s);
    *s = NULL;
  }
}

int server_run(pk_kernel *k) {
  char why[1024] = "";
  int status = 1;
  pthread_t th_iopub, th_hb, th_ctrl, th_sig;
  int started_iopub = 0, started_hb = 0, started_ctrl = 0, started_sig = 0;
  void *mon = NULL;

  /* Signals first: every thread created from here on inherits the mask. */
  sigemptyset(&g_sigs);
  sigaddset(&g_sigs, SIGINT);
  sigaddset(&g_sigs, SIGTERM);
  sigaddset(&g_sigs, SIGUSR2); /* wakes the signal thread at exit */
  pthread_sigmask(SIG_BLOCK, &g_sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  k->main_thread = pthread_self();
  k->zctx = zmq_ctx_new();
  if (!k->zctx) {
    pk_log("zmq_ctx_new: %s", zmq_strerror(errno));
    return 1;
  }
  int ok = (k->shell = make_socket(k, ZMQ_ROUTER, CONN_SHELL, why, sizeof why)) &&
           (k->control = make_socket(k, ZMQ_ROUTER, CONN_CONTROL, why, sizeof why)) &&
           (k->stdin_sock = make_socket(k, ZMQ_ROUTER, CONN_STDIN, why, sizeof why)) &&
           (k->pub = make_socket(k, ZMQ_PUB, CONN_IOPUB, why, sizeof why)) &&
           (k->hb = make_socket(k, ZMQ_REP, CONN_HB, why, sizeof why));
  if (ok) {
    k->pull = zmq_socket(k->zctx, ZMQ_PULL);
    k->push_main = zmq_socket(k->zctx, ZMQ_PUSH);
    k->push_ctrl = zmq_socket(k->zctx, ZMQ_PUSH);
    ok = k->pull && k->push_main && k->push_ctrl && zmq_bind(k->pull, PK_IOPUB_INPROC) == 0 &&
         zmq_connect(k->push_main, PK_IOPUB_INPROC) == 0 &&
         zmq_connect(k->push_ctrl, PK_IOPUB_INPROC) == 0;
    if (!ok) snprintf(why, sizeof why, "inproc iopub pipe: %s", zmq_strerror(errno));
  }
  if (ok) {
    /* Unbounded inproc queues: a producer never blocks or drops. */
    int zero = 0;
    zmq_setsockopt(k->push_main, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(k->push_ctrl, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(k->pull, ZMQ_RCVHWM, &zero, sizeof zero);
    /* PUB drops for a subscriber past its high-water mark: leave room for
     * bursts of output (streams are batched, so this is rarely reached). */
    int pubhwm = 100000;
    zmq_setsockopt(k->pub, ZMQ_SNDHWM, &pubhwm, sizeof pubhwm);
    ok = pthread_create(&th_sig, NULL, signal_thread, k) == 0 && (started_sig = 1) &&
         pthread_create(&th_iopub, NULL, iopub_thread, k) == 0 && (started_iopub = 1) &&
         pthread_create(&th_hb, NULL, hb_thread, k) == 0 && (started_hb = 1) &&
         pthread_create(&th_ctrl, NULL, control_thread, k) == 0 && (started_ctrl = 1);
    if (!ok) snprintf(why, sizeof why, "cannot start threads");
  }
  if (!ok) {
    pk_log("%s", why);
    fprintf(stderr, "pipekernel: %s\n", why);
    atomic_store(&k->shutdown_at_ms, srv_now_ms());
    atomic_store(&k->shutdown, 1);
  } else {
    pk_chan ch = {k, k->shell, k->push_main, CONN_SHELL};
    core_status(&ch, NULL, "starting");
    char ep[512];
    conn_endpoint(&k->conn, CONN_SHELL, ep, sizeof ep);
    pk_log("serving on %s (session %s)", ep, k->session);
    mon = shell_monitor(k);
    status = 0;
    while (!atomic_load(&k->shutdown)) {
      zmq_pollitem_t it[2] = {{k->shell, 0, ZMQ_POLLIN, 0}, {mon, 0, ZMQ_POLLIN, 0}};
      int r = zmq_poll(it, mon ? 2 : 1, 50);
      if (r < 0) {
        if (errno == EINTR) continue;
        pk_log("shell poll: %s", zmq_strerror(errno));
        break;
      }
      if (mon && (it[1].revents & ZMQ_POLLIN)) shell_monitor_read(mon);
      if (!(it[0].revents & ZMQ_POLLIN)) continue;
      wire_msg msg;
      r = srv_recv(k, k->shell, ZMQ_DONTWAIT, "shell", &msg);
      if (r != 0) continue;
      core_dispatch(&ch, &msg);
      wire_msg_free(&msg);
    }
  }

  /* ---- teardown ---- */
  if (started_iopub) {
    if (k->push_main) zmq_send(k->push_main, PK_IOPUB_STOP, sizeof PK_IOPUB_STOP - 1, 0);
    pthread_join(th_iopub, NULL);
  }
  zmq_ctx_shutdown(k->zctx);
  if (started_ctrl) pthread_join(th_ctrl, NULL);
  if (started_hb) pthread_join(th_hb, NULL);
  close0(&k->push_main);
  if (!started_ctrl) close0(&k->push_ctrl);
  if (!started_ctrl) close0(&k->control);
  if (!started_hb) close0(&k->hb);
  if (!started_iopub) { close0(&k->pub); close0(&k->pull); }
  close0(&k->stdin_sock);
  close0(&mon);
  if (k->shell) {
    int linger = PK_LINGER_MS;
    zmq_setsockopt(k->shell, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(k->shell);
    k->shell = NULL;
  }
  zmq_ctx_term(k->zctx);
  k->zctx = NULL;
  if (started_sig) {
    atomic_store(&g_sig_done, 1);
    pthread_kill(th_sig, SIGUSR2);
    pthread_join(th_sig, NULL);
  }
  pk_log("exited");
  return status;
}

/* ---- kernel_main ------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: pipekernel -f CONNECTION_FILE\n"
          "       pipekernel run [--quiet] [--display-dir DIR] CELL...\n\n"
          "The first form is the Jupyter kernel (started by a Jupyter client from the\n"
          "kernelspec); the second runs magics from a shell (`pipekernel run --help`).\n");
}

int kernel_main(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
      path = argv[++i];
    } else if (strncmp(argv[i], "--f=", 4) == 0) {
      path = argv[i] + 4;
    } else {
      fprintf(stderr, "pipekernel: unexpected argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (!path) {
    fprintf(stderr, "pipekernel: no connection file given\n");
    usage(stderr);
    return 2;
  }
  static pk_kernel k; /* zeroed; large */
  char why[1024];
  if (conn_load(path, &k.conn, why, sizeof why) != 0) {
    fprintf(stderr, "pipekernel: %s\n", why);
    return 2;
  }
  k.key = (wire_key){k.conn.key, k.conn.key_len, k.conn.digest};
  /* An unknown digest must fail now, not on the first message. */
  wire_frame empty[4] = {{"", 0}, {"", 0}, {"", 0}, {"", 0}};
  char hex[2 * 64 + 1];
  if (k.key.len && wire_sign(&k.key, empty, hex, sizeof hex) < 0) {
    fprintf(stderr, "pipekernel: connection file %s: signature_scheme digest '%s' is not "
            "supported by OpenSSL\n", path, k.conn.digest);
    return 2;
  }
  wire_new_id(k.session);
  k.sess = ss_session_new();
  if (!k.sess) {
    fprintf(stderr, "pipekernel: out of memory\n");
    return 1;
  }
  int status = server_run(&k);
  for (size_t i = 0; i < k.n_hist; i++) {
    free(k.hist[i].code);
    free(k.hist[i].output);
  }
  free(k.hist);
  ss_session_free(k.sess);
  return status;
}
