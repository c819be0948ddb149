/*
 * server.c -- the ZeroMQ transport: sockets and threads, signals, and the
 * transport interface (transport.h) over them.
 *
 *   main thread     shell ROUTER (requests run here, in order), stdin ROUTER
 *   control thread  control ROUTER: kernel_info, shutdown, interrupt while
 *                   a cell runs
 *   iopub thread    PUB; forwards what the inproc PULL receives from one
 *                   PUSH per producer thread
 *   heartbeat       zmq_proxy(hb, hb): echoes every message
 *   signal thread   sigwait: SIGINT sets the cancel flag while a cell runs
 *                   (nothing at rest), SIGTERM shuts down cleanly; every
 *                   0.1 s (and at once on the parent-death signal) it
 *                   checks the orphan rule (parent.h) and shuts down too
 *
 * SIGINT/SIGTERM are blocked before any thread exists, so only the signal
 * thread ever takes them. Shutdown: the main loop sees the flag, stops the
 * iopub thread after it drained, shuts the context down (control and
 * heartbeat wake with ETERM), closes every socket and terminates the
 * context. A watchdog in the signal thread exits the process if that takes
 * longer than PK_SHUTDOWN_GRACE_MS.
 *
 * The message table (core.c) is called with each verified request; it
 * answers through the pk_transport at the start of zsrv.
 */
#include <errno.h>
#include <signal.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "lib/limits.h"
#include "core.h"
#include "log.h"
#include "parent.h"
#include "reply.h"
#include "server.h"

#ifndef PK_SHUTDOWN_GRACE_MS /* `make valgrind` raises it: everything is slower there */
#define PK_SHUTDOWN_GRACE_MS 900 /* exit anyway after this (clients wait 2.5 s) */
#endif
#define PK_LINGER_MS 500
/* Replies a client may leave unread on shell, control or stdin before the
 * kernel waits for it (libzmq's default, 1,000, dropped them silently) */
#define PK_REPLY_QUEUE 100000
/* ... and how long it waits for room, then drops that one reply */
#define PK_REPLY_WAIT_MS 10000
#define PK_IOPUB_INPROC "inproc://iopub"
#define PK_IOPUB_STOP "\x01stop" /* one-frame message: the iopub thread drains and ends */

/* The server: the transport first, so core.c's pk_transport is this. */
typedef struct zsrv {
  pk_transport tr;
  pk_kernel *k;
  const pk_conn *conn;
  void *zctx;
  void *shell, *stdin_sock, *control, *hb, *pub, *pull;
  void *push_main, *push_ctrl; /* per-thread PUSH ends of the iopub pipe */
  pk_log_limit drops;          /* messages dropped on shell, control, stdin */
  pk_parent parent;            /* the orphan rule */
  pthread_t th_iopub, th_hb, th_ctrl, th_sig;
  int started_iopub, started_hb, started_ctrl, started_sig;
  char why[1024];              /* why the server could not start */
} zsrv;

static zsrv *Z(pk_transport *t) { return (zsrv *)t; }

/* errno after a failed zmq call, as the transport interface states it:
 * ETERM (the context is closing) is libzmq's own number. */
static int zerrno(void) { return errno == ETERM ? ESHUTDOWN : errno; }

static long zs_now_ms(pk_transport *t) {
  (void)t;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* PK_LOG=info in the environment: the routine lines too. */
static int g_log_info;

static void zs_log(pk_transport *t, int level, const char *line) {
  (void)t;
  if (level == PK_LOG_INFO && !g_log_info) return;
  fprintf(stderr, "pipekernel[%d]: %s\n", (int)getpid(), line);
}

static int send_frames(void *sock, const wire_buf *f, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int flags = i + 1 < n ? ZMQ_SNDMORE : 0;
    while (zmq_send(sock, f[i].p, f[i].len, flags) < 0) {
      if (errno == EINTR) continue;
      errno = zerrno();
      return -1;
    }
  }
  return 0;
}

static int zs_send(pk_transport *t, int channel, const wire_buf *f, size_t n) {
  zsrv *s = Z(t);
  void *sock = channel == CONN_CONTROL ? s->control : channel == CONN_STDIN ? s->stdin_sock
               : channel == CONN_SHELL ? s->shell : NULL;
  if (!sock) {
    errno = EINVAL;
    return -1;
  }
  return send_frames(sock, f, n);
}

static int zs_publish(pk_transport *t, int origin, const wire_buf *f, size_t n) {
  zsrv *s = Z(t);
  return send_frames(origin == CONN_CONTROL ? s->push_ctrl : s->push_main, f, n);
}

/* libzmq refuses a frame over ZMQ_MAXMSGSIZE (frame_limit()) before
 * allocating it and closes that connection: such a request can get no
 * answer. Everything under it is read: libzmq queues a message whole before
 * zmq_msg_recv sees it, so holding its frames costs nothing more. Past
 * PK_LIMIT_MSG_FRAMES frames the ones taken are released at once and the
 * rest one by one, and the message is dropped; over PK_LIMIT_MSG_BYTES,
 * wire_parse verifies it without reading its content, and the message table
 * answers it with an error (out->oversize). */
static int srv_recv(zsrv *s, void *sock, int flags, const char *chan_name, wire_msg *out) {
  zmq_msg_t parts[PK_LIMIT_MSG_FRAMES];
  size_t n = 0, dropped = 0, total = 0;
  int more = 1, rc = 0;
  while (more) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    int r = zmq_msg_recv(&m, sock, n || dropped ? 0 : flags);
    while (r < 0 && errno == EINTR) r = zmq_msg_recv(&m, sock, n || dropped ? 0 : flags);
    if (r < 0) {
      int e = errno;
      zmq_msg_close(&m);
      for (size_t i = 0; i < n; i++) zmq_msg_close(&parts[i]);
      errno = e;
      return -1;
    }
    more = zmq_msg_more(&m);
    total += zmq_msg_size(&m);
    if (!dropped && n < PK_LIMIT_MSG_FRAMES) {
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
    snprintf(why, sizeof why, "%zu frames (%zu bytes); the limit is %d frames", dropped, total,
             PK_LIMIT_MSG_FRAMES);
    rc = -1;
  } else {
    wire_frame fr[PK_LIMIT_MSG_FRAMES];
    for (size_t i = 0; i < n; i++) fr[i] = (wire_frame){zmq_msg_data(&parts[i]), zmq_msg_size(&parts[i])};
    rc = wire_parse(fr, n, &s->k->key, out, why, sizeof why);
  }
  for (size_t i = 0; i < n; i++) zmq_msg_close(&parts[i]);
  if (rc == WIRE_OVERSIZE) {
    pk_info(&s->tr, "%s: %s of %s: answered with a LimitError", chan_name, out->msg_type, why);
    return 0;
  }
  if (rc) {
    pk_log_limited(&s->tr, &s->drops, "%s: dropped a message: %s", chan_name, why);
    return 1;
  }
  return 0;
}

static int zs_recv(pk_transport *t, int channel, int timeout_ms, wire_msg *out) {
  zsrv *s = Z(t);
  void *sock = channel == CONN_STDIN ? s->stdin_sock : channel == CONN_SHELL ? s->shell : NULL;
  if (!sock) {
    errno = EINVAL;
    return -1;
  }
  if (timeout_ms != 0) {
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    int r = zmq_poll(&it, 1, timeout_ms < 0 ? -1 : timeout_ms);
    if (r == 0) errno = EAGAIN;
    if (r <= 0) {
      errno = zerrno();
      return -1;
    }
  }
  int r = srv_recv(s, sock, ZMQ_DONTWAIT, conn_channel_name(channel), out);
  if (r < 0) errno = zerrno();
  return r;
}

/* ---- threads ---------------------------------------------------------------- */

static void *iopub_thread(void *arg) {
  zsrv *z = arg;
  int draining = 0;
  for (;;) {
    if (draining) {
      zmq_pollitem_t it = {z->pull, 0, ZMQ_POLLIN, 0};
      if (zmq_poll(&it, 1, 20) <= 0) break; /* nothing more within 20 ms */
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    int first = 1, stop = 0;
    for (;;) {
      if (zmq_msg_recv(&m, z->pull, 0) < 0) {
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
      if (zmq_msg_send(&m, z->pub, more ? ZMQ_SNDMORE : 0) < 0) zmq_msg_close(&m);
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
  zmq_setsockopt(z->pub, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(z->pub);
  zmq_close(z->pull);
  z->pub = z->pull = NULL;
  return NULL;
}

static void *hb_thread(void *arg) {
  zsrv *z = arg;
  while (zmq_proxy(z->hb, z->hb, NULL) < 0 && errno == EINTR) {}
  int linger = 0;
  zmq_setsockopt(z->hb, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(z->hb);
  z->hb = NULL;
  return NULL;
}

static void *control_thread(void *arg) {
  zsrv *z = arg;
  pk_chan ch = {z->k, CONN_CONTROL};
  for (;;) {
    wire_msg msg;
    int r = srv_recv(z, z->control, 0, "control", &msg);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      break; /* ETERM */
    }
    if (r > 0) continue;
    core_dispatch(&ch, &msg);
    wire_msg_free(&msg);
  }
  int linger = PK_LINGER_MS, zero = 0;
  zmq_setsockopt(z->control, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(z->control);
  zmq_setsockopt(z->push_ctrl, ZMQ_LINGER, &zero, sizeof zero);
  zmq_close(z->push_ctrl);
  z->control = z->push_ctrl = NULL;
  return NULL;
}

static sigset_t g_sigs;
static atomic_int g_sig_done;

static void *signal_thread(void *arg) {
  zsrv *s = arg;
  pk_kernel *k = s->k;
  while (!atomic_load(&g_sig_done)) {
    struct timespec ts = {0, 100 * 1000000L};
    int sig = sigtimedwait(&g_sigs, NULL, &ts);
    if (sig == SIGINT) {
      if (atomic_load(&k->running)) {
        atomic_store(&k->cancel, 1);
        pk_info(&s->tr, "SIGINT: interrupting the running cell");
      } else {
        pk_info(&s->tr, "SIGINT at rest: ignored");
      }
    } else if (sig == SIGTERM) {
      pk_info(&s->tr, "SIGTERM: shutting down");
      if (!atomic_load(&k->shutdown)) atomic_store(&k->shutdown_at_ms, zs_now_ms(&s->tr));
      atomic_store(&k->cancel, 1);
      atomic_store(&k->shutdown, 1);
    }
    char why[128];
    if (!atomic_load(&k->shutdown) && parent_gone(&s->parent, why, sizeof why)) {
      pk_log(&s->tr, "%s: shutting down", why);
      atomic_store(&k->shutdown_at_ms, zs_now_ms(&s->tr));
      atomic_store(&k->cancel, 1);
      atomic_store(&k->shutdown, 1);
    }
    if (atomic_load(&k->shutdown) && !atomic_load(&g_sig_done) &&
        zs_now_ms(&s->tr) - atomic_load(&k->shutdown_at_ms) > PK_SHUTDOWN_GRACE_MS) {
      pk_log(&s->tr, "shutdown did not finish within %d ms; exiting now", PK_SHUTDOWN_GRACE_MS);
      _exit(0);
    }
  }
  return NULL;
}

/* ---- sockets ------------------------------------------------------------------ */

/* The largest frame libzmq reads on shell, control and stdin: what memory
 * allows, 16 times PK_LIMIT_MSG_BYTES (1 GiB) or a quarter of the
 * machine's memory when that is less, and never under PK_LIMIT_MSG_BYTES.
 * Messages between PK_LIMIT_MSG_BYTES and this are read, refused and
 * answered with an error; a frame over it closes the connection unread. */
static int64_t frame_limit(void) {
  int64_t lim = (int64_t)PK_LIMIT_MSG_BYTES * 16;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0 && (int64_t)pages / 4 < lim / page) lim = (int64_t)pages / 4 * page;
  if (lim < (int64_t)PK_LIMIT_MSG_BYTES) lim = (int64_t)PK_LIMIT_MSG_BYTES;
  return lim;
}

static void *make_socket(zsrv *z, int type, int channel, char *why, size_t cap) {
  void *s = zmq_socket(z->zctx, type);
  if (!s) {
    snprintf(why, cap, "zmq_socket: %s", zmq_strerror(errno));
    return NULL;
  }
  int64_t maxsz = frame_limit();
  int linger = PK_LINGER_MS;
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  if (type == ZMQ_ROUTER) {
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
    /* A connection whose routing identity is already in use takes it over.
     * jupyter_client's clients of one KernelManager share an identity (the
     * session id): a new client that connects before the kernel has seen
     * the old one close would otherwise be ignored by libzmq for as long as
     * it stays connected, all its requests unanswered. */
    int one = 1;
    zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    /* A reply is never dropped while its client is connected: up to
     * PK_REPLY_QUEUE replies wait for it, then a send waits (the kernel
     * reads no more requests meanwhile) up to PK_REPLY_WAIT_MS for room and
     * fails with EAGAIN. A reply to a client that is gone fails at once
     * with EHOSTUNREACH (ROUTER_MANDATORY), instead of vanishing. */
    int hwm = PK_REPLY_QUEUE, wait = PK_REPLY_WAIT_MS;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &wait, sizeof wait);
    zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
  }
  if (type == ZMQ_REP) {
    int64_t hbmax = 1 << 16;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &hbmax, sizeof hbmax);
  }
  char ep[512];
  conn_endpoint(z->conn, channel, ep, sizeof ep);
  if (zmq_bind(s, ep) != 0) {
    snprintf(why, cap, "cannot bind the %s socket to %s: %s", conn_channel_name(channel), ep,
             zmq_strerror(errno));
    zmq_close(s);
    return NULL;
  }
  return s;
}

static void close0(void **s) {
  if (*s) {
    int zero = 0;
    zmq_setsockopt(*s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(*s);
    *s = NULL;
  }
}

/* The transport's functions, the log level, and the signal mask every
 * thread created from here on inherits; the orphan watch. */
static void zs_init(zsrv *z, pk_kernel *kernel, const pk_conn *conn) {
  memset(z, 0, sizeof *z);
  z->tr = (pk_transport){zs_send, zs_publish, zs_recv, zs_now_ms, zs_log};
  z->drops = (pk_log_limit)PK_LOG_LIMIT_INIT("dropped messages");
  const char *lv = getenv("PK_LOG");
  g_log_info = lv && strcmp(lv, "info") == 0;
  z->k = kernel;
  z->conn = conn;
  kernel->tr = &z->tr;
  sigemptyset(&g_sigs);
  sigaddset(&g_sigs, SIGINT);
  sigaddset(&g_sigs, SIGTERM);
  sigaddset(&g_sigs, SIGUSR2); /* wakes the signal thread at exit */
  sigaddset(&g_sigs, SIGUSR1); /* the parent died (Linux): check now */
  pthread_sigmask(SIG_BLOCK, &g_sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
  parent_watch(&z->parent);
#ifdef __linux__
  /* Sent when the thread that forked the kernel ends, which may be before
   * its process does: only a wake-up, parent_gone decides. */
  if (z->parent.direct) prctl(PR_SET_PDEATHSIG, SIGUSR1);
#endif
  kernel->main_thread = pthread_self();
}

/* The five sockets of the connection file and the inproc pipe to the iopub
 * thread, with their high-water marks; 0, or -1 with z->why. */
static int zs_open_sockets(zsrv *z) {
  z->shell = make_socket(z, ZMQ_ROUTER, CONN_SHELL, z->why, sizeof z->why);
  if (z->shell) z->control = make_socket(z, ZMQ_ROUTER, CONN_CONTROL, z->why, sizeof z->why);
  if (z->control) z->stdin_sock = make_socket(z, ZMQ_ROUTER, CONN_STDIN, z->why, sizeof z->why);
  if (z->stdin_sock) z->pub = make_socket(z, ZMQ_PUB, CONN_IOPUB, z->why, sizeof z->why);
  if (z->pub) z->hb = make_socket(z, ZMQ_REP, CONN_HB, z->why, sizeof z->why);
  if (!z->hb) return -1;
  z->pull = zmq_socket(z->zctx, ZMQ_PULL);
  z->push_main = zmq_socket(z->zctx, ZMQ_PUSH);
  z->push_ctrl = zmq_socket(z->zctx, ZMQ_PUSH);
  if (!z->pull || !z->push_main || !z->push_ctrl || zmq_bind(z->pull, PK_IOPUB_INPROC) != 0 ||
      zmq_connect(z->push_main, PK_IOPUB_INPROC) != 0 ||
      zmq_connect(z->push_ctrl, PK_IOPUB_INPROC) != 0) {
    snprintf(z->why, sizeof z->why, "inproc iopub pipe: %s", zmq_strerror(errno));
    return -1;
  }
  /* Unbounded inproc queues: a producer never blocks or drops. */
  int zero = 0;
  zmq_setsockopt(z->push_main, ZMQ_SNDHWM, &zero, sizeof zero);
  zmq_setsockopt(z->push_ctrl, ZMQ_SNDHWM, &zero, sizeof zero);
  zmq_setsockopt(z->pull, ZMQ_RCVHWM, &zero, sizeof zero);
  /* PUB drops for a subscriber past its high-water mark: leave room for
   * bursts of output (streams are batched, so this is rarely reached). */
  int pubhwm = 100000;
  zmq_setsockopt(z->pub, ZMQ_SNDHWM, &pubhwm, sizeof pubhwm);
  return 0;
}

/* The signal, iopub, heartbeat and control threads; 0, or -1 with z->why
 * (those started are joined by zs_teardown). */
static int zs_start_threads(zsrv *z) {
  z->started_sig = pthread_create(&z->th_sig, NULL, signal_thread, z) == 0;
  if (z->started_sig) z->started_iopub = pthread_create(&z->th_iopub, NULL, iopub_thread, z) == 0;
  if (z->started_iopub) z->started_hb = pthread_create(&z->th_hb, NULL, hb_thread, z) == 0;
  if (z->started_hb) z->started_ctrl = pthread_create(&z->th_ctrl, NULL, control_thread, z) == 0;
  if (z->started_ctrl) return 0;
  snprintf(z->why, sizeof z->why, "cannot start threads");
  return -1;
}

/* The shell loop on this thread: each verified request through the message
 * table, until shutdown. */
static void zs_serve(zsrv *z) {
  pk_kernel *kernel = z->k;
  pk_chan ch = {kernel, CONN_SHELL};
  reply_status(&ch, NULL, "starting");
  char ep[512];
  conn_endpoint(z->conn, CONN_SHELL, ep, sizeof ep);
  pk_info(&z->tr, "serving on %s (session %s)", ep, kernel->session);
  while (!atomic_load(&kernel->shutdown)) {
    zmq_pollitem_t it[1] = {{z->shell, 0, ZMQ_POLLIN, 0}};
    int r = zmq_poll(it, 1, 50);
    if (r < 0) {
      if (errno == EINTR) continue;
      pk_log(&z->tr, "shell poll: %s", zmq_strerror(errno));
      break;
    }
    pk_log_limit_tick(&z->tr, &z->drops, 0);
    if (!(it[0].revents & ZMQ_POLLIN)) continue;
    wire_msg msg;
    r = srv_recv(z, z->shell, ZMQ_DONTWAIT, "shell", &msg);
    if (r != 0) continue;
    core_dispatch(&ch, &msg);
    wire_msg_free(&msg);
  }
}

/* Stops the threads in order (iopub drains first), closes every socket
 * (shell lingers for the last replies) and the context. */
static void zs_teardown(zsrv *z) {
  if (z->started_iopub) {
    if (z->push_main) zmq_send(z->push_main, PK_IOPUB_STOP, sizeof PK_IOPUB_STOP - 1, 0);
    pthread_join(z->th_iopub, NULL);
  }
  zmq_ctx_shutdown(z->zctx);
  if (z->started_ctrl) pthread_join(z->th_ctrl, NULL);
  if (z->started_hb) pthread_join(z->th_hb, NULL);
  close0(&z->push_main);
  if (!z->started_ctrl) close0(&z->push_ctrl);
  if (!z->started_ctrl) close0(&z->control);
  if (!z->started_hb) close0(&z->hb);
  if (!z->started_iopub) {
    close0(&z->pub);
    close0(&z->pull);
  }
  close0(&z->stdin_sock);
  if (z->shell) {
    int linger = PK_LINGER_MS;
    zmq_setsockopt(z->shell, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(z->shell);
    z->shell = NULL;
  }
  zmq_ctx_term(z->zctx);
  z->zctx = NULL;
  if (z->started_sig) {
    atomic_store(&g_sig_done, 1);
    pthread_kill(z->th_sig, SIGUSR2);
    pthread_join(z->th_sig, NULL);
  }
  pk_log_limit_tick(&z->tr, &z->drops, 1);
}

int server_run(pk_kernel *kernel, const pk_conn *conn) {
  zsrv srv; /* every thread that uses it is joined before this returns */
  zsrv *z = &srv;
  zs_init(z, kernel, conn);
  z->zctx = zmq_ctx_new();
  if (!z->zctx) {
    pk_log(&z->tr, "zmq_ctx_new: %s", zmq_strerror(errno));
    parent_unwatch(&z->parent);
    kernel->tr = NULL;
    return 1;
  }
  int status = 1;
  if (zs_open_sockets(z) == 0 && zs_start_threads(z) == 0) {
    status = 0;
    zs_serve(z);
  } else {
    pk_log(&z->tr, "%s", z->why);
    fprintf(stderr, "pipekernel: %s\n", z->why);
    atomic_store(&kernel->shutdown_at_ms, zs_now_ms(&z->tr));
    atomic_store(&kernel->shutdown, 1);
  }
  zs_teardown(z);
  parent_unwatch(&z->parent);
  pk_info(&z->tr, "exited");
  kernel->tr = NULL; /* srv ends here */
  return status;
}
