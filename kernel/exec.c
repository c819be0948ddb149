/*
 * exec.c -- the st_ctx of a cell running in the kernel: stage output
 * becomes IOPub messages with the execute_request as parent.
 *
 * Streams are buffered per stream and flushed as valid UTF-8 (a code point
 * is never split across two messages; invalid bytes become U+FFFD) every
 * PK_FLUSH_INTERVAL seconds from the stage thread (the write, progress and
 * cancelled callbacks check the clock), at PK_FLUSH_BYTES, before any other
 * output and before the reply. Progress is an HTML bar with a text/plain
 * fallback: display_data with a fresh display_id at begin, then
 * update_display_data, so a saved notebook holds its final state.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/dynbuf.h"
#include "exec.h"
#include "log.h"
#include "magic.h"
#include "reply.h"
#include "utf8.h"

#define PK_FLUSH_INTERVAL 0.1 /* seconds */
#define PK_FLUSH_BYTES (64u << 10)
/* A stream buffer is flushed once it holds PK_FLUSH_BYTES (its cap); a
 * flush leaves at most the 3 bytes of an unfinished code point. */
#define PK_STREAM_BUF_BYTES PK_FLUSH_BYTES
#define PK_PROGRESS_IDS 64    /* progress bars tracked per cell */

typedef struct stream_buf {
  dynbuf buf;   /* bytes not yet published (capped at PK_STREAM_BUF_BYTES) */
  double since; /* st_now() of the oldest unflushed byte */
} stream_buf;

typedef struct exec_state {
  const pk_chan *ch;
  const wire_msg *req;
  int allow_stdin;
  stream_buf out[2];        /* stdout, stderr */
  int cur_last;             /* the running line is the cell's last */
  char *result;             /* execute_result text */
  json_t *payload;
  char shown[PK_PROGRESS_IDS][ST_DISPLAY_ID_MAX]; /* progress ids displayed */
  size_t n_shown;
} exec_state;

static exec_state *S(st_ctx *c) { return c->fe; }

static int on_stage_thread(const exec_state *e) {
  return pthread_equal(pthread_self(), e->ch->k->main_thread);
}

/* ---- streams ------------------------------------------------------------------ */

static void flush_stream(exec_state *e, int i, int final) {
  stream_buf *b = &e->out[i];
  if (!b->buf.len) return;
  char *tmp = malloc(b->buf.len * 3 + 1);
  if (!tmp) return;
  size_t used = 0;
  size_t n = utf8_clean(b->buf.p, b->buf.len, final, tmp, &used);
  if (n) {
    json_t *text = json_stringn(tmp, n);
    if (text)
      reply_publish(e->ch, "stream", e->req->header,
                    json_pack("{s:s, s:o}", "name", i ? "stderr" : "stdout", "text", text));
  }
  free(tmp);
  /* utf8_clean leaves at most an unfinished code point (3 bytes) */
  char tail[4];
  size_t rest = b->buf.len - used;
  if (rest > sizeof tail) rest = 0;
  memcpy(tail, b->buf.p + used, rest);
  dyn_reset(&b->buf);
  dyn_add(&b->buf, tail, rest);
  b->since = st_now();
}

static void flush_all(exec_state *e, int final) {
  flush_stream(e, 0, final);
  flush_stream(e, 1, final);
}

static void flush_due(exec_state *e) {
  double now = st_now();
  for (int i = 0; i < 2; i++)
    if (e->out[i].buf.len && now - e->out[i].since >= PK_FLUSH_INTERVAL) flush_stream(e, i, 0);
}

/* A write goes into the stream's buffer in pieces that fit its cap; each
 * full buffer is flushed, so a write of any size comes out in messages of
 * about PK_FLUSH_BYTES. Bytes that find no memory are dropped. */
static void k_write(st_ctx *c, int stream, const char *buf, size_t len) {
  exec_state *e = S(c);
  int i = stream == 2 ? 1 : 0;
  if (e->out[1 - i].buf.len) flush_stream(e, 1 - i, 0); /* keep stdout/stderr order */
  stream_buf *b = &e->out[i];
  int flushed = 0;
  while (len) {
    size_t room = b->buf.max - b->buf.len;
    size_t take = len < room ? len : room;
    if (!take) return; /* a flush found no memory */
    if (!b->buf.len) b->since = st_now();
    if (dyn_add(&b->buf, buf, take)) {
      flush_stream(e, i, 0); /* out of memory: keep what is there, drop this */
      return;
    }
    buf += take;
    len -= take;
    if (b->buf.len >= PK_FLUSH_BYTES) {
      flush_stream(e, i, 0);
      flushed = 1;
    }
  }
  if (!flushed) flush_due(e);
}

/* ---- displays ------------------------------------------------------------------ */

static int is_json_type(const char *t) {
  size_t n = strlen(t);
  return strcmp(t, "application/json") == 0 || (n > 5 && strcmp(t + n - 5, "+json") == 0);
}

static int is_text_type(const char *t) {
  return strncmp(t, "text/", 5) == 0 || strcmp(t, "image/svg+xml") == 0 ||
         strcmp(t, "application/javascript") == 0 || is_json_type(t);
}

static json_t *mime_value(pk_transport *tr, const st_mime *m) {
  if (is_json_type(m->type)) {
    json_t *v = json_loadb(m->data, m->len, JSON_DECODE_ANY, NULL);
    if (v) return v;
    pk_log(tr, "display: %s payload is not valid JSON; sent as a string", m->type);
  }
  if (is_text_type(m->type)) return utf8_json(m->data, m->len);
  if (m->len > (size_t)1 << 30) {
    pk_log(tr, "display: %s payload of %zu bytes refused", m->type, m->len);
    return NULL;
  }
  size_t cap = 4 * ((m->len + 2) / 3) + 1;
  unsigned char *b64 = malloc(cap);
  if (!b64) return NULL;
  int n = EVP_EncodeBlock(b64, m->data, (int)m->len);
  json_t *v = n >= 0 ? json_stringn((const char *)b64, (size_t)n) : NULL;
  free(b64);
  return v;
}

static void publish_display(exec_state *e, const st_mime *items, int n, const char *id,
                            int update) {
  flush_all(e, 0);
  json_t *data = json_object(), *meta = json_object();
  for (int i = 0; i < n; i++) {
    if (!items[i].type || !strchr(items[i].type, '/')) continue;
    json_t *v = mime_value(e->ch->k->tr, &items[i]);
    if (v) json_object_set_new(data, items[i].type, v);
    if (items[i].width > 0 || items[i].height > 0) {
      json_t *sz = json_object();
      if (items[i].width > 0) json_object_set_new(sz, "width", json_integer(items[i].width));
      if (items[i].height > 0) json_object_set_new(sz, "height", json_integer(items[i].height));
      json_object_set_new(meta, items[i].type, sz);
    }
  }
  if (!json_object_get(data, "text/plain")) json_object_set_new(data, "text/plain", json_string(""));
  json_t *c = json_pack("{s:o, s:o}", "data", data, "metadata", meta);
  if (id) json_object_set_new(c, "transient", json_pack("{s:s}", "display_id", id));
  reply_publish(e->ch, update && id ? "update_display_data" : "display_data", e->req->header, c);
}

static void k_display(st_ctx *c, const st_mime *items, int n, const char *id, int update) {
  publish_display(S(c), items, n, id, update);
}

/* ---- progress ------------------------------------------------------------------ */

static void html_escape(const char *s, char *out, size_t cap) {
  size_t o = 0;
  for (; *s && o + 7 < cap; s++) {
    const char *r = *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;"
                    : *s == '"' ? "&quot;" : NULL;
    if (r) { memcpy(out + o, r, strlen(r)); o += strlen(r); }
    else out[o++] = *s;
  }
  out[o] = 0;
}

static void k_progress(st_ctx *c, const st_progress *p) {
  exec_state *e = S(c);
  st_progress_view v;
  st_progress_view_of(p, &v);
  const char *state = p->state == ST_PROGRESS_DONE ? "done"
                      : p->state == ST_PROGRESS_FAILED ? "failed"
                      : p->state == ST_PROGRESS_CANCELLED ? "interrupted" : "";
  char pct[16] = "";
  if (p->total || p->state == ST_PROGRESS_DONE) snprintf(pct, sizeof pct, "%3.0f%% ", v.frac * 100);
  char text[512];
  snprintf(text, sizeof text, "%s [%s] %s%s%s%s %.1f s%s%s", v.label, v.bar, pct, v.amount,
           v.rate[0] ? ", " : "", v.rate, p->elapsed, state[0] ? ", " : "", state);
  char label[400], htext[1200];
  html_escape(v.label, label, sizeof label);
  snprintf(htext, sizeof htext, "%s%s%s%s, %.1f s%s%s", pct, v.amount, v.rate[0] ? ", " : "", v.rate,
           p->elapsed, state[0] ? ", " : "", state);
  char esc[1400];
  html_escape(htext, esc, sizeof esc);
  const char *color = p->state == ST_PROGRESS_FAILED ? "#c62828"
                      : p->state == ST_PROGRESS_CANCELLED ? "#ef6c00"
                      : p->state == ST_PROGRESS_DONE ? "#2e7d32" : "#1565c0";
  char value[64];
  if (p->total || p->state == ST_PROGRESS_DONE)
    snprintf(value, sizeof value, " value=\"%.4f\" max=\"1\"", v.frac);
  else value[0] = 0; /* indeterminate */
  char html[3000];
  snprintf(html, sizeof html,
           "<div class=\"pk-progress\" data-state=\"%s\" style=\"font-family:monospace\">"
           "<span>%s</span> <progress%s style=\"width:20em;vertical-align:middle;"
           "accent-color:%s\"></progress> <span style=\"color:%s\">%s</span></div>",
           state[0] ? state : "running", label, value, color, color, esc);
  st_mime m[2] = {{"text/html", html, strlen(html), 0, 0}, {"text/plain", text, strlen(text), 0, 0}};
  int shown = 0;
  for (size_t i = 0; i < e->n_shown && !shown; i++) shown = strcmp(e->shown[i], p->id) == 0;
  if (!shown && e->n_shown < PK_PROGRESS_IDS) {
    snprintf(e->shown[e->n_shown++], ST_DISPLAY_ID_MAX, "%s", p->id);
  } else if (!shown) {
    memmove(e->shown[0], e->shown[1], (PK_PROGRESS_IDS - 1) * sizeof e->shown[0]);
    snprintf(e->shown[PK_PROGRESS_IDS - 1], ST_DISPLAY_ID_MAX, "%s", p->id);
  }
  publish_display(e, m, 2, p->id, shown);
}

/* ---- the rest of the context ---------------------------------------------------- */

static int k_cancelled(st_ctx *c) {
  exec_state *e = S(c);
  if (on_stage_thread(e)) flush_due(e);
  return atomic_load(&e->ch->k->cancel);
}

static void k_clear(st_ctx *c, int wait) {
  exec_state *e = S(c);
  flush_all(e, 0);
  reply_publish(e->ch, "clear_output", e->req->header, json_pack("{s:b}", "wait", wait));
}

static void k_result(st_ctx *c, const char *text) {
  exec_state *e = S(c);
  if (e->cur_last) {
    free(e->result);
    e->result = strdup(text);
  } else { /* a value of a line that is not the last one: show it as text */
    k_write(c, 1, text, strlen(text));
    k_write(c, 1, "\n", 1);
  }
}

static void k_page(st_ctx *c, const char *text) {
  exec_state *e = S(c);
  json_t *p = json_pack("{s:s, s:{s:o}, s:i}", "source", "page", "data", "text/plain",
                        utf8_json(text, strlen(text)), "start", 0);
  if (p) json_array_append_new(e->payload, p);
}

/* input_request on stdin with the shell request's identities; waits in
 * 0.1 s receives so an interrupt or a shutdown ends the wait. */
static int k_input(st_ctx *c, const char *prompt, int password, char **out, st_error *err) {
  exec_state *e = S(c);
  pk_kernel *k = e->ch->k;
  pk_transport *tr = k->tr;
  *out = NULL;
  if (!e->allow_stdin)
    return st_error_set(err, ST_ESTDIN, "input", -1,
                        "this frontend does not support input requests (allow_stdin is false)");
  flush_all(e, 0);
  for (;;) { /* drop stale replies */
    wire_msg m;
    int r = tr->recv(tr, CONN_STDIN, 0, &m);
    if (r < 0) break;
    if (r == 0) {
      pk_info(tr, "stdin: dropped a stale %s", m.msg_type);
      wire_msg_free(&m);
    }
  }
  reply_sent sent;
  json_t *content = json_pack("{s:o, s:b}", "prompt", utf8_json(prompt, strlen(prompt)),
                              "password", password);
  int rc = 0;
  if (reply_send(e->ch, CONN_STDIN, e->req->idents, e->req->n_idents, "input_request",
                 e->req->header, content, &sent) != 0)
    rc = st_error_set(err, ST_EINTERNAL, "input", -1, "cannot send input_request");
  while (!rc) {
    if (atomic_load(&k->cancel) || atomic_load(&k->shutdown)) {
      rc = st_error_set(err, ST_ECANCELED, "input", -1, "interrupted while waiting for input");
      break;
    }
    wire_msg m;
    int r = tr->recv(tr, CONN_STDIN, 100, &m);
    if (r < 0 && errno != EAGAIN && errno != EINTR) {
      rc = st_error_set(err, ST_EINTERNAL, "input", -1, "stdin: %s", strerror(errno));
      break;
    }
    if (r != 0) continue;
    const char *pid = json_string_value(json_object_get(m.parent, "msg_id"));
    json_t *v = json_object_get(m.content, "value");
    if (strcmp(m.msg_type, "input_reply") != 0 || (pid && strcmp(pid, sent.msg_id) != 0)) {
      pk_info(tr, "stdin: ignored a %s that does not answer the pending input_request", m.msg_type);
    } else if (!json_is_string(v)) {
      rc = st_error_set(err, ST_EFORMAT, "input_reply", -1, "content.value is not a string");
    } else {
      *out = strndup(json_string_value(v), json_string_length(v));
      if (!*out) rc = st_error_set(err, ST_ENOMEM, "input", -1, NULL);
      wire_msg_free(&m);
      break;
    }
    wire_msg_free(&m);
  }
  return rc;
}

static const char *lookup(void *ud, const char *name) {
  return ss_session_get((ss_session *)ud, name);
}

static int k_run_line(st_ctx *c, const char *line, st_error *err) {
  return mg_run_line(c, line, NULL, lookup, c->session, err);
}

void exec_cell(const pk_chan *ch, const wire_msg *req, const char *code, size_t len,
               int allow_stdin, pk_cell_result *out) {
  pk_kernel *k = ch->k;
  memset(out, 0, sizeof *out);
  st_error_clear(&out->err);
  exec_state e;
  memset(&e, 0, sizeof e);
  e.ch = ch;
  e.req = req;
  e.allow_stdin = allow_stdin;
  e.payload = json_array();
  dyn_init(&e.out[0].buf, PK_STREAM_BUF_BYTES);
  dyn_init(&e.out[1].buf, PK_STREAM_BUF_BYTES);
  st_ctx c;
  memset(&c, 0, sizeof c);
  c.session = k->sess;
  c.fe = &e;
  c.write = k_write;
  c.display = k_display;
  c.progress = k_progress;
  c.cancelled = k_cancelled;
  c.clear = k_clear;
  c.input = k_input;
  c.result = k_result;
  c.page = k_page;
  c.run_line = k_run_line;

  /* h_execute set k->running and cleared k->cancel before execute_input:
   * an interrupt since then ends this cell before its first line. */
  mg_cell cell;
  int rc = mg_cell_parse(code, len, &cell, &out->err);
  if (!rc) {
    for (size_t i = 0; i < cell.n && !rc; i++) {
      if (st_cancelled(&c)) {
        rc = st_error_set(&out->err, ST_ECANCELED, NULL, -1, "interrupted");
      } else {
        e.cur_last = i + 1 == cell.n;
        rc = mg_run_line(&c, cell.lines[i].text, cell.lines[i].body, lookup, k->sess, &out->err);
      }
      if (rc) {
        out->failed_line = cell.lines[i].lineno;
        out->failed_text = strdup(cell.lines[i].text);
      }
    }
    mg_cell_free(&cell);
  }
  if (rc && !out->err.code) st_error_set(&out->err, rc, NULL, -1, "%s", st_strerror(rc));
  atomic_store(&k->running, 0);
  flush_all(&e, 1);
  out->rc = rc;
  out->result = rc ? NULL : e.result;
  if (rc) free(e.result);
  out->payload = e.payload;
  dyn_free(&e.out[0].buf);
  dyn_free(&e.out[1].buf);
}

void exec_result_free(pk_cell_result *r) {
  free(r->failed_text);
  free(r->result);
  json_decref(r->payload);
  memset(r, 0, sizeof *r);
}
