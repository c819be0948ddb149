/*
 * log.h -- the kernel's log: one line per event, written through the
 * transport (the ZeroMQ server writes it to stderr).
 */
#ifndef PK_LOG_H
#define PK_LOG_H

#include "transport.h"

/* Formats one line (cut at 2 KiB) and hands it to t->log. */
void pk_log(pk_transport *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
