/*
 * dynbuf.c -- the capped growable byte buffer (dynbuf.h).
 */
#include "dynbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage.h"

void dyn_init(dynbuf *b, size_t max) {
  memset(b, 0, sizeof *b);
  b->max = max;
}

/* Makes room for n more bytes and the NUL; sets and returns b->err. */
static int grow(dynbuf *b, size_t n) {
  if (b->err) return b->err;
  if (n > b->max || b->len > b->max - n) return b->err = ST_E2BIG;
  size_t need = b->len + n + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (cap > b->max + 1) cap = b->max + 1;
  char *np = realloc(b->p, cap);
  if (!np) return b->err = ST_ENOMEM;
  b->p = np;
  b->cap = cap;
  return 0;
}

int dyn_add(dynbuf *b, const void *s, size_t n) {
  if (grow(b, n)) return b->err;
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
  return 0;
}

int dyn_puts(dynbuf *b, const char *s) { return dyn_add(b, s, strlen(s)); }

int dyn_putc(dynbuf *b, char c) { return dyn_add(b, &c, 1); }

int dyn_vprintf(dynbuf *b, const char *fmt, va_list ap) {
  if (b->err) return b->err;
  va_list aq;
  va_copy(aq, ap);
  size_t room = b->cap > b->len ? b->cap - b->len : 0;
  int n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, aq);
  va_end(aq);
  if (n < 0) return b->err = ST_EINVAL;
  if ((size_t)n >= room) {
    if (grow(b, (size_t)n)) {
      if (b->p) b->p[b->len] = 0; /* a cut-off attempt is not kept */
      return b->err;
    }
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  } /* else it fitted, and what fits the memory fits the cap */
  b->len += (size_t)n;
  return 0;
}

int dyn_printf(dynbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = dyn_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

char *dyn_reserve(dynbuf *b, size_t n) {
  if (grow(b, n)) return NULL;
  return b->p + b->len;
}

void dyn_commit(dynbuf *b, size_t n) {
  if (b->err || !b->p) return;
  if (n > b->cap - 1 - b->len) n = b->cap - 1 - b->len; /* never past what was reserved */
  b->len += n;
  b->p[b->len] = 0;
}

void dyn_reset(dynbuf *b) {
  b->len = 0;
  b->err = 0;
  if (b->p) b->p[0] = 0;
}

char *dyn_take(dynbuf *b, size_t *len) {
  char *p = NULL;
  if (!b->err) p = b->p ? b->p : calloc(1, 1);
  else free(b->p);
  if (len) *len = p ? b->len : 0;
  size_t max = b->max;
  dyn_init(b, max);
  return p;
}

void dyn_free(dynbuf *b) {
  free(b->p);
  size_t max = b->max;
  dyn_init(b, max);
}

int dyn_grow_array(void *pp, size_t *cap, size_t need, size_t size, size_t max) {
  if (need <= *cap) return 0;
  if (need > max || (size && need > SIZE_MAX / size)) return ST_E2BIG;
  size_t nc = *cap ? *cap : 16;
  while (nc < need) nc = nc > SIZE_MAX / 2 ? need : nc * 2;
  if (nc > max) nc = max;
  if (size && nc > SIZE_MAX / size) nc = need;
  void *np = realloc(*(void **)pp, nc * size);
  if (!np) return ST_ENOMEM;
  *(void **)pp = np;
  *cap = nc;
  return 0;
}
