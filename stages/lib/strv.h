/*
 * strv.h -- a growable list of strings, each its own copy.
 */
#ifndef PK_STRV_H
#define PK_STRV_H

#include <stddef.h>

typedef struct strv {
  char **v;
  size_t n, cap;
} strv;

/* Appends a copy of s[0..len); 0, or -1 out of memory (the list as it was). */
int strv_push(strv *l, const char *s, size_t len);
/* Frees every string and the list; a zeroed list is a no-op. */
void strv_free(strv *l);

#endif
