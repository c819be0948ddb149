/*
 * manifest.h -- md5sum-format manifests: "<32 hex>  <path>" per line
 * ("<hex> *<path>" is the binary-mode form; a leading backslash marks a
 * name with "\\\\" and "\\n" escapes, as GNU md5sum writes them, and "\\r",
 * which mf_write_line uses so that a name ending in CR survives). Empty lines
 * and lines starting with '#' are skipped. Paths must be relative and must
 * not contain ".." components; empty and "." components are dropped
 * ("./a//b/./c" is "a/b/c"), so each path is what sp_check_rel
 * (stages/lib/safepath.h) accepts. Limits: stages/lib/limits.h.
 */
#ifndef PK_MANIFEST_H
#define PK_MANIFEST_H

#include <stddef.h>
#include <stdio.h>

#include "lib/stage.h"

typedef struct mf_entry {
  char hex[33];   /* lower case */
  char *path;     /* relative, as written (after unescaping) */
  size_t line;    /* 1-based line number */
} mf_entry;

typedef struct mf_list {
  mf_entry *e;
  size_t n;
} mf_list;

/* Parse a manifest held in memory; `where` names it in errors
 * ("MANIFEST.md5:12: ..."). Duplicate paths are an error. */
int mf_parse(const char *buf, size_t len, const char *where, mf_list *out, st_error *err);
/* Read and parse a manifest file (at most PK_LIMIT_MANIFEST_BYTES). */
int mf_load(const char *path, mf_list *out, st_error *err);
void mf_free(mf_list *m);
/* One line in md5sum format (escaping names with '\\' or '\n'). */
int mf_write_line(FILE *f, const char *hex, const char *path);
/* Index of path in a list sorted with mf_sort, or -1. */
void mf_sort(mf_list *m);
long mf_find(const mf_list *m, const char *path);

#endif
