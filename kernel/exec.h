/*
 * exec.h -- one cell: runs its lines through the magic language with an
 * st_ctx whose output becomes IOPub messages (exec.c).
 */
#ifndef PK_EXEC_H
#define PK_EXEC_H

#include <stddef.h>

#include <jansson.h>

#include "lib/stage.h"
#include "state.h"

typedef struct pk_cell_result {
  int rc;                 /* 0 or ST_E* */
  st_error err;
  int failed_line;        /* 1-based, 0 when none */
  char *failed_text;      /* the failing line (malloc'd) */
  char *result;           /* execute_result text (malloc'd) or NULL */
  json_t *payload;        /* array (new reference) */
} pk_cell_result;

/* Runs code as a cell on the main thread, publishing its output with req as
 * parent. allow_stdin 0 makes %input fail with StdinNotImplementedError.
 * The caller sets k->running (and clears k->cancel) first; this clears
 * k->running when the cell ends. */
void exec_cell(const pk_chan *ch, const wire_msg *req, const char *code, size_t len,
               int allow_stdin, pk_cell_result *out);
void exec_result_free(pk_cell_result *r);

#endif
