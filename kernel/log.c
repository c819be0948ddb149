/*
 * log.c -- the kernel's log lines (log.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

void pk_log(pk_transport *t, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  t->log(t, msg);
}
