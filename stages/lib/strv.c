/*
 * strv.c -- a growable list of strings (strv.h).
 */
#include "strv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"

int strv_push(strv *l, const char *s, size_t len) {
  if (dyn_grow_array(&l->v, &l->cap, l->n + 1, sizeof *l->v, SIZE_MAX / sizeof *l->v)) return -1;
  char *p = strndup(s, len);
  if (!p) return -1;
  l->v[l->n++] = p;
  return 0;
}

void strv_free(strv *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}
