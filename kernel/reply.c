/*
 * reply.c -- messages out (reply.h): build, sign, hand to the transport.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "reply.h"

/* publish: 1 sends on IOPub from ch's thread, 0 on `channel`. */
static int send_msg(const pk_chan *ch, int publish, int channel, const wire_buf *idents,
                    size_t n_idents, const char *msg_type, json_t *parent, json_t *content,
                    reply_sent *sent) {
  pk_kernel *k = ch->k;
  json_t *header = wire_header_new(msg_type, k->session);
  json_t *meta = json_object();
  wire_buf *f = NULL;
  size_t n = 0;
  int rc = -1;
  if (!header || !meta || !content ||
      wire_build(idents, n_idents, header, parent, meta, content, &k->key, &f, &n) != 0) {
    pk_log(k->tr, "cannot build a %s message (out of memory or invalid text)", msg_type);
  } else if ((publish ? k->tr->publish(k->tr, ch->channel, f, n)
                      : k->tr->send(k->tr, channel, f, n)) != 0) {
    if (errno == EAGAIN)
      pk_log(k->tr, "%s: dropped a %s: its client left too many replies unread for too long",
             conn_channel_name(channel), msg_type);
    else if (errno != EHOSTUNREACH) /* the client is gone: nobody to tell */
      pk_log(k->tr, "cannot send %s: %s", msg_type, strerror(errno));
  } else {
    rc = 0;
    if (sent) {
      snprintf(sent->msg_id, sizeof sent->msg_id, "%s",
               json_string_value(json_object_get(header, "msg_id")));
      snprintf(sent->date, sizeof sent->date, "%s",
               json_string_value(json_object_get(header, "date")));
    }
  }
  wire_frames_free(f, n);
  json_decref(header);
  json_decref(meta);
  json_decref(content);
  return rc;
}

void reply_publish(const pk_chan *ch, const char *msg_type, json_t *parent, json_t *content) {
  char topic[128];
  snprintf(topic, sizeof topic, "kernel.%s.%s", ch->k->session, msg_type);
  wire_buf t = {(unsigned char *)topic, strlen(topic)};
  send_msg(ch, 1, CONN_IOPUB, &t, 1, msg_type, parent, content, NULL);
}

void reply_status(const pk_chan *ch, json_t *parent, const char *state) {
  reply_publish(ch, "status", parent, json_pack("{s:s}", "execution_state", state));
}

void reply_to(const pk_chan *ch, const wire_msg *req, const char *msg_type, json_t *content) {
  send_msg(ch, 0, ch->channel, req->idents, req->n_idents, msg_type, req->header, content, NULL);
}

int reply_send(const pk_chan *ch, int channel, const wire_buf *idents, size_t n_idents,
               const char *msg_type, json_t *parent, json_t *content, reply_sent *sent) {
  return send_msg(ch, 0, channel, idents, n_idents, msg_type, parent, content, sent);
}
