/*
 * test-kernel-table.c -- the message table (kernel/core.c) and one cell
 * (kernel/exec.c) over the transport in memory (memtransport.h): busy, the
 * reply and idle for each handler, execution counting, the abort of queued
 * executes after an error, kernel_info, complete, inspect, is_complete,
 * history, comms, shutdown, unknown types, and the stdin round trip.
 * Requests are signed and every message the kernel sends is verified.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernel/core.h"
#include "lib/limits.h"
#include "lib/session.h"
#include "memtransport.h"
#include "task.h"

static const wire_key KEY = {"table-key", 9, "SHA256"};

static void kernel_init(pk_kernel *k, memtransport *mt) {
  mt_init(mt, &KEY);
  memset(k, 0, sizeof *k);
  k->tr = &mt->tr;
  k->key = KEY;
  snprintf(k->session, sizeof k->session, "%s", "00000000-0000-4000-8000-000000000000");
  k->sess = ss_session_new();
  ASSERT(k->sess);
  k->main_thread = pthread_self();
}

static void kernel_done(pk_kernel *k, memtransport *mt) {
  ASSERT_EQ(mt->bad_out, 0);
  core_free(k);
  ss_session_free(k->sess);
  mt_free(mt);
}

/* The reply (not IOPub) whose parent is pid. */
static const wire_msg *reply_of(memtransport *mt, const char *pid) {
  int i = mt_find(mt, 0, CONN_SHELL, NULL, pid);
  if (i < 0) i = mt_find(mt, 0, CONN_CONTROL, NULL, pid);
  ASSERT(i >= 0);
  return &mt->out[i].m;
}

static const char *reply_status_of(memtransport *mt, const char *pid) {
  return json_string_value(json_object_get(reply_of(mt, pid)->content, "status"));
}

static json_int_t reply_count(memtransport *mt, const char *pid) {
  return json_integer_value(json_object_get(reply_of(mt, pid)->content, "execution_count"));
}

/* The text/plain of pid's execute_result, or NULL. */
static const char *result_of(memtransport *mt, const char *pid) {
  int i = mt_find(mt, 0, CONN_IOPUB, "execute_result", pid);
  if (i < 0) return NULL;
  return json_string_value(
      json_object_get(json_object_get(mt->out[i].m.content, "data"), "text/plain"));
}

static const char *execute(memtransport *mt, pk_kernel *k, const char *code, json_t *extra) {
  json_t *c = json_pack("{s:s}", "code", code);
  if (extra) {
    json_object_update(c, extra);
    json_decref(extra);
  }
  const char *id = mt_request(mt, CONN_SHELL, "execute_request", c);
  ASSERT_EQ(mt_serve(mt, k, CONN_SHELL), 1);
  return id;
}

TEST_IMPL(kernel_table_busy_idle) {
  static const struct {
    const char *type, *content, *seq;
  } rows[] = {
      {"kernel_info_request", "{}", "busy shell:kernel_info_reply idle"},
      {"complete_request", "{\"code\": \"%ec\", \"cursor_pos\": 3}", "busy shell:complete_reply idle"},
      {"inspect_request", "{\"code\": \"%echo\", \"cursor_pos\": 2}", "busy shell:inspect_reply idle"},
      {"is_complete_request", "{\"code\": \"%echo\"}", "busy shell:is_complete_reply idle"},
      {"history_request", "{\"hist_access_type\": \"tail\", \"n\": 5}", "busy shell:history_reply idle"},
      {"comm_info_request", "{}", "busy shell:comm_info_reply idle"},
      {"comm_open", "{\"comm_id\": \"c-1\", \"target_name\": \"nope\"}", "busy comm_close idle"},
      {"comm_msg", "{\"comm_id\": \"c-1\", \"data\": {}}", "busy idle"},
      {"comm_close", "{\"comm_id\": \"c-1\", \"data\": {}}", "busy idle"},
      {"interrupt_request", "{}", "busy shell:interrupt_reply idle"},
      {"execute_request", "{\"code\": \"%echo hi\"}", "busy execute_input stream shell:execute_reply idle"},
      {"no_such_request", "{}", "busy idle"},
  };
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    pk_kernel k;
    memtransport mt;
    kernel_init(&k, &mt);
    const char *id = mt_request(&mt, CONN_SHELL, rows[r].type, json_loads(rows[r].content, 0, NULL));
    ASSERT_EQ(mt_serve(&mt, &k, CONN_SHELL), 1);
    ASSERT_STR_EQ(mt_seq(&mt, id), rows[r].seq);
    for (size_t i = 0; i < mt.n_out; i++) {
      const mt_out *o = &mt.out[i];
      ASSERT_EQ(o->origin, CONN_SHELL);
      ASSERT_EQ(o->m.n_idents, 1);
      if (o->channel == CONN_IOPUB) { /* the topic names the session and type */
        char topic[128];
        snprintf(topic, sizeof topic, "kernel.%s.%s", k.session, o->m.msg_type);
        ASSERT_EQ(o->m.idents[0].len, strlen(topic));
        ASSERT(memcmp(o->m.idents[0].p, topic, strlen(topic)) == 0);
      } else { /* the reply goes back to the client that asked */
        ASSERT_EQ(o->m.idents[0].len, strlen(MT_CLIENT));
        ASSERT(memcmp(o->m.idents[0].p, MT_CLIENT, strlen(MT_CLIENT)) == 0);
      }
    }
    kernel_done(&k, &mt);
  }
  /* control: the same busy/idle, published from the control thread */
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  const char *id = mt_request(&mt, CONN_CONTROL, "kernel_info_request", NULL);
  const char *hist = mt_request(&mt, CONN_CONTROL, "history_request", NULL);
  const char *exec = mt_request(&mt, CONN_CONTROL, "execute_request",
                                json_pack("{s:s}", "code", "%echo no"));
  ASSERT_EQ(mt_serve(&mt, &k, CONN_CONTROL), 3);
  ASSERT_STR_EQ(mt_seq(&mt, id), "busy control:kernel_info_reply idle");
  ASSERT_STR_EQ(mt_seq(&mt, hist), "busy idle"); /* history belongs to shell */
  ASSERT_EQ(mt_logged(&mt, "history_request is not served on control: ignored"), 1);
  ASSERT_STR_EQ(mt_seq(&mt, exec), "busy idle"); /* cells run on shell */
  ASSERT_EQ(mt_logged(&mt, "execute_request is not served on control: ignored"), 1);
  for (size_t i = 0; i < mt.n_out; i++) ASSERT_EQ(mt.out[i].origin, CONN_CONTROL);
  kernel_done(&k, &mt);
  return 0;
}

TEST_IMPL(kernel_table_unknown_type) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  const char *bad = mt_request(&mt, CONN_SHELL, "no_such_request", NULL);
  const char *next = mt_request(&mt, CONN_SHELL, "kernel_info_request", NULL);
  ASSERT_EQ(mt_serve(&mt, &k, CONN_SHELL), 2);
  ASSERT_STR_EQ(mt_seq(&mt, bad), "busy idle");
  ASSERT_EQ(mt_logged_at(&mt, PK_LOG_INFO, "shell: unknown message type 'no_such_request': ignored"),
            1); /* routine: written only with PK_LOG=info */
  ASSERT_STR_EQ(mt_seq(&mt, next), "busy shell:kernel_info_reply idle");
  kernel_done(&k, &mt);
  return 0;
}

TEST_IMPL(kernel_table_kernel_info) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  const char *id = mt_request(&mt, CONN_SHELL, "kernel_info_request", NULL);
  mt_serve(&mt, &k, CONN_SHELL);
  const wire_msg *r = reply_of(&mt, id);
  ASSERT_STR_EQ(json_string_value(json_object_get(r->header, "version")), WIRE_PROTOCOL_VERSION);
  ASSERT_STR_EQ(json_string_value(json_object_get(r->header, "session")), k.session);
  json_t *c = r->content;
  ASSERT_STR_EQ(json_string_value(json_object_get(c, "status")), "ok");
  ASSERT_STR_EQ(json_string_value(json_object_get(c, "protocol_version")), "5.3");
  ASSERT_STR_EQ(json_string_value(json_object_get(c, "implementation")), "pipekernel");
  json_t *li = json_object_get(c, "language_info");
  ASSERT_STR_EQ(json_string_value(json_object_get(li, "name")), "pipeline");
  ASSERT_STR_EQ(json_string_value(json_object_get(li, "file_extension")), ".pipeline");
  ASSERT(json_array_size(json_object_get(c, "help_links")) == 2);
  ASSERT_CONTAINS(json_string_value(json_object_get(c, "banner")), "%help");
  kernel_done(&k, &mt);
  return 0;
}

TEST_IMPL(kernel_table_execute_count) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  const char *a = execute(&mt, &k, "%echo a", NULL);
  ASSERT_STR_EQ(reply_status_of(&mt, a), "ok");
  ASSERT_EQ(reply_count(&mt, a), 1);
  int i = mt_find(&mt, 0, CONN_IOPUB, "execute_input", a);
  ASSERT(i >= 0);
  ASSERT_EQ(json_integer_value(json_object_get(mt.out[i].m.content, "execution_count")), 1);
  i = mt_find(&mt, 0, CONN_IOPUB, "stream", a);
  ASSERT_STR_EQ(json_string_value(json_object_get(mt.out[i].m.content, "text")), "a\n");
  /* silent: no execute_input, no execute_result, count unchanged */
  const char *s = execute(&mt, &k, "%pwd", json_pack("{s:b}", "silent", 1));
  ASSERT_EQ(reply_count(&mt, s), 1);
  ASSERT_STR_EQ(mt_seq(&mt, s), "busy shell:execute_reply idle");
  /* store_history false: counted as not stored */
  const char *u = execute(&mt, &k, "%echo unstored", json_pack("{s:b}", "store_history", 0));
  ASSERT_EQ(reply_count(&mt, u), 1);
  /* a failing cell counts, its error goes to IOPub and the reply */
  const char *f = execute(&mt, &k, "%no-such-magic", NULL);
  ASSERT_STR_EQ(mt_seq(&mt, f), "busy execute_input error shell:execute_reply idle");
  ASSERT_STR_EQ(reply_status_of(&mt, f), "error");
  ASSERT_EQ(reply_count(&mt, f), 2);
  ASSERT_STR_EQ(json_string_value(json_object_get(reply_of(&mt, f)->content, "ename")),
                "UnknownMagicError");
  /* the last line's value is the execute_result, with the count */
  const char *v = execute(&mt, &k, "%set Y=2\n%set Y", NULL);
  ASSERT_STR_EQ(mt_seq(&mt, v), "busy execute_input execute_result shell:execute_reply idle");
  ASSERT_STR_EQ(result_of(&mt, v), "2");
  ASSERT_EQ(reply_count(&mt, v), 3);
  i = mt_find(&mt, 0, CONN_IOPUB, "execute_result", v);
  ASSERT_EQ(json_integer_value(json_object_get(mt.out[i].m.content, "execution_count")), 3);
  /* code that is not a string: an error, counted */
  const char *b = mt_request(&mt, CONN_SHELL, "execute_request", json_pack("{s:i}", "code", 7));
  mt_serve(&mt, &k, CONN_SHELL);
  ASSERT_STR_EQ(reply_status_of(&mt, b), "error");
  ASSERT_CONTAINS(json_string_value(json_object_get(reply_of(&mt, b)->content, "evalue")),
                  "content.code must be a string");
  ASSERT_EQ(k.exec_count, 4);
  ASSERT_EQ(atomic_load(&k.running), 0);
  kernel_done(&k, &mt);
  return 0;
}

TEST_IMPL(kernel_table_stop_on_error) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  /* queued before the failing cell's reply: aborted; other requests served */
  const char *first = mt_request(&mt, CONN_SHELL, "execute_request",
                                 json_pack("{s:s, s:b}", "code", "%no-such-magic",
                                           "stop_on_error", 1));
  const char *second = mt_request(&mt, CONN_SHELL, "execute_request",
                                  json_pack("{s:s}", "code", "%echo never runs"));
  const char *info = mt_request(&mt, CONN_SHELL, "kernel_info_request", NULL);
  const char *third = mt_request(&mt, CONN_SHELL, "execute_request",
                                 json_pack("{s:s}", "code", "%set RAN=1"));
  ASSERT_EQ(mt_serve(&mt, &k, CONN_SHELL), 1); /* the rest were taken by the abort */
  ASSERT_STR_EQ(reply_status_of(&mt, first), "error");
  ASSERT_STR_EQ(reply_status_of(&mt, second), "aborted");
  ASSERT_STR_EQ(reply_status_of(&mt, info), "ok");
  ASSERT_STR_EQ(reply_status_of(&mt, third), "aborted");
  ASSERT_STR_EQ(mt_seq(&mt, second), "busy shell:execute_reply idle");
  ASSERT_STR_EQ(mt_seq(&mt, info), "busy shell:kernel_info_reply idle");
  ASSERT_STR_EQ(mt_seq(&mt, third), "busy shell:execute_reply idle");
  ASSERT_EQ(reply_count(&mt, third), 1);
  ASSERT(ss_session_get(k.sess, "RAN") == NULL);
  /* the replies went out in the order of the requests */
  ASSERT(mt_find(&mt, 0, CONN_SHELL, NULL, first) < mt_find(&mt, 0, CONN_SHELL, NULL, second));
  ASSERT(mt_find(&mt, 0, CONN_SHELL, NULL, info) < mt_find(&mt, 0, CONN_SHELL, NULL, third));
  /* the abort ended: the next execute runs */
  const char *again = execute(&mt, &k, "%set RAN=1", NULL);
  ASSERT_STR_EQ(reply_status_of(&mt, again), "ok");
  ASSERT_STR_EQ(ss_session_get(k.sess, "RAN"), "1");
  /* stop_on_error false (and silent) keep the queue */
  const char *keep = mt_request(&mt, CONN_SHELL, "execute_request",
                                json_pack("{s:s, s:b}", "code", "%no-such-magic",
                                          "stop_on_error", 0));
  const char *still = mt_request(&mt, CONN_SHELL, "execute_request",
                                 json_pack("{s:s}", "code", "%set STILL=1"));
  ASSERT_EQ(mt_serve(&mt, &k, CONN_SHELL), 2);
  ASSERT_STR_EQ(reply_status_of(&mt, keep), "error");
  ASSERT_STR_EQ(reply_status_of(&mt, still), "ok");
  kernel_done(&k, &mt);
  return 0;
}

static json_t *content_of(memtransport *mt, const char *pid) {
  return reply_of(mt, pid)->content;
}

TEST_IMPL(kernel_table_complete_inspect) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  /* cursor positions are code points: é is 2 bytes, 😀 is 4 */
  const char *code = "%echo h\xc3\xa9llo \xf0\x9f\x98\x80\n%ec";
  size_t cps = strlen("%echo hello X\n%ec");
  const char *c = mt_request(&mt, CONN_SHELL, "complete_request",
                             json_pack("{s:s, s:I}", "code", code, "cursor_pos", (json_int_t)cps));
  const char *ins = mt_request(&mt, CONN_SHELL, "inspect_request",
                               json_pack("{s:s, s:i}", "code", "%sleep 3", "cursor_pos", 2));
  const char *none = mt_request(&mt, CONN_SHELL, "inspect_request",
                                json_pack("{s:s, s:i}", "code", "no magic here", "cursor_pos", 2));
  const char *ctl = mt_request(&mt, CONN_CONTROL, "complete_request",
                               json_pack("{s:s, s:i}", "code", "%sle", "cursor_pos", 4));
  mt_serve(&mt, &k, CONN_SHELL);
  mt_serve(&mt, &k, CONN_CONTROL);
  json_t *r = content_of(&mt, c);
  ASSERT_STR_EQ(json_string_value(json_object_get(r, "status")), "ok");
  ASSERT_EQ(json_array_size(json_object_get(r, "matches")), 1);
  ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(r, "matches"), 0)), "%echo");
  ASSERT_EQ(json_integer_value(json_object_get(r, "cursor_start")), cps - 3);
  ASSERT_EQ(json_integer_value(json_object_get(r, "cursor_end")), cps);
  r = content_of(&mt, ins);
  ASSERT(json_is_true(json_object_get(r, "found")));
  ASSERT_CONTAINS(json_string_value(json_object_get(json_object_get(r, "data"), "text/plain")),
                  "%sleep SECONDS");
  r = content_of(&mt, none);
  ASSERT_STR_EQ(json_string_value(json_object_get(r, "status")), "ok");
  ASSERT(json_is_false(json_object_get(r, "found")));
  r = content_of(&mt, ctl); /* also served on control */
  ASSERT_STR_EQ(json_string_value(json_array_get(json_object_get(r, "matches"), 0)), "%sleep");
  kernel_done(&k, &mt);
  return 0;
}

TEST_IMPL(kernel_table_is_complete) {
  static const struct {
    const char *code, *status;
  } rows[] = {
      {"%echo a \\", "incomplete"},
      {"%echo 'a", "incomplete"},
      {"%echo a", "complete"},
      {"# a comment\n%echo a", "complete"},
      {"echo a", "invalid"},
  };
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    const char *id = mt_request(&mt, CONN_SHELL, "is_complete_request",
                                json_pack("{s:s}", "code", rows[i].code));
    mt_serve(&mt, &k, CONN_SHELL);
    json_t *r = content_of(&mt, id);
    ASSERT_STR_EQ(json_string_value(json_object_get(r, "status")), rows[i].status);
    json_t *indent = json_object_get(r, "indent");
    if (strcmp(rows[i].status, "incomplete") == 0) ASSERT_STR_EQ(json_string_value(indent), "");
    else ASSERT(indent == NULL);
  }
  kernel_done(&k, &mt);
  return 0;
}

TEST_IMPL(kernel_table_history) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  execute(&mt, &k, "%echo one", NULL);
  execute(&mt, &k, "%set Y=2\n%set Y", NULL);
  execute(&mt, &k, "%pwd", json_pack("{s:b}", "silent", 1));         /* not kept */
  execute(&mt, &k, "%echo one", json_pack("{s:b}", "store_history", 0)); /* not kept */
  execute(&mt, &k, "%echo one", NULL);
  const char *tail = mt_request(&mt, CONN_SHELL, "history_request",
                                json_pack("{s:s, s:i, s:b}", "hist_access_type", "tail", "n", 2,
                                          "output", 1));
  const char *range = mt_request(&mt, CONN_SHELL, "history_request",
                                 json_pack("{s:s, s:i, s:i, s:i}", "hist_access_type", "range",
                                           "session", 0, "start", 2, "stop", 3));
  const char *search = mt_request(&mt, CONN_SHELL, "history_request",
                                  json_pack("{s:s, s:s, s:b}", "hist_access_type", "search",
                                            "pattern", "%echo*", "unique", 1));
  ASSERT_EQ(mt_serve(&mt, &k, CONN_SHELL), 3);
  json_t *want = json_loads("[[1, 2, [\"%set Y=2\\n%set Y\", \"2\"]], [1, 3, [\"%echo one\", null]]]",
                            0, NULL);
  ASSERT(json_equal(json_object_get(content_of(&mt, tail), "history"), want));
  json_decref(want);
  want = json_loads("[[1, 2, \"%set Y=2\\n%set Y\"]]", 0, NULL);
  ASSERT(json_equal(json_object_get(content_of(&mt, range), "history"), want));
  json_decref(want);
  want = json_loads("[[1, 3, \"%echo one\"]]", 0, NULL); /* unique: the newest one */
  ASSERT(json_equal(json_object_get(content_of(&mt, search), "history"), want));
  json_decref(want);
  kernel_done(&k, &mt);
  return 0;
}

TEST_IMPL(kernel_table_comms) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  const char *info = mt_request(&mt, CONN_SHELL, "comm_info_request", NULL);
  const char *open = mt_request(&mt, CONN_SHELL, "comm_open",
                                json_pack("{s:s, s:s, s:{}}", "comm_id", "c-1", "target_name",
                                          "nope", "data"));
  ASSERT_EQ(mt_serve(&mt, &k, CONN_SHELL), 2);
  json_t *want = json_loads("{\"status\": \"ok\", \"comms\": {}}", 0, NULL);
  ASSERT(json_equal(content_of(&mt, info), want));
  json_decref(want);
  int i = mt_find(&mt, 0, CONN_IOPUB, "comm_close", open);
  ASSERT(i >= 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(mt.out[i].m.content, "comm_id")), "c-1");
  ASSERT_EQ(mt_logged_at(&mt, PK_LOG_INFO, "comm_open for unknown target 'nope': closing it"), 1);
  kernel_done(&k, &mt);
  return 0;
}

TEST_IMPL(kernel_table_shutdown) {
  for (int restart = 0; restart < 2; restart++) {
    pk_kernel k;
    memtransport mt;
    kernel_init(&k, &mt);
    const char *id = mt_request(&mt, CONN_CONTROL, "shutdown_request",
                                json_pack("{s:b}", "restart", restart));
    const char *after = mt_request(&mt, CONN_CONTROL, "kernel_info_request", NULL);
    ASSERT_EQ(mt_serve(&mt, &k, CONN_CONTROL), 1); /* serving stops at shutdown */
    ASSERT_STR_EQ(mt_seq(&mt, id), "busy control:shutdown_reply shutdown_reply idle");
    json_t *want = json_pack("{s:s, s:b}", "status", "ok", "restart", restart);
    ASSERT(json_equal(content_of(&mt, id), want));
    int i = mt_find(&mt, 0, CONN_IOPUB, "shutdown_reply", id);
    ASSERT(json_equal(mt.out[i].m.content, want));
    json_decref(want);
    ASSERT_EQ(atomic_load(&k.shutdown), 1);
    ASSERT_EQ(atomic_load(&k.restart), restart);
    ASSERT_EQ(atomic_load(&k.cancel), 1); /* a running stage stops */
    ASSERT_EQ(atomic_load(&k.shutdown_at_ms), mt.now);
    ASSERT_STR_EQ(mt_seq(&mt, after), "");
    kernel_done(&k, &mt);
  }
  return 0;
}

/* stdin: answer each input_request with "Ada Lovelace", or interrupt. */
static void answer(memtransport *mt, const wire_msg *m) {
  ASSERT_STR_EQ(m->msg_type, "input_request");
  ASSERT_STR_EQ(json_string_value(json_object_get(m->content, "prompt")), "Name? ");
  pk_kernel *k = mt->ud;
  if (json_is_true(json_object_get(m->content, "password"))) { /* interrupt instead */
    mt_request(mt, CONN_CONTROL, "interrupt_request", NULL);
    mt_serve(mt, k, CONN_CONTROL);
    return;
  }
  mt_request_at(mt, CONN_STDIN, mt->now + 250, "input_reply", m->header,
                json_pack("{s:s}", "value", "Ada Lovelace"));
}

TEST_IMPL(kernel_table_stdin) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  mt.on_stdin = answer;
  mt.ud = &k;
  /* a stale reply waiting on stdin is dropped before the request goes out */
  mt_request(&mt, CONN_STDIN, "input_reply", json_pack("{s:s}", "value", "stale"));
  const char *id = execute(&mt, &k, "%input 'Name? '", json_pack("{s:b}", "allow_stdin", 1));
  ASSERT_EQ(mt_logged(&mt, "stdin: dropped a stale input_reply"), 1);
  ASSERT_STR_EQ(mt_seq(&mt, id),
                "busy execute_input stdin:input_request execute_result shell:execute_reply idle");
  ASSERT_STR_EQ(result_of(&mt, id), "Ada Lovelace");
  const wire_msg *req = &mt.out[mt_find(&mt, 0, CONN_STDIN, "input_request", id)].m;
  ASSERT_EQ(req->n_idents, 1); /* to the client of the execute */
  ASSERT(memcmp(req->idents[0].p, MT_CLIENT, strlen(MT_CLIENT)) == 0);
  ASSERT_STR_EQ(ss_session_get(k.sess, "INPUT"), "Ada Lovelace");
  /* an interrupt ends the wait */
  id = execute(&mt, &k, "%input 'Name? ' --password", json_pack("{s:b}", "allow_stdin", 1));
  ASSERT_STR_EQ(json_string_value(json_object_get(content_of(&mt, id), "ename")),
                "KeyboardInterrupt");
  ASSERT_EQ(mt_logged(&mt, "interrupt_request: interrupting the running cell"), 1);
  /* allow_stdin false: fails at once */
  id = execute(&mt, &k, "%input 'Name? '", json_pack("{s:b}", "allow_stdin", 0));
  ASSERT_STR_EQ(mt_seq(&mt, id), "busy execute_input error shell:execute_reply idle");
  ASSERT_STR_EQ(json_string_value(json_object_get(content_of(&mt, id), "ename")),
                "StdinNotImplementedError");
  kernel_done(&k, &mt);
  return 0;
}

/* A write of any size comes out whole, in stream messages of at most the
 * flush size (64 KiB, plus an unfinished code point), in order. */
TEST_IMPL(kernel_table_stream_pieces) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  size_t n = 300000; /* one %echo, one write */
  char *code = malloc(n + 16);
  ASSERT(code);
  memcpy(code, "%echo ", 6);
  for (size_t i = 0; i < n; i++) code[6 + i] = i % 3 == 2 ? 'x' : (i % 3 ? '\xa9' : '\xc3');
  code[6 + n] = 0;
  const char *id = execute(&mt, &k, code, NULL);
  ASSERT_STR_EQ(reply_status_of(&mt, id), "ok");
  size_t got = 0, msgs = 0;
  for (int i = mt_find(&mt, 0, CONN_IOPUB, "stream", id); i >= 0;
       i = mt_find(&mt, (size_t)i + 1, CONN_IOPUB, "stream", id)) {
    json_t *text = json_object_get(mt.out[i].m.content, "text");
    size_t len = json_string_length(text);
    ASSERT(len <= (64u << 10) + 3);
    ASSERT(memcmp(json_string_value(text), code + 6 + got, len < n - got ? len : n - got) == 0);
    got += len;
    msgs++;
  }
  ASSERT_EQ(got, n + 1); /* and the newline */
  ASSERT(msgs >= 4);
  free(code);
  kernel_done(&k, &mt);
  return 0;
}

/* A request over PK_LIMIT_MSG_BYTES is answered, not dropped: an error reply
 * naming its size and the limit (with busy/idle; an execute's error also on
 * IOPub, and the executes queued behind it aborted). */
TEST_IMPL(kernel_table_oversize) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  const char *big = mt_request(&mt, CONN_SHELL, "execute_request",
                               json_pack("{s:s}", "code", "%set RAN=1"));
  mt_pad(&mt, CONN_SHELL, PK_LIMIT_MSG_BYTES);
  const char *next = mt_request(&mt, CONN_SHELL, "execute_request",
                                json_pack("{s:s}", "code", "%set RAN=2"));
  const char *info = mt_request(&mt, CONN_SHELL, "kernel_info_request", NULL);
  mt_pad(&mt, CONN_SHELL, PK_LIMIT_MSG_BYTES);
  const char *comm = mt_request(&mt, CONN_SHELL, "comm_msg", NULL);
  mt_pad(&mt, CONN_SHELL, PK_LIMIT_MSG_BYTES);
  ASSERT_EQ(mt_serve(&mt, &k, CONN_SHELL), 1); /* the rest went with the abort */
  ASSERT_STR_EQ(mt_seq(&mt, big), "busy error shell:execute_reply idle");
  json_t *r = content_of(&mt, big);
  ASSERT_STR_EQ(json_string_value(json_object_get(r, "status")), "error");
  ASSERT_STR_EQ(json_string_value(json_object_get(r, "ename")), "LimitError");
  ASSERT_CONTAINS(json_string_value(json_object_get(r, "evalue")), "message: request is ");
  ASSERT_CONTAINS(json_string_value(json_object_get(r, "evalue")), " bytes; the limit is 67108864");
  ASSERT_EQ(json_integer_value(json_object_get(r, "execution_count")), 0);
  int i = mt_find(&mt, 0, CONN_IOPUB, "error", big);
  ASSERT_STR_EQ(json_string_value(json_object_get(mt.out[i].m.content, "evalue")),
                json_string_value(json_object_get(r, "evalue")));
  ASSERT_STR_EQ(reply_status_of(&mt, next), "aborted");
  ASSERT(ss_session_get(k.sess, "RAN") == NULL); /* neither ran */
  ASSERT_STR_EQ(mt_seq(&mt, info), "busy shell:kernel_info_reply idle");
  ASSERT_STR_EQ(reply_status_of(&mt, info), "error");
  ASSERT_STR_EQ(mt_seq(&mt, comm), "busy idle"); /* no reply to give */
  ASSERT_EQ(k.exec_count, 0);
  kernel_done(&k, &mt);
  return 0;
}

/* stop_on_error's grace window: an execute that arrives within 500 ms of a
 * failed one's reply but was sent before it (by its header's date, or with
 * no date) is aborted too; one sent after the reply, or arriving after the
 * window, runs. */
TEST_IMPL(kernel_table_stop_on_error_grace) {
  static const char *const before = "2000-01-01T00:00:00.000001Z";
  static const char *const after = "2999-12-31T23:59:59Z";
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  long t0 = mt.now;
  const char *fail = mt_request(&mt, CONN_SHELL, "execute_request",
                                json_pack("{s:s}", "code", "%no-such-magic"));
  /* on their way: they arrive after the failed cell's reply went out */
  const char *late = mt_request_dated(&mt, CONN_SHELL, t0 + 5, before, "execute_request",
                                      json_pack("{s:s}", "code", "%set LATE=1"));
  const char *info = mt_request_dated(&mt, CONN_SHELL, t0 + 6, before, "kernel_info_request",
                                      NULL);
  const char *undated = mt_request_dated(&mt, CONN_SHELL, t0 + 7, NULL, "execute_request",
                                         json_pack("{s:s}", "code", "%set UNDATED=1"));
  /* sent after the client saw the reply: runs */
  const char *reactive = mt_request_dated(&mt, CONN_SHELL, t0 + 8, after, "execute_request",
                                          json_pack("{s:s}", "code", "%set REACTIVE=1"));
  /* after the window: runs, whatever its date */
  const char *later = mt_request_dated(&mt, CONN_SHELL, t0 + 501, before, "execute_request",
                                       json_pack("{s:s}", "code", "%set LATER=1"));
  ASSERT_EQ(mt_serve(&mt, &k, CONN_SHELL), 6);
  ASSERT_STR_EQ(reply_status_of(&mt, fail), "error");
  ASSERT_STR_EQ(reply_status_of(&mt, late), "aborted");
  ASSERT_STR_EQ(mt_seq(&mt, late), "busy shell:execute_reply idle");
  ASSERT_STR_EQ(reply_status_of(&mt, info), "ok"); /* not an execute: served */
  ASSERT_STR_EQ(reply_status_of(&mt, undated), "aborted");
  ASSERT_STR_EQ(reply_status_of(&mt, reactive), "ok");
  ASSERT_STR_EQ(reply_status_of(&mt, later), "ok");
  ASSERT(ss_session_get(k.sess, "LATE") == NULL && ss_session_get(k.sess, "UNDATED") == NULL);
  ASSERT_STR_EQ(ss_session_get(k.sess, "REACTIVE"), "1");
  ASSERT_STR_EQ(ss_session_get(k.sess, "LATER"), "1");
  /* stop_on_error false opens no window */
  long t1 = mt.now;
  mt_request(&mt, CONN_SHELL, "execute_request",
             json_pack("{s:s, s:b}", "code", "%no-such-magic", "stop_on_error", 0));
  const char *runs = mt_request_dated(&mt, CONN_SHELL, t1 + 5, before, "execute_request",
                                      json_pack("{s:s}", "code", "%set RUNS=1"));
  ASSERT_EQ(mt_serve(&mt, &k, CONN_SHELL), 2);
  ASSERT_STR_EQ(reply_status_of(&mt, runs), "ok");
  kernel_done(&k, &mt);
  return 0;
}

/* $NAME and ${NAME completion on shell: %set variables and environment
 * names, as shells do; the match replaces from the '$'. */
TEST_IMPL(kernel_table_complete_vars) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  ASSERT_EQ(setenv("PKCOMPLETE_ENV", "1", 1), 0);
  execute(&mt, &k, "%set PKCOMPLETE_VAR=1 PKCOMPLETE_ENV=2\n%set OTHER=3", NULL);
  static const struct {
    const char *code, *matches;
    int start;
  } rows[] = {
      {"%echo $PKCOMP", "[\"$PKCOMPLETE_ENV\", \"$PKCOMPLETE_VAR\"]", 6},
      {"%echo ${PKCOMPLETE_V", "[\"${PKCOMPLETE_VAR}\"]", 6},
      {"%download URL --to=$PKCOMPLETE_E", "[\"$PKCOMPLETE_ENV\"]", 19},
      {"%echo \"a $PKCOMPLETE_V", "[\"$PKCOMPLETE_VAR\"]", 9},
      {"%echo $OTH", "[\"$OTHER\"]", 6},
      {"%echo \\$PKCOMP", "[]", 6}, /* escaped: a path, and none matches */
      {"%echo $1PK", "[]", 6},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    const char *id = mt_request(&mt, CONN_SHELL, "complete_request",
                                json_pack("{s:s, s:I}", "code", rows[i].code, "cursor_pos",
                                          (json_int_t)strlen(rows[i].code)));
    mt_serve(&mt, &k, CONN_SHELL);
    json_t *r = content_of(&mt, id), *want = json_loads(rows[i].matches, 0, NULL);
    char *got = json_dumps(json_object_get(r, "matches"), 0);
    if (!json_equal(json_object_get(r, "matches"), want))
      fprintf(stderr, "%s: got %s, want %s\n", rows[i].code, got, rows[i].matches);
    ASSERT(json_equal(json_object_get(r, "matches"), want));
    if (json_array_size(want))
      ASSERT_EQ(json_integer_value(json_object_get(r, "cursor_start")), rows[i].start);
    free(got);
    json_decref(want);
  }
  /* on control (another thread than the session's): no variables */
  const char *id = mt_request(&mt, CONN_CONTROL, "complete_request",
                              json_pack("{s:s, s:i}", "code", "%echo $OTH", "cursor_pos", 10));
  mt_serve(&mt, &k, CONN_CONTROL);
  ASSERT_EQ(json_array_size(json_object_get(content_of(&mt, id), "matches")), 0);
  kernel_done(&k, &mt);
  return 0;
}

/* %sleep's bar moves smoothly: many distinct fractions over 1.5 s, not only
 * whole seconds (0, 1/2, 2/2). */
TEST_IMPL(kernel_table_sleep_bar) {
  pk_kernel k;
  memtransport mt;
  kernel_init(&k, &mt);
  const char *id = execute(&mt, &k, "%sleep 1.5", NULL);
  ASSERT_STR_EQ(reply_status_of(&mt, id), "ok");
  char seen[64][16];
  size_t n = 0;
  for (size_t i = 0; i < mt.n_out; i++) {
    const mt_out *o = &mt.out[i];
    if (o->channel != CONN_IOPUB || !strstr(o->m.msg_type, "display_data")) continue;
    const char *html = json_string_value(
        json_object_get(json_object_get(o->m.content, "data"), "text/html"));
    const char *v = html ? strstr(html, "value=\"") : NULL;
    if (!v) continue;
    char frac[16];
    snprintf(frac, sizeof frac, "%.6s", v + 7);
    int dup = 0;
    for (size_t j = 0; j < n && !dup; j++) dup = strcmp(seen[j], frac) == 0;
    if (!dup && n < 64) snprintf(seen[n++], sizeof seen[0], "%s", frac);
  }
  fprintf(stderr, "%zu distinct fractions\n", n);
  ASSERT(n >= 6);
  kernel_done(&k, &mt);
  return 0;
}
