/*
 * table.h -- tables as HTML with an aligned text/plain fallback, and HTML
 * escaping. Used by every stage that shows rows (verify, upload, s3ls,
 * meta, train, timings).
 */
#ifndef PK_TABLE_H
#define PK_TABLE_H

#include <stddef.h>

#include "stage.h"

typedef struct st_table st_table;

/* ncols columns; right[i] nonzero right-aligns column i (numbers). */
st_table *st_table_new(int ncols, const char *const *headers, const int *right);
void st_table_free(st_table *t);
/* Copies the cells (ncols strings; NULL = empty). total=1 marks a total row
 * (bold in HTML, a rule above it in text). Returns 0 or ST_ENOMEM. */
int st_table_add(st_table *t, const char *const *cells, int total);
size_t st_table_rows(const st_table *t);

/* malloc'd renderings; caption may be NULL. */
char *st_table_html(const st_table *t, const char *caption);
char *st_table_text(const st_table *t, const char *caption);

/* Display it (text/html + text/plain); display_id may be NULL; update=1
 * updates an earlier display with that id. */
int st_table_display(st_ctx *c, const st_table *t, const char *caption,
                     const char *display_id, int update);

/* Escaped copy of s for HTML text and attributes (malloc'd). */
char *st_html_escape(const char *s);

#endif
