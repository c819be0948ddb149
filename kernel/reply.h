/*
 * reply.h -- messages out: a reply to a request, a message on IOPub, busy
 * and idle, a new request to a client (input_request). Each is built with
 * the kernel's session and signed with its key (wire.c), then handed to the
 * transport. A message that cannot be built or sent is logged; there is no
 * one to tell.
 *
 * Every function steals `content` (also when it fails) and borrows the rest.
 */
#ifndef PK_REPLY_H
#define PK_REPLY_H

#include <stddef.h>

#include <jansson.h>

#include "state.h"

/* On IOPub with the given parent header (NULL: {}), from ch's thread. */
void reply_publish(const pk_chan *ch, const char *msg_type, json_t *parent, json_t *content);
/* status: execution_state `state` ("busy", "idle", "starting"). */
void reply_status(const pk_chan *ch, json_t *parent, const char *state);
/* The reply to req, on the channel req came in on (ch). */
void reply_to(const pk_chan *ch, const wire_msg *req, const char *msg_type, json_t *content);
/* What reply_send tells of the message it sent: its header's msg_id and
 * date. */
typedef struct reply_sent {
  char msg_id[40];
  char date[48];
} reply_sent;

/* A message on `channel` to the client with these identities (a reply when
 * parent is its request's header, or a new request). Fills *sent when it is
 * not NULL. Returns 0, or -1 (logged). */
int reply_send(const pk_chan *ch, int channel, const wire_buf *idents, size_t n_idents,
               const char *msg_type, json_t *parent, json_t *content, reply_sent *sent);

#endif
