/*
 * bridge.c -- a cell on a stage thread, its output queued as events for the
 * front end's thread (bridge.h).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge.h"

#define PYB_TEXT_MAX ((size_t)1 << 30) /* one event's text (a write joins pieces) */

struct pyb_run {
  st_ctx ctx;
  ss_session *sess;
  mg_cell cell;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;       /* events queued, drained, answered, or the end */
  pyb_event *head, *tail;
  size_t queued;           /* text bytes queued and not handed out */
  atomic_int cancel;
  int finished;            /* the stage thread is done (under mu) */
  int last;                /* the line running is the cell's last */
  /* an %input in flight */
  int asking, answered, answer_rc;
  char *answer;
  /* the outcome */
  int rc;
  st_error err;
  int failed_line;
  char *failed_text;
  char *result;
};

static pyb_run *R(st_ctx *c) { return c->fe; }

/* ---- the queue (mu held) ---------------------------------------------------- */

static void push(pyb_run *r, pyb_event *ev) {
  if (r->tail)
    r->tail->next = ev;
  else
    r->head = ev;
  r->tail = ev;
  pthread_cond_broadcast(&r->cv);
}

static pyb_event *event_new(int kind) {
  pyb_event *ev = calloc(1, sizeof *ev);
  if (ev) {
    ev->kind = kind;
    dyn_init(&ev->text, PYB_TEXT_MAX);
  }
  return ev;
}

void pyb_events_free(pyb_event *ev) {
  while (ev) {
    pyb_event *next = ev->next;
    dyn_free(&ev->text);
    for (int i = 0; i < ev->n_items; i++) {
      free(ev->items[i].type);
      free(ev->items[i].data);
    }
    free(ev->items);
    free(ev);
    ev = next;
  }
}

/* ---- the context's callbacks (the stage thread) ----------------------------- */

static void b_write(st_ctx *c, int stream, const char *buf, size_t len) {
  pyb_run *r = R(c);
  stream = stream == 2 ? 2 : 1;
  pthread_mutex_lock(&r->mu);
  while (r->queued > PYB_QUEUE_BYTES) pthread_cond_wait(&r->cv, &r->mu);
  pyb_event *ev = r->tail;
  if (!ev || ev->kind != PYB_WRITE || ev->stream != stream) {
    ev = event_new(PYB_WRITE);
    if (ev) {
      ev->stream = stream;
      push(r, ev);
    }
  }
  /* out of memory: the text is lost, as the kernel loses it (exec.c) */
  if (ev && dyn_add(&ev->text, buf, len) == 0) r->queued += len;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void b_display(st_ctx *c, const st_mime *items, int n, const char *id, int update) {
  pyb_run *r = R(c);
  pyb_event *ev = event_new(PYB_DISPLAY);
  if (!ev) return;
  ev->items = calloc(n > 0 ? (size_t)n : 1, sizeof *ev->items);
  if (!ev->items) {
    pyb_events_free(ev);
    return;
  }
  for (int i = 0; i < n; i++) {
    if (!items[i].type) continue;
    pyb_mime *m = &ev->items[ev->n_items];
    m->type = strdup(items[i].type);
    m->data = malloc(items[i].len ? items[i].len : 1);
    if (!m->type || !m->data) {
      free(m->type);
      free(m->data);
      pyb_events_free(ev);
      return;
    }
    if (items[i].len) memcpy(m->data, items[i].data, items[i].len);
    m->len = items[i].len;
    m->width = items[i].width;
    m->height = items[i].height;
    ev->n_items++;
  }
  snprintf(ev->id, sizeof ev->id, "%s", id ? id : "");
  ev->update = update;
  pthread_mutex_lock(&r->mu);
  push(r, ev);
  pthread_mutex_unlock(&r->mu);
}

static void b_progress(st_ctx *c, const st_progress *p) {
  pyb_run *r = R(c);
  pthread_mutex_lock(&r->mu);
  /* a report the front end has not taken yet is replaced by a newer one of
   * the same bar: only the last state of a running bar matters */
  pyb_event *ev = r->tail;
  if (!(ev && ev->kind == PYB_PROGRESS && ev->progress.state == ST_PROGRESS_RUNNING &&
        p->state == ST_PROGRESS_RUNNING && strcmp(ev->id, p->id) == 0)) {
    ev = event_new(PYB_PROGRESS);
    if (!ev) {
      pthread_mutex_unlock(&r->mu);
      return;
    }
    push(r, ev);
  }
  ev->progress = *p;
  ev->progress.ctx = NULL;
  st_progress_view_of(p, &ev->view);
  snprintf(ev->id, sizeof ev->id, "%s", p->id);
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static int b_cancelled(st_ctx *c) { return atomic_load(&R(c)->cancel); }

static void b_clear(st_ctx *c, int wait) {
  pyb_run *r = R(c);
  pyb_event *ev = event_new(PYB_CLEAR);
  if (!ev) return;
  ev->wait = wait;
  pthread_mutex_lock(&r->mu);
  push(r, ev);
  pthread_mutex_unlock(&r->mu);
}

static void b_page(st_ctx *c, const char *text) {
  pyb_run *r = R(c);
  pyb_event *ev = event_new(PYB_PAGE);
  if (!ev) return;
  if (dyn_puts(&ev->text, text)) {
    pyb_events_free(ev);
    return;
  }
  pthread_mutex_lock(&r->mu);
  push(r, ev);
  pthread_mutex_unlock(&r->mu);
}

static void b_result(st_ctx *c, const char *text) {
  pyb_run *r = R(c);
  if (r->last) {
    char *v = strdup(text);
    if (!v) return;
    free(r->result);
    r->result = v;
  } else { /* the value of a line that is not the last one: shown as text */
    b_write(c, 1, text, strlen(text));
    b_write(c, 1, "\n", 1);
  }
}

/* Waits for the front end's answer; an interrupt ends the wait. */
static int b_input(st_ctx *c, const char *prompt, int password, char **out, st_error *err) {
  pyb_run *r = R(c);
  *out = NULL;
  pyb_event *ev = event_new(PYB_INPUT);
  if (!ev || dyn_puts(&ev->text, prompt)) {
    pyb_events_free(ev);
    return st_error_set(err, ST_ENOMEM, "input", -1, NULL);
  }
  ev->password = password;
  pthread_mutex_lock(&r->mu);
  r->asking = 1;
  r->answered = 0;
  push(r, ev);
  while (!r->answered) pthread_cond_wait(&r->cv, &r->mu);
  r->asking = 0;
  int rc = r->answer_rc;
  char *answer = r->answer;
  r->answer = NULL;
  pthread_mutex_unlock(&r->mu);
  if (rc) {
    st_error_set(err, rc, "input", -1, "%s", answer ? answer : st_strerror(rc));
    free(answer);
    return rc;
  }
  *out = answer;
  return 0;
}

static const char *lookup(void *ud, const char *name) {
  return ss_session_get((ss_session *)ud, name);
}

static int b_run_line(st_ctx *c, const char *line, st_error *err) {
  return mg_run_line(c, line, NULL, lookup, c->session, err);
}

/* ---- the stage thread -------------------------------------------------------- */

static void *stage_main(void *arg) {
  pyb_run *r = arg;
  int rc = 0;
  for (size_t i = 0; i < r->cell.n && !rc; i++) {
    mg_line *l = &r->cell.lines[i];
    if (atomic_load(&r->cancel)) {
      rc = st_error_set(&r->err, ST_ECANCELED, NULL, -1, "interrupted");
    } else {
      r->last = i + 1 == r->cell.n;
      rc = mg_run_line(&r->ctx, l->text, l->body, lookup, r->sess, &r->err);
    }
    if (rc) {
      r->failed_line = l->lineno;
      r->failed_text = strdup(l->text);
    }
  }
  if (rc && !r->err.code) st_error_set(&r->err, rc, NULL, -1, "%s", st_strerror(rc));
  pthread_mutex_lock(&r->mu);
  r->rc = rc;
  r->finished = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

pyb_run *pyb_run_start(ss_session *sess, mg_cell *cell) {
  pyb_run *r = calloc(1, sizeof *r);
  if (!r) {
    mg_cell_free(cell);
    return NULL;
  }
  r->sess = sess;
  r->cell = *cell;
  memset(cell, 0, sizeof *cell);
  st_error_clear(&r->err);
  atomic_init(&r->cancel, 0);
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  st_ctx *c = &r->ctx;
  c->session = sess;
  c->fe = r;
  c->write = b_write;
  c->display = b_display;
  c->progress = b_progress;
  c->cancelled = b_cancelled;
  c->clear = b_clear;
  c->input = b_input;
  c->result = b_result;
  c->page = b_page;
  c->run_line = b_run_line;

  /* Asynchronous signals (an interrupt, a terminal resize, a child's end)
   * go to the front end's thread, where the interpreter handles them, and
   * never interrupt the stage's system calls; faults stay with the thread
   * that caused them (mapguard's SIGBUS). The stage's own threads inherit
   * the mask. */
  sigset_t all, old;
  sigfillset(&all);
  static const int sync_sigs[] = {SIGBUS, SIGSEGV, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
  for (size_t i = 0; i < sizeof sync_sigs / sizeof sync_sigs[0]; i++) sigdelset(&all, sync_sigs[i]);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, PYB_STACK_BYTES);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&r->thread, &attr, stage_main, r);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (e) {
    mg_cell_free(&r->cell);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
    return NULL;
  }
  return r;
}

pyb_event *pyb_run_wait(pyb_run *r, int ms, int *done) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&r->mu);
  while (!r->head && !r->finished)
    if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) break;
  pyb_event *ev = r->head;
  r->head = r->tail = NULL;
  r->queued = 0;
  *done = r->finished && !ev;
  pthread_cond_broadcast(&r->cv); /* a writer held back may go on */
  pthread_mutex_unlock(&r->mu);
  return ev;
}

void pyb_run_answer(pyb_run *r, int rc, const char *text) {
  char *copy = text ? strdup(text) : NULL;
  pthread_mutex_lock(&r->mu);
  if (r->asking && !r->answered) {
    free(r->answer);
    r->answer = copy;
    r->answer_rc = rc == 0 && text && !copy ? ST_ENOMEM : rc;
    r->answered = 1;
    copy = NULL;
    pthread_cond_broadcast(&r->cv);
  }
  pthread_mutex_unlock(&r->mu);
  free(copy);
}

void pyb_run_cancel(pyb_run *r) { atomic_store(&r->cancel, 1); }

int pyb_run_outcome(const pyb_run *r, const st_error **err, int *failed_line,
                    const char **failed_text, const char **result) {
  *err = &r->err;
  *failed_line = r->failed_line;
  *failed_text = r->failed_text;
  *result = r->rc ? NULL : r->result;
  return r->rc;
}

void pyb_run_free(pyb_run *r) {
  if (!r) return;
  pthread_join(r->thread, NULL);
  pyb_events_free(r->head);
  mg_cell_free(&r->cell);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r->answer);
  free(r->failed_text);
  free(r->result);
  free(r);
}
