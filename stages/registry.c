/*
 * registry.c -- the stage registry: one row per %magic.
 *
 * Dispatch, %help, %lsmagic, completion and inspection all read this table.
 * A row: name, function, arity (min, max positionals; max -1 = no limit),
 * flags, group, usage, one-line summary, help text, options.
 * Keep each group's rows together, in the whitepaper's stage order
 * (docs/workflow.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin/builtins.h"
#include "lib/dynbuf.h"
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

char *st_registry_help(const st_stage *s) {
  dynbuf b = DYN_INIT(1u << 20); /* help texts are ours: a few kB */
  dyn_printf(&b, "%s\n\n%s\n", s->usage, s->summary ? s->summary : "");
  if (s->opts && s->opts[0].name) {
    dyn_printf(&b, "\nOptions:\n");
    for (int i = 0; s->opts[i].name; i++) {
      char left[96];
      if (s->opts[i].nargs)
        snprintf(left, sizeof left, "--%s %s", s->opts[i].name,
                 s->opts[i].metavar ? s->opts[i].metavar : "VALUE");
      else
        snprintf(left, sizeof left, "--%s", s->opts[i].name);
      dyn_printf(&b, "  %-24s %s\n", left, s->opts[i].help ? s->opts[i].help : "");
    }
  }
  if (s->help && s->help[0]) dyn_printf(&b, "\n%s\n", s->help);
  return dyn_take(&b, NULL);
}
