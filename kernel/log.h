/*
 * log.h -- the kernel's log: one line per event, written through the
 * transport (the ZeroMQ server writes it to stderr). pk_log is for what a
 * user needs to know (a refusal, a failure); pk_info for the routine, which
 * the server writes only when PK_LOG=info is set, so a terminal frontend
 * (jupyter console) shares its screen with nothing.
 *
 * Lines that anyone who can reach a port may cause (a message dropped for a
 * bad signature needs no key) go through a pk_log_limit: the first
 * PK_LOG_BURST are written in full, then one line per PK_LOG_INTERVAL_MS
 * counts the ones left out and shows the last; after an interval with none,
 * the next ones are written in full again. So a flood grows the log by a
 * line a minute, not a line a message.
 */
#ifndef PK_LOG_H
#define PK_LOG_H

#include <pthread.h>

#include "transport.h"

#define PK_LOG_BURST 10
#define PK_LOG_INTERVAL_MS 60000

typedef struct pk_log_limit {
  pthread_mutex_t mu;
  const char *what;        /* "dropped messages": names the summary */
  unsigned in_full;        /* lines written in full since the last quiet interval */
  unsigned long long left_out; /* not written since the last summary */
  long since_ms;           /* the last summary, or the start of the leaving out */
  long last_ms;            /* the last event */
  char last[512];          /* the last line left out */
} pk_log_limit;

#define PK_LOG_LIMIT_INIT(what) {PTHREAD_MUTEX_INITIALIZER, (what), 0, 0, 0, 0, ""}

/* Formats one line (cut at 2 KiB) and hands it to t->log. */
void pk_log(pk_transport *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pk_info(pk_transport *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* pk_log under a limit (thread-safe). */
void pk_log_limited(pk_transport *t, pk_log_limit *l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes the summary of what was left out once an interval has passed
 * since the last one (call it now and then), or at once with force (at
 * exit). */
void pk_log_limit_tick(pk_transport *t, pk_log_limit *l, int force);

#endif
