/*
 * memtransport.c -- the kernel transport in memory (memtransport.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernel/core.h"
#include "lib/limits.h"
#include "memtransport.h"
#include "task.h"

static memtransport *M(pk_transport *t) { return (memtransport *)t; }

static const char *chan_name(int channel) { return conn_channel_name(channel); }

/* Parses frames back with the key and keeps them in order. Returns 1 when
 * it was kept. */
static int keep(memtransport *mt, int channel, int origin, const wire_buf *f, size_t n) {
  wire_frame fr[PK_LIMIT_MSG_FRAMES];
  if (n > PK_LIMIT_MSG_FRAMES) {
    mt->bad_out++;
    return 0;
  }
  int kept = 0;
  for (size_t i = 0; i < n; i++) fr[i] = (wire_frame){f[i].p, f[i].len};
  wire_msg m;
  char why[256];
  pthread_mutex_lock(&mt->mu);
  if (wire_parse(fr, n, &mt->key, &m, why, sizeof why) != 0) { /* also WIRE_OVERSIZE */
    if (m.header) wire_msg_free(&m);
    fprintf(stderr, "memtransport: the kernel sent a message that does not verify: %s\n", why);
    mt->bad_out++;
  } else {
    if (mt->n_out == mt->cap_out) {
      mt->cap_out = mt->cap_out ? mt->cap_out * 2 : 64;
      mt->out = realloc(mt->out, mt->cap_out * sizeof *mt->out);
      ASSERT(mt->out);
    }
    mt->out[mt->n_out++] = (mt_out){channel, origin, m};
    kept = 1;
  }
  pthread_mutex_unlock(&mt->mu);
  return kept;
}

static int mt_send(pk_transport *t, int channel, const wire_buf *f, size_t n) {
  memtransport *mt = M(t);
  if (channel != CONN_SHELL && channel != CONN_CONTROL && channel != CONN_STDIN) {
    errno = EINVAL;
    return -1;
  }
  if (keep(mt, channel, channel, f, n) && channel == CONN_STDIN && mt->on_stdin)
    mt->on_stdin(mt, &mt->out[mt->n_out - 1].m);
  return 0;
}

static int mt_publish(pk_transport *t, int origin, const wire_buf *f, size_t n) {
  keep(M(t), CONN_IOPUB, origin, f, n);
  return 0;
}

static void free_in(mt_in *in) {
  wire_frames_free(in->frames, in->n);
  in->frames = NULL;
  in->n = 0;
}

static int mt_recv(pk_transport *t, int channel, int timeout_ms, wire_msg *out) {
  memtransport *mt = M(t);
  if (channel < 0 || channel >= CONN__COUNT) {
    errno = EINVAL;
    return -1;
  }
  if (mt->head_in[channel] == mt->n_in[channel]) {
    if (timeout_ms < 0) { /* nothing will ever come */
      errno = ESHUTDOWN;
      return -1;
    }
    mt->now += timeout_ms;
    errno = EAGAIN;
    return -1;
  }
  mt_in *in = &mt->in[channel][mt->head_in[channel]];
  if (in->at_ms > mt->now) {
    if (timeout_ms >= 0 && in->at_ms > mt->now + timeout_ms) {
      mt->now += timeout_ms;
      errno = EAGAIN;
      return -1;
    }
    mt->now = in->at_ms;
  }
  mt->head_in[channel]++;
  wire_frame fr[PK_LIMIT_MSG_FRAMES];
  size_t n = in->n < PK_LIMIT_MSG_FRAMES ? in->n : PK_LIMIT_MSG_FRAMES;
  for (size_t i = 0; i < n; i++) fr[i] = (wire_frame){in->frames[i].p, in->frames[i].len};
  char why[256];
  int rc = wire_parse(fr, n, &mt->key, out, why, sizeof why);
  free_in(in);
  if (rc == WIRE_OVERSIZE) return 0; /* the table answers it */
  if (rc) {
    char line[400];
    snprintf(line, sizeof line, "%s: dropped a message: %s", chan_name(channel), why);
    t->log(t, PK_LOG_WARN, line);
    return 1;
  }
  return 0;
}

static long mt_now(pk_transport *t) { return M(t)->now; }

static void mt_log(pk_transport *t, int level, const char *line) {
  memtransport *mt = M(t);
  pthread_mutex_lock(&mt->mu);
  if (mt->n_logs == mt->cap_logs) {
    mt->cap_logs = mt->cap_logs ? mt->cap_logs * 2 : 16;
    mt->logs = realloc(mt->logs, mt->cap_logs * sizeof *mt->logs);
    mt->log_levels = realloc(mt->log_levels, mt->cap_logs * sizeof *mt->log_levels);
    ASSERT(mt->logs && mt->log_levels);
  }
  mt->log_levels[mt->n_logs] = level;
  mt->logs[mt->n_logs++] = strdup(line);
  pthread_mutex_unlock(&mt->mu);
}

void mt_init(memtransport *mt, const wire_key *key) {
  memset(mt, 0, sizeof *mt);
  mt->tr = (pk_transport){mt_send, mt_publish, mt_recv, mt_now, mt_log};
  mt->key = *key;
  pthread_mutex_init(&mt->mu, NULL);
  mt->now = 1000;
}

void mt_free(memtransport *mt) {
  for (size_t i = 0; i < mt->n_out; i++) wire_msg_free(&mt->out[i].m);
  free(mt->out);
  for (int c = 0; c < CONN__COUNT; c++) {
    for (size_t i = mt->head_in[c]; i < mt->n_in[c]; i++) free_in(&mt->in[c][i]);
    free(mt->in[c]);
  }
  for (size_t i = 0; i < mt->n_logs; i++) free(mt->logs[i]);
  free(mt->logs);
  free(mt->log_levels);
  pthread_mutex_destroy(&mt->mu);
}

static const char *request(memtransport *mt, int channel, long at_ms, int dated,
                           const char *date, const char *msg_type, json_t *parent,
                           json_t *content) {
  ASSERT(mt->n_ids < MT_MAX_IDS);
  json_t *header = wire_header_new(msg_type, "client-session");
  if (dated && date) json_object_set_new(header, "date", json_string(date));
  else if (dated) json_object_del(header, "date");
  json_t *meta = json_object();
  json_t *par = parent ? json_incref(parent) : json_object();
  if (!content) content = json_object();
  ASSERT(header && meta && par && content);
  wire_buf id = {(unsigned char *)MT_CLIENT, strlen(MT_CLIENT)};
  wire_buf *f = NULL;
  size_t n = 0;
  ASSERT_EQ(wire_build(&id, 1, header, par, meta, content, &mt->key, &f, &n), 0);
  char *slot = mt->ids[mt->n_ids++];
  snprintf(slot, 37, "%s", json_string_value(json_object_get(header, "msg_id")));
  json_decref(header);
  json_decref(meta);
  json_decref(par);
  json_decref(content);
  if (mt->n_in[channel] == mt->cap_in[channel]) {
    mt->cap_in[channel] = mt->cap_in[channel] ? mt->cap_in[channel] * 2 : 16;
    mt->in[channel] = realloc(mt->in[channel], mt->cap_in[channel] * sizeof(mt_in));
    ASSERT(mt->in[channel]);
  }
  mt->in[channel][mt->n_in[channel]++] = (mt_in){f, n, at_ms};
  return slot;
}

const char *mt_request_at(memtransport *mt, int channel, long at_ms, const char *msg_type,
                          json_t *parent, json_t *content) {
  return request(mt, channel, at_ms, 0, NULL, msg_type, parent, content);
}

const char *mt_request_dated(memtransport *mt, int channel, long at_ms, const char *date,
                             const char *msg_type, json_t *content) {
  return request(mt, channel, at_ms, 1, date, msg_type, NULL, content);
}

const char *mt_request(memtransport *mt, int channel, const char *msg_type, json_t *content) {
  return mt_request_at(mt, channel, mt->now, msg_type, NULL, content);
}

void mt_pad(memtransport *mt, int channel, size_t bytes) {
  ASSERT(mt->n_in[channel] > mt->head_in[channel]);
  mt_in *in = &mt->in[channel][mt->n_in[channel] - 1];
  in->frames = realloc(in->frames, (in->n + 1) * sizeof *in->frames);
  ASSERT(in->frames);
  in->frames[in->n].p = calloc(1, bytes ? bytes : 1);
  ASSERT(in->frames[in->n].p);
  in->frames[in->n++].len = bytes;
}

int mt_serve(memtransport *mt, pk_kernel *k, int channel) {
  pk_chan ch = {k, channel};
  int n = 0;
  while (!atomic_load(&k->shutdown)) {
    wire_msg m;
    int r = mt->tr.recv(&mt->tr, channel, -1, &m);
    if (r < 0) break;
    if (r > 0) continue;
    core_dispatch(&ch, &m);
    wire_msg_free(&m);
    n++;
  }
  return n;
}

static const char *parent_id(const wire_msg *m) {
  return json_string_value(json_object_get(m->parent, "msg_id"));
}

int mt_find(const memtransport *mt, size_t from, int channel, const char *msg_type,
            const char *pid) {
  for (size_t i = from; i < mt->n_out; i++) {
    const mt_out *o = &mt->out[i];
    if (channel >= 0 && o->channel != channel) continue;
    if (msg_type && strcmp(o->m.msg_type, msg_type) != 0) continue;
    const char *p = parent_id(&o->m);
    if (pid && (!p || strcmp(p, pid) != 0)) continue;
    return (int)i;
  }
  return -1;
}

const char *mt_seq(memtransport *mt, const char *pid) {
  size_t len = 0;
  mt->seq[0] = 0;
  for (size_t i = 0; i < mt->n_out; i++) {
    const mt_out *o = &mt->out[i];
    const char *p = parent_id(&o->m);
    if (!p || strcmp(p, pid) != 0) continue;
    const char *word = o->m.msg_type;
    if (o->channel == CONN_IOPUB && strcmp(word, "status") == 0)
      word = json_string_value(json_object_get(o->m.content, "execution_state"));
    int w = o->channel == CONN_IOPUB
                ? snprintf(mt->seq + len, sizeof mt->seq - len, "%s%s", len ? " " : "", word)
                : snprintf(mt->seq + len, sizeof mt->seq - len, "%s%s:%s", len ? " " : "",
                           chan_name(o->channel), word);
    ASSERT(w > 0 && (size_t)w < sizeof mt->seq - len);
    len += (size_t)w;
  }
  return mt->seq;
}

size_t mt_logged_at(const memtransport *mt, int level, const char *text) {
  size_t n = 0;
  for (size_t i = 0; i < mt->n_logs; i++)
    n += (level < 0 || mt->log_levels[i] == level) && strstr(mt->logs[i], text) != NULL;
  return n;
}

size_t mt_logged(const memtransport *mt, const char *text) { return mt_logged_at(mt, -1, text); }
