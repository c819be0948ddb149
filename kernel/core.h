/*
 * core.h -- the message table (core.c): busy, the handler of the request's
 * msg_type, idle; and the abort of queued executes after a failed one.
 *
 * It depends on the transport interface (transport.h), the wire format and
 * the kernel's state; the transport calls core_dispatch for every verified
 * request on shell (main thread) and control (control thread).
 */
#ifndef PK_CORE_H
#define PK_CORE_H

#include <jansson.h>

#include "state.h"
#include "wire.h"

#define PK_IMPLEMENTATION_VERSION "0.1.0"
#define PK_LANGUAGE "pipeline"
#define PK_LANGUAGE_VERSION "1.0"

/* busy, the handler for req's msg_type, idle. On shell, a failed execute with
 * stop_on_error then aborts the executes already queued. A shutdown_request
 * sets k->shutdown once its reply and idle are out. */
void core_dispatch(const pk_chan *ch, wire_msg *req);
/* The content of kernel_info_reply (a new reference). */
json_t *core_kernel_info(void);
/* Frees the history the table kept in k. */
void core_free(pk_kernel *k);

#endif
