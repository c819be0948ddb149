/*
 * magic.h -- the magic language: a cell is lines of `%name args...` or
 * `# comment`; a trailing backslash continues a line; words split like a
 * POSIX shell; $NAME and ${NAME} expand variables. Knows the registry's
 * interface but no stage.
 */
#ifndef PK_MAGIC_H
#define PK_MAGIC_H

#include <stddef.h>

#include "lib/stage.h"

/* Returns the variable's value or NULL (borrowed). */
typedef const char *(*mg_lookup_fn)(void *ud, const char *name);

/* One logical line of a cell. */
typedef struct mg_line {
  int lineno;     /* 1-based physical line where it starts */
  char *text;     /* continuations joined, without the leading '%' */
  char *body;     /* rest of the cell (cell magics alone on their line) */
  int help;       /* `%name?`: show help instead of running */
} mg_line;

typedef struct mg_cell {
  mg_line *lines;
  size_t n;
} mg_cell;

/* Parse a cell. Lines that are neither magics nor comments are errors
 * naming the line. On success *cell owns everything; free with mg_cell_free. */
int mg_cell_parse(const char *code, size_t len, mg_cell *cell, st_error *err);
void mg_cell_free(mg_cell *cell);

/* Split one line into words with quotes, backslashes and expansion.
 * argv is NULL-terminated and one allocation with its strings; free(argv). */
int mg_split(const char *line, mg_lookup_fn lookup, void *ud, int *argc,
             char ***argv, st_error *err);

/* "complete", "incomplete" or "invalid" (is_complete_request). */
const char *mg_is_complete(const char *code, size_t len);

/* Name of the magic in `text` (up to the first blank), copied to buf. */
void mg_line_name(const char *text, char *buf, size_t cap);

/* Run every line of a cell through the registry in order; stops at the first
 * failure. *failed_line is its 1-based line number (0 if none). */
int mg_run_cell(st_ctx *c, const char *code, size_t len, mg_lookup_fn lookup,
                void *ud, int *failed_line, st_error *err);

/* Run one line (without a leading '%' or with it). */
int mg_run_line(st_ctx *c, const char *line, const char *body, mg_lookup_fn lookup,
                void *ud, st_error *err);

#endif
