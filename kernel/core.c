/*
 * core.c -- the message table: every request on shell and control gets
 * busy, its handler, idle (kernel_info included: clients wait for IOPub
 * traffic after it). Unknown types are logged and get busy/idle only.
 *
 * It knows the transport only through transport.h: what it sends goes
 * through reply.c, what it receives is already verified, so the C tests
 * run this table over a transport in memory.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__ /* (defined by the headers above) */
#include <malloc.h>
#endif

#include "lib/limits.h"
#include "complete.h"
#include "core.h"
#include "exec.h"
#include "log.h"
#include "magic.h"
#include "reply.h"
#include "utf8.h"

#define ON_SHELL 1u
#define ON_CONTROL 2u
#define PK_CELL_ECHO_BYTES 4096  /* of a cell over PK_LIMIT_CELL_BYTES: echoed and kept */
/* stop_on_error's grace window: how long after a failed execute's reply an
 * execute that was sent before that reply (by its header's date) is still
 * aborted, for requests already on their way when the cell failed (a
 * notebook's "Run All" over a network). ipykernel's stop_on_error_timeout
 * is the precedent. */
#define PK_ABORT_GRACE_MS 500

/* ---- helpers ------------------------------------------------------------------ */

static int flag(json_t *c, const char *key, int dflt) {
  json_t *v = json_object_get(c, key);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* Cursor position in bytes from the request's code-point cursor_pos. */
static size_t cursor_bytes(json_t *c, const char *code, size_t len) {
  json_t *v = json_object_get(c, "cursor_pos");
  if (!json_is_integer(v) || json_integer_value(v) < 0) return len;
  return utf8_cp_to_byte(code, len, (size_t)json_integer_value(v));
}

/* ---- handlers ------------------------------------------------------------------ */

typedef struct pk_req_state {
  int abort_queue; /* a failed execute asked to abort the queued ones */
  int grace;       /* ... and to open the grace window once its reply is out */
  int shutdown;    /* a shutdown_request was answered */
  wire_msg *queued; /* shell requests queued when the execute failed */
  size_t nq, capq;
} pk_req_state;

/* Takes every request already waiting on the socket (without blocking), so
 * "already queued" means queued before the error reply went out: a request
 * sent after the client saw the reply is served normally. */
static void collect_queued(const pk_chan *ch, pk_req_state *st) {
  pk_transport *tr = ch->k->tr;
  for (;;) {
    if (st->nq == st->capq) {
      size_t nc = st->capq ? st->capq * 2 : 8;
      wire_msg *nm = realloc(st->queued, nc * sizeof *nm);
      if (!nm) return;
      st->queued = nm;
      st->capq = nc;
    }
    int r = tr->recv(tr, CONN_SHELL, 0, &st->queued[st->nq]);
    if (r < 0) return;
    if (r == 0) st->nq++;
  }
}

typedef void (*handler_fn)(const pk_chan *ch, wire_msg *req, pk_req_state *st);

json_t *core_kernel_info(void) {
  return json_pack(
      "{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}, s:s, s:[{s:s, s:s}, {s:s, s:s}]}",
      "status", "ok", "protocol_version", WIRE_PROTOCOL_VERSION, "implementation", "pipekernel",
      "implementation_version", PK_IMPLEMENTATION_VERSION, "language_info", "name", PK_LANGUAGE,
      "version", PK_LANGUAGE_VERSION, "mimetype", "text/x-pipeline", "file_extension",
      ".pipeline", "pygments_lexer", "bash", "codemirror_mode", "shell", "nbconvert_exporter",
      "script", "banner",
      "pipekernel " PK_IMPLEMENTATION_VERSION " -- a cell is lines of %magics.\n"
      "%help lists them, %NAME? shows one magic's help, %lsmagic shows their usage.",
      "help_links", "text", "Jupyter messaging protocol", "url",
      "https://jupyter-client.readthedocs.io/en/latest/messaging.html", "text",
      "Jupyter documentation", "url", "https://docs.jupyter.org/");
}

static void h_kernel_info(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  reply_to(ch, req, "kernel_info_reply", core_kernel_info());
}

static size_t hist_entry_bytes(const pk_hist_entry *e) {
  return strlen(e->code) + (e->output ? strlen(e->output) : 0);
}

static void hist_add(pk_kernel *k, int line, const char *code, size_t len, const char *output) {
  size_t add = len + (output ? strlen(output) : 0);
  /* drop the oldest beyond PK_LIMIT_HISTORY cells or PK_LIMIT_HISTORY_BYTES */
  size_t drop = 0;
  while (drop < k->n_hist &&
         (k->n_hist - drop >= PK_LIMIT_HISTORY || k->hist_bytes + add > PK_LIMIT_HISTORY_BYTES)) {
    k->hist_bytes -= hist_entry_bytes(&k->hist[drop]);
    free(k->hist[drop].code);
    free(k->hist[drop].output);
    drop++;
  }
  if (drop) {
    memmove(k->hist, k->hist + drop, (k->n_hist - drop) * sizeof *k->hist);
    k->n_hist -= drop;
  }
  if (k->n_hist == k->cap_hist) {
    size_t nc = k->cap_hist ? k->cap_hist * 2 : 64;
    pk_hist_entry *nh = realloc(k->hist, nc * sizeof *nh);
    if (!nh) return;
    k->hist = nh;
    k->cap_hist = nc;
  }
  pk_hist_entry *e = &k->hist[k->n_hist];
  e->line = line;
  e->code = strndup(code, len);
  e->output = output ? strdup(output) : NULL;
  if (e->code) {
    k->n_hist++;
    k->hist_bytes += hist_entry_bytes(e);
  } else {
    free(e->output);
  }
}

static json_t *error_content(const pk_cell_result *r) {
  char evalue[4096];
  st_error_format(&r->err, evalue, sizeof evalue);
  const char *ename = st_errname(r->rc);
  char first[4352];
  snprintf(first, sizeof first, "\x1b[0;31m%s\x1b[0m: %s", ename, evalue);
  json_t *tb = json_array();
  json_array_append_new(tb, utf8_json(first, strlen(first)));
  if (r->failed_line) {
    char where[512];
    snprintf(where, sizeof where, "  in line %d: %%%.400s", r->failed_line,
             r->failed_text ? r->failed_text : "");
    json_array_append_new(tb, utf8_json(where, strlen(where)));
  }
  json_t *c = json_object();
  json_object_set_new(c, "ename", json_string(ename));
  json_object_set_new(c, "evalue", utf8_json(evalue, strlen(evalue)));
  json_object_set_new(c, "traceback", tb);
  return c;
}

/* Sends a reply (steals content); when an execute failed with
 * stop_on_error (st->grace), opens the grace window from the moment the
 * reply went out. */
static void reply_opening(const pk_chan *ch, const wire_msg *req, const char *type,
                          json_t *content, pk_req_state *st) {
  pk_kernel *k = ch->k;
  reply_sent sent;
  long long us;
  if (reply_send(ch, ch->channel, req->idents, req->n_idents, type, req->header, content,
                 &sent) == 0 &&
      st->grace && wire_date_us(sent.date, &us) == 0) {
    k->abort_until_ms = k->tr->now_ms(k->tr) + PK_ABORT_GRACE_MS;
    k->abort_before_us = us;
  }
}

static void h_execute(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  pk_kernel *k = ch->k;
  if (ch->channel != CONN_SHELL) {
    pk_info(k->tr, "execute_request on control: ignored (cells run on shell)");
    return;
  }
  json_t *c = req->content;
  json_t *jcode = json_object_get(c, "code");
  int silent = flag(c, "silent", 0);
  int store = !silent && flag(c, "store_history", 1);
  int allow_stdin = flag(c, "allow_stdin", 1);
  int stop_on_error = flag(c, "stop_on_error", 1);
  if (store) k->exec_count++;
  int count = k->exec_count;
  const char *code = json_is_string(jcode) ? json_string_value(jcode) : "";
  size_t len = json_is_string(jcode) ? json_string_length(jcode) : 0;
  /* The cell counts as running before execute_input goes out: a frontend
   * that interrupts as soon as it sees execute_input must not find the
   * kernel at rest (SIGINT at rest is ignored). exec_cell clears it. */
  atomic_store(&k->cancel, atomic_load(&k->shutdown) ? 1 : 0);
  atomic_store(&k->running, 1);
  /* A cell over PK_LIMIT_CELL_BYTES is refused (mg_cell_parse); only its
   * first PK_CELL_ECHO_BYTES are echoed and kept in history, so a pasted
   * 60 MB blob is neither copied to every frontend nor held for the
   * kernel's lifetime. */
  size_t shown = len;
  if (len > PK_LIMIT_CELL_BYTES) {
    shown = PK_CELL_ECHO_BYTES;
    while (shown > 0 && ((unsigned char)code[shown] & 0xC0) == 0x80) shown--;
  }
  if (!silent)
    reply_publish(ch, "execute_input", req->header,
                 json_pack("{s:s%, s:i}", "code", code, shown, "execution_count", count));
  pk_cell_result r;
  if (!json_is_string(jcode)) {
    memset(&r, 0, sizeof r);
    r.payload = json_array();
    r.rc = st_error_set(&r.err, ST_EINVAL, "execute_request", -1, "content.code must be a string");
    atomic_store(&k->running, 0);
  } else {
    exec_cell(ch, req, code, len, allow_stdin, &r);
  }
  if (r.result && !silent) {
    json_t *data = json_object();
    json_object_set_new(data, "text/plain", utf8_json(r.result, strlen(r.result)));
    reply_publish(ch, "execute_result", req->header,
                 json_pack("{s:i, s:o, s:{}}", "execution_count", count, "data", data, "metadata"));
  }
  if (store) hist_add(k, count, code, shown, r.result);
  json_t *reply;
  if (r.rc) {
    json_t *e = error_content(&r);
    reply_publish(ch, "error", req->header, json_deep_copy(e));
    json_object_set_new(e, "status", json_string("error"));
    json_object_set_new(e, "execution_count", json_integer(count));
    json_object_set_new(e, "payload", json_array());
    json_object_set_new(e, "user_expressions", json_object());
    reply = e;
    if (stop_on_error && !silent && ch->channel == CONN_SHELL) {
      st->abort_queue = st->grace = 1;
      collect_queued(ch, st);
    }
  } else {
    reply = json_pack("{s:s, s:i, s:O, s:{}}", "status", "ok", "execution_count", count,
                      "payload", r.payload, "user_expressions");
  }
  reply_opening(ch, req, "execute_reply", reply, st);
  exec_result_free(&r);
#ifdef __GLIBC__
  /* Stages free big buffers (read blocks, images, tables) that glibc placed
   * below small long-lived allocations (history, timings, variables): the
   * freed pages stay resident and a long session's RSS creeps up (+10 % over
   * 1,000 cells of the soak test). Hand them back after every cell; it costs
   * tens of microseconds. */
  malloc_trim(0);
#endif
}

/* A request over PK_LIMIT_MSG_BYTES, of which wire_parse read only the
 * header: its reply is an error naming the size and the limit. An execute's
 * error also goes to IOPub, where a notebook shows it under the cell, and
 * aborts the queued executes as stop_on_error (the default; the request's
 * own content was not read) asks. The count does not move: nothing ran. */
static void h_oversize(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  pk_cell_result r;
  memset(&r, 0, sizeof r);
  st_error_clear(&r.err);
  r.rc = st_error_set(&r.err, ST_E2BIG, "message", -1, "request is %zu bytes; the limit is %u",
                      req->oversize, (unsigned)PK_LIMIT_MSG_BYTES);
  json_t *e = error_content(&r);
  int exec = strcmp(req->msg_type, "execute_request") == 0;
  if (exec) {
    reply_publish(ch, "error", req->header, json_deep_copy(e));
    json_object_set_new(e, "execution_count", json_integer(ch->k->exec_count));
    json_object_set_new(e, "payload", json_array());
    json_object_set_new(e, "user_expressions", json_object());
  }
  json_object_set_new(e, "status", json_string("error"));
  size_t tl = strlen(req->msg_type);
  if (tl > 8 && strcmp(req->msg_type + tl - 8, "_request") == 0) {
    char type[160];
    snprintf(type, sizeof type, "%.*s_reply", (int)(tl - 8 < 140 ? tl - 8 : 140), req->msg_type);
    if (exec && ch->channel == CONN_SHELL) {
      st->abort_queue = st->grace = 1;
      collect_queued(ch, st);
    }
    reply_opening(ch, req, type, e, st);
  } else {
    json_decref(e);
  }
}

static void h_complete(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  json_t *jcode = json_object_get(req->content, "code");
  const char *code = json_is_string(jcode) ? json_string_value(jcode) : "";
  size_t len = json_is_string(jcode) ? json_string_length(jcode) : 0;
  size_t pos = cursor_bytes(req->content, code, len), s = pos, e = pos;
  /* the variables belong to the main thread: on control, none */
  json_t *m = complete_code(code, len, pos, ch->channel == CONN_SHELL ? ch->k->sess : NULL, &s,
                            &e);
  reply_to(ch, req, "complete_reply",
             json_pack("{s:s, s:o, s:I, s:I, s:{}}", "status", "ok", "matches",
                       m ? m : json_array(), "cursor_start",
                       (json_int_t)utf8_byte_to_cp(code, len, s), "cursor_end",
                       (json_int_t)utf8_byte_to_cp(code, len, e), "metadata"));
}

static void h_inspect(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  json_t *jcode = json_object_get(req->content, "code");
  const char *code = json_is_string(jcode) ? json_string_value(jcode) : "";
  size_t len = json_is_string(jcode) ? json_string_length(jcode) : 0;
  const st_stage *s = complete_inspect(code, len, cursor_bytes(req->content, code, len));
  json_t *data = json_object();
  if (s) {
    char *h = st_registry_help(s);
    if (h) json_object_set_new(data, "text/plain", utf8_json(h, strlen(h)));
    free(h);
  }
  reply_to(ch, req, "inspect_reply",
             json_pack("{s:s, s:b, s:o, s:{}}", "status", "ok", "found", s != NULL, "data", data,
                       "metadata"));
}

static void h_is_complete(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  json_t *jcode = json_object_get(req->content, "code");
  const char *code = json_is_string(jcode) ? json_string_value(jcode) : "";
  size_t len = json_is_string(jcode) ? json_string_length(jcode) : 0;
  const char *status = mg_is_complete(code, len);
  json_t *c = json_pack("{s:s}", "status", status);
  if (strcmp(status, "incomplete") == 0) json_object_set_new(c, "indent", json_string(""));
  reply_to(ch, req, "is_complete_reply", c);
}

#define PK_HIST_SESSION 1 /* history lives in memory: one session per kernel */

static json_t *hist_item(const pk_hist_entry *e, int output) {
  json_t *in = utf8_json(e->code, strlen(e->code));
  json_t *v = in;
  if (output) {
    json_t *out = e->output ? utf8_json(e->output, strlen(e->output)) : json_null();
    v = json_pack("[o, o]", in, out);
  }
  return json_pack("[i, i, o]", PK_HIST_SESSION, e->line, v);
}

static void h_history(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  pk_kernel *k = ch->k;
  json_t *c = req->content;
  json_t *h = json_array();
  int output = flag(c, "output", 0);
  const char *type = json_string_value(json_object_get(c, "hist_access_type"));
  json_t *jn = json_object_get(c, "n");
  long long n = json_is_integer(jn) ? json_integer_value(jn) : -1;
  if (ch->channel != CONN_SHELL) type = NULL; /* history belongs to the main thread */
  if (type && strcmp(type, "tail") == 0) {
    size_t first = n >= 0 && (size_t)n < k->n_hist ? k->n_hist - (size_t)n : 0;
    for (size_t i = first; i < k->n_hist; i++) json_array_append_new(h, hist_item(&k->hist[i], output));
  } else if (type && strcmp(type, "range") == 0) {
    json_t *js = json_object_get(c, "session");
    long long sess = json_is_integer(js) ? json_integer_value(js) : 0;
    long long start = json_integer_value(json_object_get(c, "start"));
    json_t *jstop = json_object_get(c, "stop");
    long long stop = json_is_integer(jstop) ? json_integer_value(jstop) : -1;
    if (sess <= 0 || sess == PK_HIST_SESSION)
      for (size_t i = 0; i < k->n_hist; i++)
        if (k->hist[i].line >= start && (stop < 0 || k->hist[i].line < stop))
          json_array_append_new(h, hist_item(&k->hist[i], output));
  } else if (type && strcmp(type, "search") == 0) {
    const char *pat = json_string_value(json_object_get(c, "pattern"));
    int unique = flag(c, "unique", 0);
    if (!pat) pat = "*";
    /* newest first while collecting, then reversed into time order */
    size_t cap = n > 0 ? (size_t)n : k->n_hist;
    const pk_hist_entry **hits = calloc(k->n_hist + 1, sizeof *hits);
    size_t nh = 0;
    for (size_t i = k->n_hist; hits && i-- > 0 && nh < cap;) {
      if (fnmatch(pat, k->hist[i].code, 0) != 0) continue;
      int dup = 0;
      for (size_t j = 0; unique && j < nh && !dup; j++) dup = !strcmp(hits[j]->code, k->hist[i].code);
      if (!dup) hits[nh++] = &k->hist[i];
    }
    for (size_t j = nh; j-- > 0;) json_array_append_new(h, hist_item(hits[j], output));
    free(hits);
  }
  reply_to(ch, req, "history_reply", json_pack("{s:s, s:o}", "status", "ok", "history", h));
}

static void h_comm_info(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  reply_to(ch, req, "comm_info_reply", json_pack("{s:s, s:{}}", "status", "ok", "comms"));
}

static void h_comm_open(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  json_t *id = json_object_get(req->content, "comm_id");
  const char *target = json_string_value(json_object_get(req->content, "target_name"));
  pk_info(ch->k->tr, "comm_open for unknown target '%s': closing it", target ? target : "");
  if (json_is_string(id))
    reply_publish(ch, "comm_close", req->header, json_pack("{s:O, s:{}}", "comm_id", id, "data"));
}

static void h_ignore(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)ch;
  (void)req;
  (void)st;
}

static void h_shutdown(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  int restart = flag(req->content, "restart", 0);
  atomic_store(&ch->k->restart, restart);
  reply_to(ch, req, "shutdown_reply", json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
  reply_publish(ch, "shutdown_reply", req->header,
               json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
  st->shutdown = 1;
}

static void h_interrupt(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  if (atomic_load(&ch->k->running)) {
    atomic_store(&ch->k->cancel, 1);
    pk_info(ch->k->tr, "interrupt_request: interrupting the running cell");
  }
  reply_to(ch, req, "interrupt_reply", json_pack("{s:s}", "status", "ok"));
}

static const struct {
  const char *type;
  handler_fn fn;
  unsigned where;
} handlers[] = {
    {"kernel_info_request", h_kernel_info, ON_SHELL | ON_CONTROL},
    {"execute_request", h_execute, ON_SHELL},
    {"complete_request", h_complete, ON_SHELL | ON_CONTROL},
    {"inspect_request", h_inspect, ON_SHELL | ON_CONTROL},
    {"is_complete_request", h_is_complete, ON_SHELL | ON_CONTROL},
    {"history_request", h_history, ON_SHELL},
    {"comm_info_request", h_comm_info, ON_SHELL | ON_CONTROL},
    {"comm_open", h_comm_open, ON_SHELL},
    {"comm_msg", h_ignore, ON_SHELL},
    {"comm_close", h_ignore, ON_SHELL},
    {"shutdown_request", h_shutdown, ON_SHELL | ON_CONTROL},
    {"interrupt_request", h_interrupt, ON_SHELL | ON_CONTROL},
};

static void dispatch_one(const pk_chan *ch, wire_msg *req, pk_req_state *st) {
  reply_status(ch, req->header, "busy");
  unsigned here = ch->channel == CONN_CONTROL ? ON_CONTROL : ON_SHELL;
  size_t i = 0;
  for (; i < sizeof handlers / sizeof handlers[0]; i++)
    if (strcmp(handlers[i].type, req->msg_type) == 0) break;
  if (req->oversize)
    h_oversize(ch, req, st);
  else if (i == sizeof handlers / sizeof handlers[0])
    pk_info(ch->k->tr, "%s: unknown message type '%.64s': ignored", ch->channel == CONN_CONTROL ? "control" : "shell",
           req->msg_type);
  else if (!(handlers[i].where & here))
    pk_info(ch->k->tr, "%s is not served on %s: ignored", req->msg_type,
           ch->channel == CONN_CONTROL ? "control" : "shell");
  else
    handlers[i].fn(ch, req, st);
  reply_status(ch, req->header, "idle");
}

/* After a failed execute with stop_on_error: answer the executes already
 * queued on shell with "aborted"; serve everything else normally. */
/* busy, execute_reply "aborted", idle. */
static void abort_one(const pk_chan *ch, const wire_msg *m) {
  reply_status(ch, m->header, "busy");
  reply_to(ch, m, "execute_reply",
           json_pack("{s:s, s:i}", "status", "aborted", "execution_count", ch->k->exec_count));
  reply_status(ch, m->header, "idle");
}

/* An execute that arrives within the grace window of a failed one and was
 * sent before that one's reply (or carries no date to tell). */
static int in_grace(const pk_chan *ch, const wire_msg *req) {
  pk_kernel *k = ch->k;
  if (ch->channel != CONN_SHELL || strcmp(req->msg_type, "execute_request") != 0 ||
      k->tr->now_ms(k->tr) >= k->abort_until_ms)
    return 0;
  long long us;
  const char *date = json_string_value(json_object_get(req->header, "date"));
  return wire_date_us(date, &us) != 0 || us < k->abort_before_us;
}

static void abort_queued(const pk_chan *ch, pk_req_state *q) {
  pk_kernel *k = ch->k;
  for (size_t i = 0; i < q->nq; i++) {
    wire_msg m = q->queued[i];
    if (strcmp(m.msg_type, "execute_request") == 0) {
      abort_one(ch, &m);
    } else {
      pk_req_state st = {0};
      dispatch_one(ch, &m, &st);
      if (st.shutdown) {
        atomic_store(&k->shutdown_at_ms, k->tr->now_ms(k->tr));
        atomic_store(&k->cancel, 1);
        atomic_store(&k->shutdown, 1);
      }
    }
    wire_msg_free(&m);
  }
}

void core_dispatch(const pk_chan *ch, wire_msg *req) {
  if (in_grace(ch, req)) {
    abort_one(ch, req);
    return;
  }
  pk_req_state st = {0};
  dispatch_one(ch, req, &st);
  if (st.shutdown) {
    /* everything of this request is published; now let the main loop end */
    atomic_store(&ch->k->shutdown_at_ms, ch->k->tr->now_ms(ch->k->tr));
    atomic_store(&ch->k->cancel, 1);
    atomic_store(&ch->k->shutdown, 1);
  }
  if (st.abort_queue && ch->channel == CONN_SHELL) abort_queued(ch, &st);
  free(st.queued);
}

void core_free(pk_kernel *k) {
  for (size_t i = 0; i < k->n_hist; i++) {
    free(k->hist[i].code);
    free(k->hist[i].output);
  }
  free(k->hist);
  k->hist = NULL;
  k->n_hist = k->cap_hist = k->hist_bytes = 0;
}
