/*
 * core.c -- the message table: every request on shell and control gets
 * busy, its handler, idle (kernel_info included: clients wait for IOPub
 * traffic after it). Unknown types are logged and get busy/idle only.
 */
#include <dirent.h>
#include <fnmatch.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zmq.h>

#include "lib/limits.h"
#include "core.h"
#include "magic.h"
#include "utf8.h"

#define ON_SHELL 1u
#define ON_CONTROL 2u

/* ---- sending ------------------------------------------------------------------ */

static void send_msg(pk_chan *ch, void *sock, const wire_buf *idents, size_t n_idents,
                     const char *msg_type, json_t *parent, json_t *content) {
  json_t *header = wire_header_new(msg_type, ch->k->session);
  json_t *meta = json_object();
  wire_buf *f = NULL;
  size_t n = 0;
  if (!header || !meta || !content ||
      wire_build(idents, n_idents, header, parent, meta, content, &ch->k->key, &f, &n) != 0) {
    pk_log("cannot build a %s message (out of memory or invalid text)", msg_type);
  } else if (srv_send_frames(sock, f, n) != 0) {
    pk_log("cannot send %s: %s", msg_type, zmq_strerror(zmq_errno()));
  }
  wire_frames_free(f, n);
  json_decref(header);
  json_decref(meta);
  json_decref(content);
}

void core_publish(pk_chan *ch, const char *msg_type, json_t *parent, json_t *content) {
  char topic[128];
  snprintf(topic, sizeof topic, "kernel.%s.%s", ch->k->session, msg_type);
  wire_buf t = {(unsigned char *)topic, strlen(topic)};
  send_msg(ch, ch->pub, &t, 1, msg_type, parent, content);
}

void core_status(pk_chan *ch, json_t *parent, const char *state) {
  core_publish(ch, "status", parent, json_pack("{s:s}", "execution_state", state));
}

void core_reply(pk_chan *ch, const wire_msg *req, const char *msg_type, json_t *content) {
  send_msg(ch, ch->sock, req->idents, req->n_idents, msg_type, req->header, content);
}

/* ---- helpers ------------------------------------------------------------------ */

static int flag(json_t *c, const char *key, int dflt) {
  json_t *v = json_object_get(c, key);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

json_t *core_text_json(const char *s, size_t len) {
  char *tmp = malloc(len * 3 + 1);
  if (!tmp) return NULL;
  size_t n = utf8_clean(s, len, 1, tmp, NULL);
  json_t *j = json_stringn(tmp, n);
  free(tmp);
  return j;
}

/* Cursor position in bytes from the request's code-point cursor_pos. */
static size_t cursor_bytes(json_t *c, const char *code, size_t len) {
  json_t *v = json_object_get(c, "cursor_pos");
  if (!json_is_integer(v) || json_integer_value(v) < 0) return len;
  return utf8_cp_to_byte(code, len, (size_t)json_integer_value(v));
}

static int is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; }

/* Start of the logical line (backslash continuations joined) holding pos. */
static size_t logical_line_start(const char *code, size_t pos) {
  size_t ls = pos;
  while (ls > 0 && code[ls - 1] != '\n') ls--;
  while (ls > 0) { /* the previous physical line ends with a backslash? */
    size_t e = ls - 1; /* the '\n' */
    while (e > 0 && is_blank(code[e - 1])) e--;
    size_t k = 0;
    while (e > k && code[e - 1 - k] == '\\') k++;
    if (k % 2 == 0) break;
    ls = e - k; /* inside the previous line */
    while (ls > 0 && code[ls - 1] != '\n') ls--;
  }
  return ls;
}

/* The magic name of the logical line starting at ls: '%' and '?' stripped. */
static void line_magic(const char *code, size_t len, size_t ls, char *name, size_t cap) {
  while (ls < len && is_blank(code[ls])) ls++;
  while (ls < len && code[ls] == '%') ls++;
  size_t n = 0;
  while (ls < len && !is_blank(code[ls]) && code[ls] != '\n' && code[ls] != '?' && n + 1 < cap)
    name[n++] = code[ls++];
  name[n] = 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

#define COMPLETE_MAX 500

static void complete_paths(const char *tok, size_t tlen, json_t *out) {
  char *t = strndup(tok, tlen);
  if (!t) return;
  const char *slash = strrchr(t, '/');
  size_t dlen = slash ? (size_t)(slash - t) + 1 : 0;
  const char *base = t + dlen;
  char dir[4096];
  if (!dlen) snprintf(dir, sizeof dir, ".");
  else if (t[0] == '~' && (dlen == 2) && getenv("HOME"))
    snprintf(dir, sizeof dir, "%s/", getenv("HOME"));
  else if (t[0] == '~' && t[1] == '/' && getenv("HOME"))
    snprintf(dir, sizeof dir, "%s/%.*s", getenv("HOME"), (int)(dlen - 2), t + 2);
  else snprintf(dir, sizeof dir, "%.*s", (int)dlen, t);
  DIR *d = opendir(dir);
  if (!d) { free(t); return; }
  char *names[COMPLETE_MAX];
  size_t n = 0, blen = strlen(base);
  struct dirent *e;
  while ((e = readdir(d)) && n < COMPLETE_MAX) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (e->d_name[0] == '.' && base[0] != '.') continue;
    if (strncmp(e->d_name, base, blen) != 0) continue;
    int isdir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
      char full[8192];
      struct stat st;
      snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
      isdir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
    }
    size_t m = dlen + strlen(e->d_name) + 2;
    char *s = malloc(m);
    if (!s) break;
    snprintf(s, m, "%.*s%s%s", (int)dlen, t, e->d_name, isdir ? "/" : "");
    names[n++] = s;
  }
  closedir(d);
  qsort(names, n, sizeof names[0], cmp_str);
  for (size_t i = 0; i < n; i++) {
    json_array_append_new(out, core_text_json(names[i], strlen(names[i])));
    free(names[i]);
  }
  free(t);
}

json_t *core_complete(const char *code, size_t len, size_t pos, size_t *start, size_t *end) {
  json_t *m = json_array();
  if (!m) return NULL;
  if (pos > len) pos = len;
  size_t ts = pos;
  while (ts > 0 && !is_blank(code[ts - 1]) && code[ts - 1] != '\n' && code[ts - 1] != '"' &&
         code[ts - 1] != '\'')
    ts--;
  *start = ts;
  *end = pos;
  size_t ls = logical_line_start(code, pos);
  size_t fw = ls;
  while (fw < ts && is_blank(code[fw])) fw++;
  const char *tok = code + ts;
  size_t tlen = pos - ts;
  if (fw == ts) { /* the magic's name */
    size_t pct = 0;
    while (pct < tlen && tok[pct] == '%') pct++;
    if (pct == 0) pct = 1;
    if (pct > 2) pct = 2;
    const char *pre = tok;
    size_t plen = tlen;
    while (plen && *pre == '%') { pre++; plen--; }
    for (size_t i = 0; i < st_registry_count(); i++) {
      const st_stage *s = st_registry_at(i);
      if (strlen(s->name) >= plen && strncmp(s->name, pre, plen) == 0) {
        char buf[160];
        snprintf(buf, sizeof buf, "%.*s%s", (int)pct, "%%%%", s->name);
        json_array_append_new(m, json_string(buf));
      }
    }
    return m;
  }
  if (tlen && tok[0] == '-') { /* an option of the line's magic */
    char name[128];
    line_magic(code, len, ls, name, sizeof name);
    const st_stage *s = st_registry_find(name);
    const char *pre = tok;
    size_t plen = tlen;
    while (plen && *pre == '-') { pre++; plen--; }
    for (int i = 0; s && s->opts && s->opts[i].name; i++)
      if (strncmp(s->opts[i].name, pre, plen) == 0) {
        char buf[160];
        snprintf(buf, sizeof buf, "--%s", s->opts[i].name);
        json_array_append_new(m, json_string(buf));
      }
    return m;
  }
  complete_paths(tok, tlen, m);
  return m;
}

/* ---- handlers ------------------------------------------------------------------ */

typedef struct pk_req_state {
  int abort_queue; /* a failed execute asked to abort the queued ones */
  int shutdown;    /* a shutdown_request was answered */
  wire_msg *queued; /* shell requests queued when the execute failed */
  size_t nq, capq;
} pk_req_state;

/* Takes every request already waiting on the socket (without blocking), so
 * "already queued" means queued before the error reply went out: a request
 * sent after the client saw the reply is served normally. */
static void collect_queued(pk_chan *ch, pk_req_state *st) {
  for (;;) {
    if (st->nq == st->capq) {
      size_t nc = st->capq ? st->capq * 2 : 8;
      wire_msg *nm = realloc(st->queued, nc * sizeof *nm);
      if (!nm) return;
      st->queued = nm;
      st->capq = nc;
    }
    int r = srv_recv(ch->k, ch->sock, ZMQ_DONTWAIT, "shell", &st->queued[st->nq]);
    if (r < 0) return;
    if (r == 0) st->nq++;
  }
}

typedef void (*handler_fn)(pk_chan *ch, wire_msg *req, pk_req_state *st);

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

static void h_kernel_info(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  core_reply(ch, req, "kernel_info_reply", core_kernel_info());
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
  json_array_append_new(tb, core_text_json(first, strlen(first)));
  if (r->failed_line) {
    char where[512];
    snprintf(where, sizeof where, "  in line %d: %%%.400s", r->failed_line,
             r->failed_text ? r->failed_text : "");
    json_array_append_new(tb, core_text_json(where, strlen(where)));
  }
  json_t *c = json_object();
  json_object_set_new(c, "ename", json_string(ename));
  json_object_set_new(c, "evalue", core_text_json(evalue, strlen(evalue)));
  json_object_set_new(c, "traceback", tb);
  return c;
}

static void h_execute(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  pk_kernel *k = ch->k;
  if (ch->channel != CONN_SHELL) {
    pk_log("execute_request on control: ignored (cells run on shell)");
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
    core_publish(ch, "execute_input", req->header,
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
    json_object_set_new(data, "text/plain", core_text_json(r.result, strlen(r.result)));
    core_publish(ch, "execute_result", req->header,
                 json_pack("{s:i, s:o, s:{}}", "execution_count", count, "data", data, "metadata"));
  }
  if (store) hist_add(k, count, code, shown, r.result);
  json_t *reply;
  if (r.rc) {
    json_t *e = error_content(&r);
    core_publish(ch, "error", req->header, json_deep_copy(e));
    json_object_set_new(e, "status", json_string("error"));
    json_object_set_new(e, "execution_count", json_integer(count));
    json_object_set_new(e, "payload", json_array());
    json_object_set_new(e, "user_expressions", json_object());
    reply = e;
    if (stop_on_error && !silent && ch->channel == CONN_SHELL) {
      st->abort_queue = 1;
      collect_queued(ch, st);
    }
  } else {
    reply = json_pack("{s:s, s:i, s:O, s:{}}", "status", "ok", "execution_count", count,
                      "payload", r.payload, "user_expressions");
  }
  core_reply(ch, req, "execute_reply", reply);
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

static void h_complete(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  json_t *jcode = json_object_get(req->content, "code");
  const char *code = json_is_string(jcode) ? json_string_value(jcode) : "";
  size_t len = json_is_string(jcode) ? json_string_length(jcode) : 0;
  size_t pos = cursor_bytes(req->content, code, len), s = pos, e = pos;
  json_t *m = core_complete(code, len, pos, &s, &e);
  core_reply(ch, req, "complete_reply",
             json_pack("{s:s, s:o, s:I, s:I, s:{}}", "status", "ok", "matches",
                       m ? m : json_array(), "cursor_start",
                       (json_int_t)utf8_byte_to_cp(code, len, s), "cursor_end",
                       (json_int_t)utf8_byte_to_cp(code, len, e), "metadata"));
}

static void h_inspect(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  json_t *jcode = json_object_get(req->content, "code");
  const char *code = json_is_string(jcode) ? json_string_value(jcode) : "";
  size_t len = json_is_string(jcode) ? json_string_length(jcode) : 0;
  size_t pos = cursor_bytes(req->content, code, len);
  /* the word under the cursor when it names a magic, else the line's magic */
  size_t a = pos, b = pos;
  while (a > 0 && !is_blank(code[a - 1]) && code[a - 1] != '\n') a--;
  while (b < len && !is_blank(code[b]) && code[b] != '\n') b++;
  char word[128];
  size_t wa = a;
  while (wa < b && code[wa] == '%') wa++;
  size_t wl = b - wa;
  while (wl && code[wa + wl - 1] == '?') wl--;
  snprintf(word, sizeof word, "%.*s", (int)(wl < sizeof word ? wl : sizeof word - 1), code + wa);
  const st_stage *s = wl < sizeof word ? st_registry_find(word) : NULL;
  if (!s) {
    char name[128];
    line_magic(code, len, logical_line_start(code, pos), name, sizeof name);
    s = st_registry_find(name);
  }
  json_t *data = json_object();
  if (s) {
    char *h = st_registry_help(s);
    if (h) json_object_set_new(data, "text/plain", core_text_json(h, strlen(h)));
    free(h);
  }
  core_reply(ch, req, "inspect_reply",
             json_pack("{s:s, s:b, s:o, s:{}}", "status", "ok", "found", s != NULL, "data", data,
                       "metadata"));
}

static void h_is_complete(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  json_t *jcode = json_object_get(req->content, "code");
  const char *code = json_is_string(jcode) ? json_string_value(jcode) : "";
  size_t len = json_is_string(jcode) ? json_string_length(jcode) : 0;
  const char *status = mg_is_complete(code, len);
  json_t *c = json_pack("{s:s}", "status", status);
  if (strcmp(status, "incomplete") == 0) json_object_set_new(c, "indent", json_string(""));
  core_reply(ch, req, "is_complete_reply", c);
}

#define PK_HIST_SESSION 1 /* history lives in memory: one session per kernel */

static json_t *hist_item(const pk_hist_entry *e, int output) {
  json_t *in = core_text_json(e->code, strlen(e->code));
  json_t *v = in;
  if (output) {
    json_t *out = e->output ? core_text_json(e->output, strlen(e->output)) : json_null();
    v = json_pack("[o, o]", in, out);
  }
  return json_pack("[i, i, o]", PK_HIST_SESSION, e->line, v);
}

static void h_history(pk_chan *ch, wire_msg *req, pk_req_state *st) {
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
  core_reply(ch, req, "history_reply", json_pack("{s:s, s:o}", "status", "ok", "history", h));
}

static void h_comm_info(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  core_reply(ch, req, "comm_info_reply", json_pack("{s:s, s:{}}", "status", "ok", "comms"));
}

static void h_comm_open(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  json_t *id = json_object_get(req->content, "comm_id");
  const char *target = json_string_value(json_object_get(req->content, "target_name"));
  pk_log("comm_open for unknown target '%s': closing it", target ? target : "");
  if (json_is_string(id))
    core_publish(ch, "comm_close", req->header, json_pack("{s:O, s:{}}", "comm_id", id, "data"));
}

static void h_ignore(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)ch;
  (void)req;
  (void)st;
}

static void h_shutdown(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  int restart = flag(req->content, "restart", 0);
  atomic_store(&ch->k->restart, restart);
  core_reply(ch, req, "shutdown_reply", json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
  core_publish(ch, "shutdown_reply", req->header,
               json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
  st->shutdown = 1;
}

static void h_interrupt(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  (void)st;
  if (atomic_load(&ch->k->running)) {
    atomic_store(&ch->k->cancel, 1);
    pk_log("interrupt_request: interrupting the running cell");
  }
  core_reply(ch, req, "interrupt_reply", json_pack("{s:s}", "status", "ok"));
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

static void dispatch_one(pk_chan *ch, wire_msg *req, pk_req_state *st) {
  core_status(ch, req->header, "busy");
  unsigned here = ch->channel == CONN_CONTROL ? ON_CONTROL : ON_SHELL;
  size_t i = 0;
  for (; i < sizeof handlers / sizeof handlers[0]; i++)
    if (strcmp(handlers[i].type, req->msg_type) == 0) break;
  if (i == sizeof handlers / sizeof handlers[0])
    pk_log("%s: unknown message type '%.64s': ignored", ch->channel == CONN_CONTROL ? "control" : "shell",
           req->msg_type);
  else if (!(handlers[i].where & here))
    pk_log("%s is not served on %s: ignored", req->msg_type,
           ch->channel == CONN_CONTROL ? "control" : "shell");
  else
    handlers[i].fn(ch, req, st);
  core_status(ch, req->header, "idle");
}

/* After a failed execute with stop_on_error: answer the executes already
 * queued on shell with "aborted"; serve everything else normally. */
static void abort_queued(pk_chan *ch, pk_req_state *q) {
  pk_kernel *k = ch->k;
  for (size_t i = 0; i < q->nq; i++) {
    wire_msg m = q->queued[i];
    if (strcmp(m.msg_type, "execute_request") == 0) {
      core_status(ch, m.header, "busy");
      core_reply(ch, &m, "execute_reply",
                 json_pack("{s:s, s:i}", "status", "aborted", "execution_count", k->exec_count));
      core_status(ch, m.header, "idle");
    } else {
      pk_req_state st = {0};
      dispatch_one(ch, &m, &st);
      if (st.shutdown) {
        atomic_store(&k->shutdown_at_ms, srv_now_ms());
        atomic_store(&k->cancel, 1);
        atomic_store(&k->shutdown, 1);
      }
    }
    wire_msg_free(&m);
  }
}

void core_dispatch(pk_chan *ch, wire_msg *req) {
  pk_req_state st = {0};
  dispatch_one(ch, req, &st);
  if (st.shutdown) {
    /* everything of this request is published; now let the main loop end */
    atomic_store(&ch->k->shutdown_at_ms, srv_now_ms());
    atomic_store(&ch->k->cancel, 1);
    atomic_store(&ch->k->shutdown, 1);
  }
  if (st.abort_queue && ch->channel == CONN_SHELL) abort_queued(ch, &st);
  free(st.queued);
}
