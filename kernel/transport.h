/*
 * transport.h -- what the message table needs from a transport: send on a
 * channel, publish on IOPub, receive (with a timeout, so a wait can poll a
 * flag), the clock, and a line of log.
 *
 * The ZeroMQ server (server.c) implements it with sockets and threads; the
 * C tests plug in one that keeps messages in memory (tests/memtransport.c).
 * core.c, exec.c and reply.c know only this interface and wire.h: they
 * build and sign messages with wire_build and hand over the frames, and
 * they receive messages already split and verified by wire_parse.
 *
 * Threads: the main thread (shell requests and the cells they run, the
 * stdin round trip) and the control thread each call send and publish for
 * their own channel; recv is called only for CONN_SHELL and CONN_STDIN,
 * from the main thread. log and now_ms may be called from any thread.
 */
#ifndef PK_TRANSPORT_H
#define PK_TRANSPORT_H

#include <stddef.h>

#include "conn.h"
#include "wire.h"

typedef struct pk_transport pk_transport;

/* What a log line is for: PK_LOG_WARN, something a user needs to know
 * (always written); PK_LOG_INFO, the routine (started, interrupted,
 * ignored), written only when asked for. */
enum pk_log_level { PK_LOG_WARN, PK_LOG_INFO };

struct pk_transport {
  /* Sends one message, its routing identities first (wire_build's frames),
   * on CONN_SHELL, CONN_CONTROL or CONN_STDIN. The frames are borrowed.
   * Returns 0, or -1 with errno set: EHOSTUNREACH when no client of those
   * identities is connected, EAGAIN when it left too many messages unread
   * for too long (the transport's bound). */
  int (*send)(pk_transport *t, int channel, const wire_buf *frames, size_t n);
  /* Publishes one message, its topic first, on IOPub. origin is the channel
   * whose thread publishes (CONN_SHELL for the main thread and its cells,
   * CONN_CONTROL): the messages of one origin keep their order. Returns 0
   * or -1 with errno set. */
  int (*publish)(pk_transport *t, int origin, const wire_buf *frames, size_t n);
  /* Waits up to timeout_ms (0: does not wait; negative: until one comes)
   * for a message on CONN_SHELL or CONN_STDIN and verifies it. Returns 0
   * with *out filled (free it with wire_msg_free), 1 when a message came
   * but was refused (the transport logged why), or -1 with errno: EAGAIN
   * when none came in time, ETERM when the transport is closing. */
  int (*recv)(pk_transport *t, int channel, int timeout_ms, wire_msg *out);
  /* A monotonic clock in milliseconds. */
  long (*now_ms)(pk_transport *t);
  /* Writes one line of log (no newline) of that level where the server's
   * log goes, or nowhere when that level is not wanted. */
  void (*log)(pk_transport *t, int level, const char *line);
};

#endif
