/*
 * mapguard.h -- reading a mapped file that another process may cut short.
 *
 * Pages of a mapping that lie past the end of a truncated file raise SIGBUS
 * when touched, which would end the kernel. Between mapguard_begin and
 * mapguard_end, a SIGBUS inside the guarded range on the calling thread
 * is absorbed instead: the lost pages (from the faulting one to the end of
 * the range) are replaced by zero pages, the read goes on, and end reports
 * the loss with the offset of the first lost byte, so the caller turns the
 * (now meaningless) result into an error. Any other SIGBUS goes to the
 * disposition that was there before (by default, the end of the process).
 * No jumps: the code that reads the mapping needs no special care.
 *
 * One guard per thread at a time; guards are cheap (two stores).
 */
#ifndef PK_MAPGUARD_H
#define PK_MAPGUARD_H

#include <stddef.h>

typedef struct mapguard {
  const char *lo, *hi; /* the guarded range */
  const char *volatile lost; /* first address that faulted (set by the handler), NULL: none */
} mapguard;

/* Guards [p, p + len) for this thread. 0, or -1 when the SIGBUS handler
 * could not be installed (then nothing is guarded). */
int mapguard_begin(mapguard *g, const void *p, size_t len);
/* Ends the guard; returns -1 and sets *lost_off (may be NULL) to the offset
 * of the first lost byte when pages were lost, else 0. */
int mapguard_end(mapguard *g, size_t *lost_off);

#endif
