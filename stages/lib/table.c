/*
 * table.c -- HTML tables with a text/plain fallback.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"
#include "escape.h"
#include "table.h"

struct tbl {
  int ncols;
  char **headers;
  int *right;
  char ***rows; /* rows[i][j] */
  int *total;
  size_t n, cap;
};

/* Rendered tables (HTML or text) are capped: cells come from file names,
 * keys and members, which come from outside. */
#define TBL_RENDER_MAX (64u << 20)

static void sb_esc(dynbuf *b, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&': dyn_puts(b, "&amp;"); break;
    case '<': dyn_puts(b, "&lt;"); break;
    case '>': dyn_puts(b, "&gt;"); break;
    case '"': dyn_puts(b, "&quot;"); break;
    case '\'': dyn_puts(b, "&#39;"); break;
    default: dyn_add(b, s, 1);
    }
  }
}

char *tbl_html_escape(const char *s) {
  dynbuf b = DYN_INIT(TBL_RENDER_MAX);
  sb_esc(&b, s ? s : "");
  return dyn_take(&b, NULL);
}

tbl *tbl_new(int ncols, const char *const *headers, const int *right) {
  tbl *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->ncols = ncols;
  t->headers = calloc((size_t)ncols, sizeof *t->headers);
  t->right = calloc((size_t)ncols, sizeof *t->right);
  if (!t->headers || !t->right) { tbl_free(t); return NULL; }
  for (int i = 0; i < ncols; i++) {
    t->headers[i] = esc_dup(headers && headers[i] ? headers[i] : "");
    if (!t->headers[i]) { tbl_free(t); return NULL; }
    t->right[i] = right ? right[i] : 0;
  }
  return t;
}

void tbl_free(tbl *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n; i++) {
    for (int j = 0; j < t->ncols; j++) free(t->rows[i][j]);
    free(t->rows[i]);
  }
  if (t->headers)
    for (int j = 0; j < t->ncols; j++) free(t->headers[j]);
  free(t->headers);
  free(t->right);
  free(t->rows);
  free(t->total);
  free(t);
}

int tbl_add(tbl *t, const char *const *cells, int total) {
  if (t->n == t->cap) {
    size_t nc = t->cap ? t->cap * 2 : 16;
    char ***nr = realloc(t->rows, nc * sizeof *nr);
    if (!nr) return ST_ENOMEM;
    t->rows = nr;
    int *nt = realloc(t->total, nc * sizeof *nt);
    if (!nt) return ST_ENOMEM;
    t->total = nt;
    t->cap = nc;
  }
  char **row = calloc((size_t)t->ncols, sizeof *row);
  if (!row) return ST_ENOMEM;
  for (int j = 0; j < t->ncols; j++) {
    row[j] = esc_dup(cells && cells[j] ? cells[j] : ""); /* names from outside */
    if (!row[j]) {
      for (int k = 0; k < j; k++) free(row[k]);
      free(row);
      return ST_ENOMEM;
    }
  }
  t->rows[t->n] = row;
  t->total[t->n] = total;
  t->n++;
  return 0;
}

size_t tbl_rows(const tbl *t) { return t->n; }

char *tbl_html(const tbl *t, const char *caption) {
  dynbuf b = DYN_INIT(TBL_RENDER_MAX);
  dyn_puts(&b, "<table class=\"pk-table\">");
  if (caption) {
    dyn_puts(&b, "<caption style=\"text-align:left\">");
    char *ec = esc_dup(caption);
    sb_esc(&b, ec ? ec : "");
    free(ec);
    dyn_puts(&b, "</caption>");
  }
  dyn_puts(&b, "<thead><tr>");
  for (int j = 0; j < t->ncols; j++) {
    dyn_puts(&b, t->right[j] ? "<th style=\"text-align:right\">" : "<th style=\"text-align:left\">");
    sb_esc(&b, t->headers[j]);
    dyn_puts(&b, "</th>");
  }
  dyn_puts(&b, "</tr></thead><tbody>");
  for (size_t i = 0; i < t->n; i++) {
    dyn_puts(&b, t->total[i] ? "<tr style=\"font-weight:bold;border-top:1px solid\">" : "<tr>");
    for (int j = 0; j < t->ncols; j++) {
      dyn_puts(&b, t->right[j] ? "<td style=\"text-align:right\">" : "<td style=\"text-align:left\">");
      sb_esc(&b, t->rows[i][j]);
      dyn_puts(&b, "</td>");
    }
    dyn_puts(&b, "</tr>");
  }
  dyn_puts(&b, "</tbody></table>");
  return dyn_take(&b, NULL);
}

/* Display width in code points (UTF-8 continuation bytes do not count). */
static size_t width(const char *s) {
  size_t w = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) w++;
  return w;
}

static void pad(dynbuf *b, size_t n) {
  for (size_t i = 0; i < n; i++) dyn_add(b, " ", 1);
}

char *tbl_text(const tbl *t, const char *caption) {
  size_t *w = calloc((size_t)t->ncols, sizeof *w);
  if (!w) return NULL;
  for (int j = 0; j < t->ncols; j++) {
    w[j] = width(t->headers[j]);
    for (size_t i = 0; i < t->n; i++) {
      size_t x = width(t->rows[i][j]);
      if (x > w[j]) w[j] = x;
    }
  }
  dynbuf b = DYN_INIT(TBL_RENDER_MAX);
  if (caption) {
    char *ec = esc_dup(caption);
    dyn_puts(&b, ec ? ec : "");
    free(ec);
    dyn_puts(&b, "\n");
  }
  size_t total_w = 0;
  for (int j = 0; j < t->ncols; j++) total_w += w[j] + (j ? 2 : 0);
  for (size_t i = 0; i <= t->n; i++) {
    char **cells = i == 0 ? t->headers : t->rows[i - 1];
    if (i > 0 && t->total[i - 1]) {
      for (size_t k = 0; k < total_w; k++) dyn_add(&b, "-", 1);
      dyn_puts(&b, "\n");
    }
    for (int j = 0; j < t->ncols; j++) {
      size_t x = width(cells[j]);
      if (j) pad(&b, 2);
      if (t->right[j]) pad(&b, w[j] - x);
      dyn_puts(&b, cells[j]);
      if (!t->right[j] && j + 1 < t->ncols) pad(&b, w[j] - x);
    }
    dyn_puts(&b, "\n");
    if (i == 0) {
      for (size_t k = 0; k < total_w; k++) dyn_add(&b, "-", 1);
      dyn_puts(&b, "\n");
    }
  }
  free(w);
  return dyn_take(&b, NULL);
}

int tbl_display(st_ctx *c, const tbl *t, const char *caption,
                     const char *display_id, int update) {
  char *html = tbl_html(t, caption);
  char *text = tbl_text(t, caption);
  if (!html || !text) {
    free(html);
    free(text);
    return ST_ENOMEM;
  }
  st_mime m[2] = {{"text/html", html, strlen(html), 0, 0},
                  {"text/plain", text, strlen(text), 0, 0}};
  if (update) st_display_update(c, m, 2, display_id);
  else st_display(c, m, 2, display_id);
  free(html);
  free(text);
  return 0;
}
