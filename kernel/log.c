/*
 * log.c -- the kernel's log lines (log.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static void vlog(pk_transport *t, int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void vlog(pk_transport *t, int level, const char *fmt, va_list ap) {
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  t->log(t, level, msg);
}

void pk_log(pk_transport *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(t, PK_LOG_WARN, fmt, ap);
  va_end(ap);
}

void pk_info(pk_transport *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(t, PK_LOG_INFO, fmt, ap);
  va_end(ap);
}

/* With l->mu held. */
static void summary(pk_transport *t, pk_log_limit *l, long now) {
  if (l->left_out)
    pk_log(t, "%llu more %s in the last %ld s (not logged one by one); the last: %s",
           l->left_out, l->what, (now - l->since_ms + 999) / 1000, l->last);
  l->left_out = 0;
  l->since_ms = now;
}

void pk_log_limited(pk_transport *t, pk_log_limit *l, const char *fmt, ...) {
  char msg[sizeof l->last];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  long now = t->now_ms(t);
  pthread_mutex_lock(&l->mu);
  if (l->in_full && !l->left_out && now - l->last_ms >= PK_LOG_INTERVAL_MS)
    l->in_full = 0; /* a quiet interval: a new incident is shown in full */
  l->last_ms = now;
  if (l->in_full < PK_LOG_BURST) {
    l->in_full++;
    if (l->in_full == PK_LOG_BURST) {
      pk_log(t, "%s (more %s are counted, and summarised once a minute)", msg, l->what);
      l->since_ms = now;
    } else {
      pk_log(t, "%s", msg);
    }
  } else {
    l->left_out++;
    snprintf(l->last, sizeof l->last, "%s", msg);
    if (now - l->since_ms >= PK_LOG_INTERVAL_MS) summary(t, l, now);
  }
  pthread_mutex_unlock(&l->mu);
}

void pk_log_limit_tick(pk_transport *t, pk_log_limit *l, int force) {
  long now = t->now_ms(t);
  pthread_mutex_lock(&l->mu);
  if (l->left_out && (force || now - l->since_ms >= PK_LOG_INTERVAL_MS)) summary(t, l, now);
  pthread_mutex_unlock(&l->mu);
}
