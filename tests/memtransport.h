/*
 * memtransport.h -- a kernel transport (kernel/transport.h) in memory, for
 * the C tests of the message table: requests are queued as signed frames,
 * what the kernel sends and publishes is verified with the same key and
 * kept in order, log lines are kept, and the clock is a counter that a
 * receive with a timeout moves forward, so waits take no time.
 *
 * A queued request may carry the time it arrives (mt_request_at): a
 * receive returns it once the clock reaches that time, moving the clock
 * when the request comes within the receive's timeout.
 */
#ifndef PK_MEMTRANSPORT_H
#define PK_MEMTRANSPORT_H

#include <pthread.h>
#include <stddef.h>

#include "../kernel/state.h"
#include "../kernel/transport.h"
#include "../kernel/wire.h"

#define MT_CLIENT "client-1" /* the routing identity of every request */
#define MT_MAX_IDS 256

/* One message the kernel sent (CONN_SHELL, CONN_CONTROL, CONN_STDIN) or
 * published (CONN_IOPUB), parsed back with the key. */
typedef struct mt_out {
  int channel;
  int origin;       /* publish: the origin channel given */
  wire_msg m;
} mt_out;

typedef struct mt_in {
  wire_buf *frames;
  size_t n;
  long at_ms;       /* arrives when the clock reaches this */
} mt_in;

typedef struct memtransport {
  pk_transport tr;
  wire_key key;
  pthread_mutex_t mu;
  long now;                     /* the clock, ms */
  mt_out *out;                  /* in the order sent */
  size_t n_out, cap_out;
  size_t bad_out;               /* messages from the kernel that did not verify */
  mt_in *in[CONN__COUNT];       /* queued requests per channel */
  size_t n_in[CONN__COUNT], head_in[CONN__COUNT], cap_in[CONN__COUNT];
  char **logs;
  int *log_levels;              /* PK_LOG_WARN or PK_LOG_INFO, per line */
  size_t n_logs, cap_logs;
  char ids[MT_MAX_IDS][37];     /* msg_ids of the requests made */
  size_t n_ids;
  char seq[4096];               /* mt_seq's answer */
  /* Called for each message the kernel sends on stdin (an input_request),
   * after it was kept; may queue the answer. */
  void (*on_stdin)(struct memtransport *mt, const wire_msg *m);
  void *ud;
} memtransport;

void mt_init(memtransport *mt, const wire_key *key);
void mt_free(memtransport *mt);

/* Queues a request signed with the key, from MT_CLIENT, arriving now (or at
 * at_ms); steals content (NULL: {}). parent may be NULL. Returns its
 * msg_id (valid until mt_free). */
const char *mt_request(memtransport *mt, int channel, const char *msg_type, json_t *content);
const char *mt_request_at(memtransport *mt, int channel, long at_ms, const char *msg_type,
                          json_t *parent, json_t *content);
/* The same with the header's date set to `date` (NULL: no date at all). */
const char *mt_request_dated(memtransport *mt, int channel, long at_ms, const char *date,
                             const char *msg_type, json_t *content);

/* Adds a buffer frame of `bytes` zero bytes to the request queued last on
 * channel (buffers are not signed): it stays valid, and grows. */
void mt_pad(memtransport *mt, int channel, size_t bytes);

/* Serves the queued requests of channel as the server does: receives each
 * (waiting for those not yet arrived) and dispatches it. Returns how many
 * were dispatched. */
int mt_serve(memtransport *mt, pk_kernel *k, int channel);

/* Index of the first message at or after `from` on channel (-1: any) with
 * msg_type (NULL: any) whose parent is msg_id (NULL: any); -1 when none. */
int mt_find(const memtransport *mt, size_t from, int channel, const char *msg_type,
            const char *parent_id);
/* The messages whose parent is msg_id, in order, as one line: "busy",
 * "idle" for status, the msg_type of other IOPub messages, "CHANNEL:msg_type"
 * of replies ("shell:kernel_info_reply"), separated by spaces (valid until
 * the next call). */
const char *mt_seq(memtransport *mt, const char *parent_id);
/* The number of log lines containing text (of any level / of that level). */
size_t mt_logged(const memtransport *mt, const char *text);
size_t mt_logged_at(const memtransport *mt, int level, const char *text);

#endif
