/*
 * bridge.h -- a cell run on a stage thread of its own, for a front end that
 * lives on another thread (the Python module: the thread that called
 * pipekernel.run holds the interpreter, the stage must not).
 *
 * pyb_run_start parses nothing and knows no Python: it takes parsed lines,
 * starts a thread that runs them one after another through the registry
 * (mg_run_line) with a context whose callbacks queue what the stage shows
 * (text, displays, progress, clear, page) as events and return at once, and
 * returns. The front end's thread drains the events with pyb_run_wait and
 * shows them; an %input is an event it answers with pyb_run_answer while the
 * stage thread waits. Text is held back from the stage past
 * PYB_QUEUE_BYTES not yet drained, so a stage that prints faster than the
 * front end shows waits instead of filling memory.
 *
 * Threads: the stage thread runs the stage and its callbacks, as stage.h
 * requires; pyb_run_wait/_answer/_free are for the front end's thread;
 * pyb_run_cancel is safe from any thread. The session is the stage
 * thread's from pyb_run_start until pyb_run_wait reported the end.
 */
#ifndef PYB_BRIDGE_H
#define PYB_BRIDGE_H

#include <stddef.h>

#include "../../kernel/magic.h"
#include "lib/dynbuf.h"
#include "lib/session.h"

#define PYB_QUEUE_BYTES (8u << 20) /* text queued before the stage waits */
#define PYB_STACK_BYTES (8u << 20) /* the stage thread's stack (as a main thread's) */

enum pyb_kind { PYB_WRITE, PYB_DISPLAY, PYB_PROGRESS, PYB_CLEAR, PYB_PAGE, PYB_INPUT };

/* One representation of a display, copied. */
typedef struct pyb_mime {
  char *type;
  char *data;
  size_t len;
  int width, height;
} pyb_mime;

typedef struct pyb_event {
  struct pyb_event *next;
  int kind;                      /* enum pyb_kind */
  int stream;                    /* PYB_WRITE: 1 stdout, 2 stderr */
  dynbuf text;                   /* PYB_WRITE bytes, PYB_PAGE text, PYB_INPUT prompt */
  pyb_mime *items;               /* PYB_DISPLAY */
  int n_items;
  char id[ST_DISPLAY_ID_MAX];    /* PYB_DISPLAY ("" none), PYB_PROGRESS */
  int update;                    /* PYB_DISPLAY */
  st_progress progress;          /* PYB_PROGRESS (ctx not valid) */
  st_progress_view view;         /* PYB_PROGRESS, as every front end shows it */
  int wait;                      /* PYB_CLEAR */
  int password;                  /* PYB_INPUT */
} pyb_event;

typedef struct pyb_run pyb_run;

/* Runs the lines of `cell` (taken: freed with the run) on a new stage
 * thread against `sess`. NULL when out of memory or no thread could be
 * started (cell is freed then too). */
pyb_run *pyb_run_start(ss_session *sess, mg_cell *cell);

/* Waits up to `ms` milliseconds for events or the end. Returns the events
 * queued so far, oldest first (the caller frees them with
 * pyb_events_free), NULL when none; *done is set once the stage thread has
 * finished and every event was handed out. */
pyb_event *pyb_run_wait(pyb_run *r, int ms, int *done);
void pyb_events_free(pyb_event *ev);

/* The answer to a PYB_INPUT event: rc 0 with the text (copied), or an
 * ST_E* code with the message the stage reports. */
void pyb_run_answer(pyb_run *r, int rc, const char *text);

/* Asks the running stage to stop (st_cancelled becomes true). */
void pyb_run_cancel(pyb_run *r);

/* After done: the outcome. rc 0 or ST_E*; err filled when rc != 0;
 * *failed_line / *failed_text (borrowed) name the cell's failing line (0 /
 * NULL when none); result is the value of the cell's last line (borrowed,
 * NULL when it has none). */
int pyb_run_outcome(const pyb_run *r, const st_error **err, int *failed_line,
                    const char **failed_text, const char **result);

/* Joins the stage thread (done must have been reported) and frees the run. */
void pyb_run_free(pyb_run *r);

#endif
