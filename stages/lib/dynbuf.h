/*
 * dynbuf.h -- the project's one growable byte buffer, with a cap.
 *
 * A dynbuf is the one growable byte buffer: text being built (help, tables,
 * SVG, SigV4 canonical requests, stream output) and bytes being collected
 * (response bodies, encoded PNGs, pickles being written). Every dynbuf is
 * given its cap when it is made, because what goes into most of them comes
 * from outside (a response body, a cell's output): adding past the cap
 * fails with ST_E2BIG, an allocation that fails with ST_ENOMEM. The first
 * failure sticks in `err` and makes later adds no-ops, so a writer may add
 * many pieces and check once, at the end.
 *
 * After any successful add the bytes are NUL-terminated (p[len] == 0; the
 * NUL is not counted in len or in the cap), so a text buffer is a C string.
 *
 * dyn_grow_array grows any array of fixed-size items under a cap on their
 * count, for the lists that are not bytes.
 *
 * Ownership: a dynbuf owns p until dyn_take hands it to the caller;
 * dyn_free of a zeroed or freed dynbuf is a no-op.
 */
#ifndef PK_DYNBUF_H
#define PK_DYNBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct dynbuf {
  char *p;    /* the bytes; NULL until something was added */
  size_t len; /* bytes held */
  size_t cap; /* bytes allocated (one more than the most it can hold now) */
  size_t max; /* the most bytes it may ever hold */
  int err;    /* 0, or the first failure: ST_E2BIG or ST_ENOMEM */
} dynbuf;

/* An empty buffer that may hold up to `max` bytes. DYN_INIT is the same
 * as an initializer. */
#define DYN_INIT(max_bytes) {NULL, 0, 0, (max_bytes), 0}
void dyn_init(dynbuf *b, size_t max);

/* Append n bytes / a string / one byte / formatted text. Each returns 0,
 * or b->err (the first failure; nothing of this call is added). */
int dyn_add(dynbuf *b, const void *s, size_t n);
int dyn_puts(dynbuf *b, const char *s);
int dyn_putc(dynbuf *b, char c);
int dyn_printf(dynbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int dyn_vprintf(dynbuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Room for n more bytes at b->p + b->len (for a reader that writes into
 * the buffer itself); returns that address, or NULL with b->err set. The
 * caller then adds what it wrote with dyn_commit(b, k), k <= n. */
char *dyn_reserve(dynbuf *b, size_t n);
void dyn_commit(dynbuf *b, size_t n);

/* Empty again (len 0, err 0), keeping the memory. */
void dyn_reset(dynbuf *b);
/* The bytes, now owned by the caller (free()), NUL-terminated ("" when
 * nothing was added); *len (may be NULL) gets their count. NULL when the
 * buffer failed or no memory is left (its memory is freed either way). b is
 * left as dyn_init left it, with the same max. */
char *dyn_take(dynbuf *b, size_t *len);
void dyn_free(dynbuf *b);

/* Grows the array *pp of items of `size` bytes, *cap of them allocated, so
 * that it holds at least `need` items (doubling, from 16). Returns 0, ST_E2BIG
 * when `need` is over `max` items, ST_ENOMEM (the array as it was). */
int dyn_grow_array(void *pp, size_t *cap, size_t need, size_t size, size_t max);

#endif
