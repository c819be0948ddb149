/*
 * module.c -- pipekernel._core: the stage registry, the magic language and
 * one session per Python process, for the pipekernel package (python/).
 *
 * run(cell, sink) parses the cell here, then runs it on a stage thread
 * (bridge.c) while this thread, with the GIL released, waits for what the
 * stage shows and hands each piece to `sink` (pipekernel/_output.py) with
 * the GIL held. Every 20 ms at the latest it also runs the interpreter's
 * signal handlers: a KeyboardInterrupt (Ctrl-C, a notebook's interrupt), or
 * an exception from the sink, cancels the stage, which cleans up as it
 * does in the kernel; once the stage thread ended the exception is raised.
 * A failing stage becomes the exception pipekernel.errors._from_core makes
 * of its st_error (ChecksumError, ... subclasses of StageError).
 *
 * The session is touched by one thread at a time: the stage thread while a
 * run is in flight, else the Python thread inside one of these functions
 * (G.busy). A Python thread that calls in while another one's run is in
 * flight waits (GIL released); a call from the sink of the thread's own
 * run is a RuntimeError.
 *
 * dataset(name) hands out Block objects over the memory of the session's
 * splits (ss_split_share: a reference each, no copy); numpy views them
 * through the buffer protocol, and a Block keeps the memory alive after a
 * later %load replaced the dataset.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "bridge.h"
#include "lib/version.h"

#define PYB_POLL_MS 20 /* the longest wait before signals are looked at */

/* ---- the process's session ---------------------------------------------------- */

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;    /* busy became 0 */
  int busy;             /* a Python thread holds the session (or its run does) */
  unsigned long owner;  /* that thread (PyThread_get_thread_ident) */
  int forked;           /* this process was forked while the session was busy */
  ss_session *sess;
  pyb_run *cur;         /* the run in flight, for interrupt() */
} G = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL, NULL};

/* In a child of fork() (multiprocessing, a DataLoader's workers) no stage
 * thread exists: a session that was busy in the parent is unusable. */
static void atfork_child(void) {
  pthread_mutex_init(&G.mu, NULL);
  pthread_cond_init(&G.cv, NULL);
  if (G.busy) G.forked = 1;
  G.busy = 0;
  G.cur = NULL;
}

/* Holds the session for this thread; waits (GIL released, signals looked at)
 * while another thread holds it. 0, or -1 with an exception set. */
static int session_enter(void) {
  unsigned long me = PyThread_get_thread_ident();
  pthread_mutex_lock(&G.mu);
  for (;;) {
    if (G.forked) {
      pthread_mutex_unlock(&G.mu);
      PyErr_SetString(PyExc_RuntimeError,
                      "pipekernel: this process was forked while a stage ran; its session "
                      "cannot be used here");
      return -1;
    }
    if (!G.busy) break;
    if (G.owner == me) {
      pthread_mutex_unlock(&G.mu);
      PyErr_SetString(PyExc_RuntimeError,
                      "pipekernel: called from the output of a stage that is running in "
                      "this thread; call it after the stage");
      return -1;
    }
    pthread_mutex_unlock(&G.mu);
    Py_BEGIN_ALLOW_THREADS
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += PYB_POLL_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&G.mu);
    if (G.busy) pthread_cond_timedwait(&G.cv, &G.mu, &ts);
    pthread_mutex_unlock(&G.mu);
    Py_END_ALLOW_THREADS
    if (PyErr_CheckSignals() < 0) return -1;
    pthread_mutex_lock(&G.mu);
  }
  if (!G.sess) G.sess = ss_session_new();
  if (!G.sess) {
    pthread_mutex_unlock(&G.mu);
    PyErr_NoMemory();
    return -1;
  }
  G.busy = 1;
  G.owner = me;
  pthread_mutex_unlock(&G.mu);
  return 0;
}

static void session_leave(void) {
  pthread_mutex_lock(&G.mu);
  G.busy = 0;
  G.cur = NULL;
  pthread_cond_broadcast(&G.cv);
  pthread_mutex_unlock(&G.mu);
}

/* ---- errors ------------------------------------------------------------------- */

/* Raises what pipekernel.errors._from_core makes of an st_error. */
static void raise_stage_error(int rc, const st_error *err, int lineno, const char *line) {
  char msg[4096];
  st_error_format(err, msg, sizeof msg);
  PyObject *mod = PyImport_ImportModule("pipekernel.errors");
  PyObject *make = mod ? PyObject_GetAttrString(mod, "_from_core") : NULL;
  Py_XDECREF(mod);
  if (!make) return;
  PyObject *where = err->where[0] ? PyUnicode_DecodeUTF8(err->where, (Py_ssize_t)strlen(err->where), "replace")
                                  : Py_NewRef(Py_None);
  PyObject *offset = err->offset >= 0 ? PyLong_FromLongLong(err->offset) : Py_NewRef(Py_None);
  PyObject *text = PyUnicode_DecodeUTF8(err->text, (Py_ssize_t)strlen(err->text), "replace");
  PyObject *message = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
  PyObject *pyline = line ? PyUnicode_DecodeUTF8(line, (Py_ssize_t)strlen(line), "replace")
                          : Py_NewRef(Py_None);
  PyObject *exc = NULL;
  if (where && offset && text && message && pyline)
    exc = PyObject_CallFunction(make, "isOOOOiO", rc, st_errname(rc), where, offset, text,
                                message, lineno, pyline);
  Py_XDECREF(where);
  Py_XDECREF(offset);
  Py_XDECREF(text);
  Py_XDECREF(message);
  Py_XDECREF(pyline);
  Py_DECREF(make);
  if (exc) {
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
  }
}

static PyObject *raise_code(int rc, const char *where, const char *text) {
  st_error err;
  st_error_clear(&err);
  st_error_set(&err, rc, where, -1, "%s", text);
  raise_stage_error(rc, &err, 0, NULL);
  return NULL;
}

/* The exception being raised, taken out (NULL: none), and put back. */
static PyObject *take_exception(void) {
#if PY_VERSION_HEX >= 0x030C0000
  return PyErr_GetRaisedException();
#else
  PyObject *t, *v, *tb;
  PyErr_Fetch(&t, &v, &tb);
  if (!t) return NULL;
  PyErr_NormalizeException(&t, &v, &tb);
  if (tb) PyException_SetTraceback(v, tb);
  Py_XDECREF(t);
  Py_XDECREF(tb);
  return v;
#endif
}

static void restore_exception(PyObject *v) {
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(v);
#else
  PyObject *t = (PyObject *)Py_TYPE(v);
  Py_INCREF(t);
  PyErr_Restore(t, v, PyException_GetTraceback(v));
#endif
}

/* ---- Block: a split's pixels or labels, for the buffer protocol ------------- */

typedef struct {
  PyObject_HEAD
  ss_block *block;     /* one reference */
  char *buf;
  Py_ssize_t len;
  int ndim;            /* 2: pixels (n, 3072); 1: labels (n,) */
  Py_ssize_t shape[2];
  Py_ssize_t strides[2];
} BlockObject;

static void block_dealloc(PyObject *o) {
  BlockObject *b = (BlockObject *)o;
  ss_block_release(b->block);
  Py_TYPE(o)->tp_free(o);
}

static int block_getbuffer(PyObject *o, Py_buffer *v, int flags) {
  static char empty[1]; /* what a zero-length buffer points at */
  BlockObject *b = (BlockObject *)o;
  v->buf = b->buf ? b->buf : empty;
  v->obj = Py_NewRef(o);
  v->len = b->len;
  v->readonly = 0;
  v->itemsize = 1;
  v->format = (flags & PyBUF_FORMAT) ? "B" : NULL;
  if ((flags & PyBUF_ND) == PyBUF_ND) {
    v->ndim = b->ndim;
    v->shape = b->shape;
  } else { /* a plain request: the bytes, contiguous */
    v->ndim = 1;
    v->shape = NULL;
  }
  v->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? b->strides : NULL;
  v->suboffsets = NULL;
  v->internal = NULL;
  return 0;
}

static PyBufferProcs block_as_buffer = {block_getbuffer, NULL};

static PyObject *block_address(PyObject *o, void *unused) {
  return PyLong_FromVoidPtr(((BlockObject *)o)->buf);
}
static PyObject *block_nbytes(PyObject *o, void *unused) {
  return PyLong_FromSsize_t(((BlockObject *)o)->len);
}
static PyObject *block_shape(PyObject *o, void *unused) {
  BlockObject *b = (BlockObject *)o;
  return b->ndim == 2 ? Py_BuildValue("(nn)", b->shape[0], b->shape[1])
                      : Py_BuildValue("(n)", b->shape[0]);
}

static PyGetSetDef block_getset[] = {
    {"address", block_address, NULL, "address of the first byte (0 when empty)", NULL},
    {"nbytes", block_nbytes, NULL, "bytes in the block", NULL},
    {"shape", block_shape, NULL, "(images, 3072) for pixels, (images,) for labels", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pipekernel._core.Block",
    .tp_basicsize = sizeof(BlockObject),
    .tp_dealloc = block_dealloc,
    .tp_as_buffer = &block_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The memory of one split's pixels or labels, held by the session and by\n"
              "this object: numpy.asarray(block) views it without a copy.",
    .tp_getset = block_getset,
};

/* pixels = 1: the split's pixel block (n, 3072), else its labels (n,). */
static PyObject *block_new(ss_split *sp, int pixels) {
  ss_block *sb = ss_split_share(sp);
  if (!sb) return PyErr_NoMemory();
  BlockObject *b = PyObject_New(BlockObject, &BlockType);
  if (!b) {
    ss_block_release(sb);
    return NULL;
  }
  size_t n = ss_block_count(sb);
  b->block = sb;
  b->buf = (char *)(pixels ? ss_block_pixels(sb) : ss_block_labels(sb));
  if (!n) b->buf = NULL;
  b->ndim = pixels ? 2 : 1;
  b->shape[0] = (Py_ssize_t)n;
  b->shape[1] = SS_IMAGE_BYTES;
  b->strides[0] = pixels ? SS_IMAGE_BYTES : 1;
  b->strides[1] = 1;
  b->len = (Py_ssize_t)(pixels ? n * SS_IMAGE_BYTES : n);
  return (PyObject *)b;
}

/* ---- handing events to the sink ------------------------------------------------ */

static const char *state_name(int s) {
  return s == ST_PROGRESS_DONE ? "done" : s == ST_PROGRESS_FAILED ? "failed"
         : s == ST_PROGRESS_CANCELLED ? "interrupted" : "running";
}

static PyObject *str_of(const char *s) {
  return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

static PyObject *progress_dict(const pyb_event *ev) {
  const st_progress *p = &ev->progress;
  const st_progress_view *v = &ev->view;
  PyObject *d = PyDict_New();
  if (!d) return NULL;
  struct { const char *k; PyObject *v; } kv[] = {
      {"id", str_of(p->id)},
      {"label", str_of(v->label)}, /* shortened as every front end shows it */
      {"unit", str_of(p->unit)},
      {"done", PyLong_FromUnsignedLongLong(p->done)},
      {"total", PyLong_FromUnsignedLongLong(p->total)},
      {"elapsed", PyFloat_FromDouble(p->elapsed)},
      {"state", PyUnicode_FromString(state_name(p->state))},
      {"amount", str_of(v->amount)},
      {"rate", str_of(v->rate)},
      {"bar", str_of(v->bar)},
      {"frac", PyFloat_FromDouble(v->frac)},
  };
  int bad = 0;
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
    if (!kv[i].v || PyDict_SetItemString(d, kv[i].k, kv[i].v) < 0) bad = 1;
    Py_XDECREF(kv[i].v);
  }
  if (bad) Py_CLEAR(d);
  return d;
}

static PyObject *display_items(const pyb_event *ev) {
  PyObject *list = PyList_New(0);
  for (int i = 0; list && i < ev->n_items; i++) {
    const pyb_mime *m = &ev->items[i];
    PyObject *t = Py_BuildValue("(sy#ii)", m->type, m->data, (Py_ssize_t)m->len, m->width,
                                m->height);
    if (!t || PyList_Append(list, t) < 0) Py_CLEAR(list);
    Py_XDECREF(t);
  }
  return list;
}

/* Hands one event to the sink. -1 with the sink's exception set. An input
 * event is always answered: the stage thread waits for it. */
static int deliver(PyObject *sink, pyb_run *r, const pyb_event *ev, int stopping) {
  PyObject *res = NULL;
  switch (ev->kind) {
  case PYB_WRITE:
    res = PyObject_CallMethod(sink, "write", "iy#", ev->stream, ev->text.p ? ev->text.p : "",
                              (Py_ssize_t)ev->text.len);
    break;
  case PYB_DISPLAY: {
    PyObject *items = display_items(ev);
    if (items)
      res = PyObject_CallMethod(sink, "display", "Osi", items, ev->id[0] ? ev->id : NULL,
                                ev->update);
    Py_XDECREF(items);
    break;
  }
  case PYB_PROGRESS: {
    PyObject *d = progress_dict(ev);
    if (d) res = PyObject_CallMethod(sink, "progress", "O", d);
    Py_XDECREF(d);
    break;
  }
  case PYB_CLEAR:
    res = PyObject_CallMethod(sink, "clear", "i", ev->wait);
    break;
  case PYB_PAGE:
    res = PyObject_CallMethod(sink, "page", "s", ev->text.p ? ev->text.p : "");
    break;
  case PYB_INPUT:
    if (stopping) {
      pyb_run_answer(r, ST_ECANCELED, "interrupted while waiting for input");
      return 0;
    }
    res = PyObject_CallMethod(sink, "input", "si", ev->text.p ? ev->text.p : "", ev->password);
    if (res && !PyUnicode_Check(res)) {
      Py_CLEAR(res);
      PyErr_SetString(PyExc_TypeError, "the sink's input() must return a str");
    }
    if (res) {
      const char *s = PyUnicode_AsUTF8(res);
      pyb_run_answer(r, s ? 0 : ST_EFORMAT, s ? s : "the answer is not valid text");
      PyErr_Clear();
    } else if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
      pyb_run_answer(r, ST_ECANCELED, "interrupted while waiting for input");
      return -1;
    } else { /* no stdin here (EOFError, IPython's StdinNotImplementedError ...) */
      PyObject *e = take_exception();
      PyObject *s = e ? PyObject_Str(e) : NULL;
      const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
      char text[512];
      snprintf(text, sizeof text, "no input here (%s%s%s)", e ? Py_TYPE(e)->tp_name : "?",
               msg && msg[0] ? ": " : "", msg ? msg : "");
      PyErr_Clear();
      pyb_run_answer(r, ST_ESTDIN, text);
      Py_XDECREF(s);
      Py_XDECREF(e);
      return 0;
    }
    break;
  }
  if (!res) return -1;
  Py_DECREF(res);
  return 0;
}

/* ---- run ---------------------------------------------------------------------- */

static PyObject *py_run(PyObject *self, PyObject *args) {
  const char *code;
  Py_ssize_t len;
  PyObject *sink;
  if (!PyArg_ParseTuple(args, "s#O:run", &code, &len, &sink)) return NULL;
  mg_cell cell;
  st_error err;
  st_error_clear(&err);
  int rc = mg_cell_parse(code, (size_t)len, &cell, &err);
  if (rc) {
    raise_stage_error(rc, &err, 0, NULL);
    return NULL;
  }
  if (session_enter() < 0) {
    mg_cell_free(&cell);
    return NULL;
  }
  pyb_run *r = pyb_run_start(G.sess, &cell);
  if (!r) {
    session_leave();
    return raise_code(ST_ENOMEM, "run", "cannot start the stage thread");
  }
  pthread_mutex_lock(&G.mu);
  G.cur = r;
  pthread_mutex_unlock(&G.mu);

  PyObject *saved = NULL; /* the first exception: from the sink or a signal */
  for (;;) {
    int done = 0;
    pyb_event *evs;
    Py_BEGIN_ALLOW_THREADS
    evs = pyb_run_wait(r, PYB_POLL_MS, &done);
    Py_END_ALLOW_THREADS
    for (pyb_event *ev = evs; ev; ev = ev->next) {
      if (deliver(sink, r, ev, saved != NULL) < 0) {
        PyObject *e = take_exception();
        if (!saved) {
          saved = e;
          pyb_run_cancel(r);
        } else {
          Py_XDECREF(e); /* the stage is stopping already */
        }
      }
    }
    pyb_events_free(evs);
    if (PyErr_CheckSignals() < 0) {
      PyObject *e = take_exception();
      if (!saved) {
        saved = e;
        pyb_run_cancel(r);
      } else {
        Py_XDECREF(e);
      }
    }
    if (done) break;
  }

  const st_error *rerr;
  int failed_line;
  const char *failed_text, *result;
  rc = pyb_run_outcome(r, &rerr, &failed_line, &failed_text, &result);
  PyObject *value = NULL;
  if (saved) {
    restore_exception(saved);
  } else if (rc) {
    raise_stage_error(rc, rerr, failed_line, failed_text);
  } else if (result) {
    value = str_of(result);
  } else {
    value = Py_NewRef(Py_None);
  }
  Py_BEGIN_ALLOW_THREADS
  pyb_run_free(r); /* joins the stage thread, which has returned */
  Py_END_ALLOW_THREADS
  session_leave();
  return value;
}

static PyObject *py_interrupt(PyObject *self, PyObject *unused) {
  int any = 0;
  pthread_mutex_lock(&G.mu);
  if (G.cur) {
    pyb_run_cancel(G.cur);
    any = 1;
  }
  pthread_mutex_unlock(&G.mu);
  return PyBool_FromLong(any);
}

/* ---- datasets and timings -------------------------------------------------------- */

static PyObject *split_dict(ss_split *sp) {
  if (!sp->n && !sp->files) Py_RETURN_NONE; /* not loaded */
  PyObject *pixels = block_new(sp, 1);
  PyObject *labels = pixels ? block_new(sp, 0) : NULL;
  int md5 = strcmp(sp->hash, "md5") == 0;
  PyObject *d = labels ? Py_BuildValue("{s:n, s:n, s:O, s:O, s:s, s:s, s:s, s:s, s:s}", "n",
                                       (Py_ssize_t)sp->n, "files", (Py_ssize_t)sp->files,
                                       "pixels", pixels, "labels", labels, "hash", sp->hash,
                                       "pixels_hash", sp->pixels_hash, "labels_hash",
                                       sp->labels_hash, "pixels_md5", md5 ? sp->pixels_hash : "",
                                       "labels_md5", md5 ? sp->labels_hash : "")
                       : NULL;
  Py_XDECREF(pixels);
  Py_XDECREF(labels);
  return d;
}

static PyObject *dataset_dict(ss_dataset *d) {
  PyObject *classes = NULL;
  if (d->label_names) {
    classes = PyList_New(d->n_classes);
    for (int i = 0; classes && i < d->n_classes; i++) {
      PyObject *s = str_of(d->label_names[i] ? d->label_names[i] : "");
      if (!s) Py_CLEAR(classes);
      else PyList_SET_ITEM(classes, i, s);
    }
    if (!classes) return NULL;
  } else {
    classes = Py_NewRef(Py_None);
  }
  PyObject *train = split_dict(&d->train);
  PyObject *test = train ? split_dict(&d->test) : NULL;
  PyObject *name = str_of(d->name), *root = str_of(d->root);
  PyObject *out = NULL;
  if (train && test && name && root)
    out = Py_BuildValue("{s:O, s:O, s:O, s:O, s:O}", "name", name, "root", root, "classes",
                        classes, "train", train, "test", test);
  Py_XDECREF(classes);
  Py_XDECREF(train);
  Py_XDECREF(test);
  Py_XDECREF(name);
  Py_XDECREF(root);
  return out;
}

static PyObject *py_dataset(PyObject *self, PyObject *args) {
  const char *name = NULL;
  if (!PyArg_ParseTuple(args, "|z:dataset", &name)) return NULL;
  if (session_enter() < 0) return NULL;
  ss_dataset *d = ss_session_dataset(G.sess, name);
  PyObject *out = d ? dataset_dict(d) : NULL;
  session_leave();
  if (!d) {
    char text[256];
    if (name)
      snprintf(text, sizeof text, "no dataset named '%.63s' in this session; %%load DIR --name %.63s loads one",
               name, name);
    else
      snprintf(text, sizeof text, "no dataset in this session; %%load DIR loads one");
    return raise_code(ST_ESTATE, "dataset", text);
  }
  return out;
}

/* The address of a split's pixels in the session now (None: no such split). */
static PyObject *py_session_pixels(PyObject *self, PyObject *args) {
  const char *name, *which;
  if (!PyArg_ParseTuple(args, "zs:session_pixels", &name, &which)) return NULL;
  if (session_enter() < 0) return NULL;
  ss_dataset *d = ss_session_dataset(G.sess, name);
  ss_split *sp = !d ? NULL : strcmp(which, "train") == 0 ? &d->train
                 : strcmp(which, "test") == 0 ? &d->test : NULL;
  void *p = sp && sp->n ? sp->pixels : NULL;
  session_leave();
  if (!p) Py_RETURN_NONE;
  return PyLong_FromVoidPtr(p);
}

static PyObject *py_timings(PyObject *self, PyObject *unused) {
  if (session_enter() < 0) return NULL;
  PyObject *list = PyList_New(0);
  for (size_t i = 0; list && i < G.sess->n_timings; i++) {
    const st_timing *t = &G.sess->timings[i];
    PyObject *stage = str_of(t->stage), *magic = str_of(t->magic), *a = str_of(t->args),
             *backend = str_of(t->backend), *hash = str_of(t->hash), *cache = str_of(t->cache),
             *fs = str_of(t->fs);
    PyObject *d = stage && magic && a && backend && hash && cache && fs
                      ? Py_BuildValue("{s:O, s:O, s:O, s:d, s:K, s:K, s:O, s:O, s:d, s:O, s:O}",
                                      "stage", stage, "magic", magic, "args", a, "seconds",
                                      t->seconds, "bytes", (unsigned long long)t->bytes, "items",
                                      (unsigned long long)t->items, "backend", backend, "hash",
                                      hash, "wall", t->wall, "cache", cache, "fs", fs)
                      : NULL;
    Py_XDECREF(cache);
    Py_XDECREF(fs);
    Py_XDECREF(stage);
    Py_XDECREF(magic);
    Py_XDECREF(a);
    Py_XDECREF(backend);
    Py_XDECREF(hash);
    if (!d || PyList_Append(list, d) < 0) Py_CLEAR(list);
    Py_XDECREF(d);
  }
  session_leave();
  return list;
}

static PyObject *py_add_timing(PyObject *self, PyObject *args, PyObject *kw) {
  static char *names[] = {"stage", "seconds", "magic", "args", "bytes", "items", "backend",
                          "hash", NULL};
  const char *stage, *magic = "python", *a = "", *backend = "", *hash = "";
  double seconds;
  unsigned long long bytes = 0, items = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "sd|$ssKKss:add_timing", names, &stage, &seconds,
                                   &magic, &a, &bytes, &items, &backend, &hash))
    return NULL;
  st_timing t;
  memset(&t, 0, sizeof t);
  snprintf(t.stage, sizeof t.stage, "%s", stage);
  snprintf(t.magic, sizeof t.magic, "%s", magic);
  snprintf(t.args, sizeof t.args, "%s", a);
  snprintf(t.backend, sizeof t.backend, "%s", backend);
  snprintf(t.hash, sizeof t.hash, "%s", hash);
  t.seconds = seconds;
  t.bytes = bytes;
  t.items = items;
  t.wall = (double)time(NULL);
  if (session_enter() < 0) return NULL;
  int rc = ss_session_add_timing(G.sess, &t);
  session_leave();
  if (rc) return raise_code(rc, "timings", "cannot add the timing record");
  Py_RETURN_NONE;
}

/* (code, ename, message) of every ST_E* code, in the table's order. */
static PyObject *py_error_table(PyObject *self, PyObject *unused) {
  PyObject *list = PyList_New(0);
#define XX(c, e, m)                                                          \
  if (list) {                                                                \
    PyObject *t = Py_BuildValue("(iss)", (int)ST_##c, e, m);                 \
    if (!t || PyList_Append(list, t) < 0) Py_CLEAR(list);                    \
    Py_XDECREF(t);                                                           \
  }
  ST_ERRNO_MAP(XX)
#undef XX
  return list;
}

/* (name, usage, summary) of every magic, in the registry's order. */
static PyObject *py_magics(PyObject *self, PyObject *unused) {
  PyObject *list = PyList_New(0);
  for (size_t i = 0; list && i < st_registry_count(); i++) {
    const st_stage *s = st_registry_at(i);
    PyObject *t = Py_BuildValue("(sss)", s->name, s->usage, s->summary ? s->summary : "");
    if (!t || PyList_Append(list, t) < 0) Py_CLEAR(list);
    Py_XDECREF(t);
  }
  return list;
}

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS,
     "run(cell, sink) -> str | None\n\nRuns the magic lines of cell in the session; sink shows "
     "the output.\nReturns the value of the last line, if any."},
    {"interrupt", py_interrupt, METH_NOARGS,
     "interrupt() -> bool\n\nAsks the stage running (in any thread) to stop; False when none runs."},
    {"dataset", py_dataset, METH_VARARGS,
     "dataset(name=None) -> dict\n\nThe session's dataset (the last loaded when name is None)."},
    {"session_pixels", py_session_pixels, METH_VARARGS,
     "session_pixels(name, split) -> int | None\n\nAddress of the split's pixels in the session."},
    {"timings", py_timings, METH_NOARGS, "timings() -> list of dict\n\nThe session's timing records."},
    {"add_timing", (PyCFunction)(void (*)(void))py_add_timing, METH_VARARGS | METH_KEYWORDS,
     "add_timing(stage, seconds, *, magic='python', args='', bytes=0, items=0, backend='', "
     "hash='')\n\nAdds a timing record (work done in Python) for %timings."},
    {"error_table", py_error_table, METH_NOARGS,
     "error_table() -> list of (code, ename, message)"},
    {"magics", py_magics, METH_NOARGS, "magics() -> list of (name, usage, summary)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "pipekernel._core",
    "pipekernel's compiled stages, the magic language and the process's session.", -1,
    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void);
PyMODINIT_FUNC PyInit__core(void) {
  if (PyType_Ready(&BlockType) < 0) return NULL;
  PyObject *m = PyModule_Create(&moduledef);
  if (!m) return NULL;
  static int once;
  if (!once) {
    pthread_atfork(NULL, NULL, atfork_child);
    once = 1;
  }
  Py_INCREF(&BlockType);
  if (PyModule_AddObject(m, "Block", (PyObject *)&BlockType) < 0 ||
      PyModule_AddStringConstant(m, "version", PK_VERSION) < 0 ||
      PyModule_AddIntConstant(m, "image_bytes", SS_IMAGE_BYTES) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
