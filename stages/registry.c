/*
 * registry.c -- the stage registry: one row per %magic.
 *
 * Dispatch, %help, %lsmagic, completion and inspection all read this table.
 * A row: name, function, arity (min, max positionals; max -1 = no limit),
 * flags, group, usage, one-line summary, help text, options.
 * Keep each group's rows together, in the whitepaper's stage order.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin/builtins.h"
#include "lib/stage.h"
#include "report/pipeline.h"
#include "report/timings.h"

/* ---- declarations of stage modules (one header each) ---- */

/* (stage headers are included here, one per module) */

#include "data/download.h"
#include "data/extract.h"
#include "data/md5.h"
#include "data/mkdata.h"
#include "data/verify.h"

#include "load/load.h"
#include "s3/s3.h"
#include "train/train.h"

static const st_stage table[] = {
    /* ---------------- built-ins: the magic language ---------------- */
    BUILTIN_ROWS

    /* ---------------- data: stages 1-4 ---------------- */
    MK_MKDATA_ROWS
    DL_DOWNLOAD_ROWS
    MD5_ROWS
    DX_EXTRACT_ROWS
    VF_VERIFY_ROWS

    /* ---------------- load, meta, preview: stages 5, 6, 8 ---------------- */
    LD_LOAD_ROWS

    /* ---------------- s3: stage 7 ---------------- */
    S3_ROWS

    /* ---------------- train: stage 9 ---------------- */
    TR_TRAIN_ROWS

    /* ---------------- report: timings and the pipeline ---------------- */
    TM_TIMINGS_ROWS
    PL_PIPELINE_ROWS

};

size_t st_registry_count(void) { return sizeof table / sizeof table[0]; }

const st_stage *st_registry_at(size_t i) {
  return i < st_registry_count() ? &table[i] : NULL;
}

const st_stage *st_registry_find(const char *name) {
  if (!name) return NULL;
  if (name[0] == '%') name++;
  for (size_t i = 0; i < st_registry_count(); i++)
    if (strcmp(table[i].name, name) == 0) return &table[i];
  return NULL;
}

const char *st_registry_suggest(const char *name) {
  if (!name) return NULL;
  if (name[0] == '%') name++;
  const char *best = NULL;
  size_t bestd = strlen(name) <= 3 ? 2 : 3;
  for (size_t i = 0; i < st_registry_count(); i++) {
    size_t d = st__edit_distance(name, table[i].name);
    if (d < bestd) {
      bestd = d;
      best = table[i].name;
    }
  }
  if (!best) { /* a prefix of exactly one magic */
    size_t len = strlen(name), hits = 0;
    for (size_t i = 0; len && i < st_registry_count(); i++)
      if (strncmp(table[i].name, name, len) == 0) {
        best = table[i].name;
        hits++;
      }
    if (hits != 1) best = NULL;
  }
  return best;
}

/* A growing string for help text. */
typedef struct {
  char *p;
  size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (b->p && (size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = (b->cap ? b->cap : 256);
    while (cap < b->len + (size_t)n + 1) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return;
    b->p = np;
    b->cap = cap;
  }
}

char *st_registry_help(const st_stage *s) {
  sbuf b = {0};
  sb_add(&b, "%s\n\n%s\n", s->usage, s->summary ? s->summary : "");
  if (s->opts && s->opts[0].name) {
    sb_add(&b, "\nOptions:\n");
    for (int i = 0; s->opts[i].name; i++) {
      char left[96];
      if (s->opts[i].nargs)
        snprintf(left, sizeof left, "--%s %s", s->opts[i].name,
                 s->opts[i].metavar ? s->opts[i].metavar : "VALUE");
      else
        snprintf(left, sizeof left, "--%s", s->opts[i].name);
      sb_add(&b, "  %-24s %s\n", left, s->opts[i].help ? s->opts[i].help : "");
    }
  }
  if (s->help && s->help[0]) sb_add(&b, "\n%s\n", s->help);
  return b.p;
}
