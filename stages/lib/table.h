/*
 * table.h -- tables as HTML with an aligned text/plain fallback, and HTML
 * escaping. Used by every stage that shows rows (verify, upload, s3ls,
 * meta, train, timings).
 */
#ifndef PK_TABLE_H
#define PK_TABLE_H

#include <stddef.h>

#include "stage.h"

typedef struct tbl tbl;

/* ncols columns; right[i] nonzero right-aligns column i (numbers). */
tbl *tbl_new(int ncols, const char *const *headers, const int *right);
void tbl_free(tbl *t);
/* Copies the cells (ncols strings; NULL = empty). total=1 marks a total row
 * (bold in HTML, a rule above it in text). Returns 0 or ST_ENOMEM. */
int tbl_add(tbl *t, const char *const *cells, int total);
size_t tbl_rows(const tbl *t);

/* malloc'd renderings; caption may be NULL. */
char *tbl_html(const tbl *t, const char *caption);
char *tbl_text(const tbl *t, const char *caption);

/* Display it (text/html + text/plain); display_id may be NULL; update=1
 * updates an earlier display with that id. */
int tbl_display(st_ctx *c, const tbl *t, const char *caption,
                     const char *display_id, int update);

/* Escaped copy of s for HTML text and attributes (malloc'd). */
char *tbl_html_escape(const char *s);

#endif
