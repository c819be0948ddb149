/*
 * timings.h -- %timings: the session's stage timings as a table and chart,
 * labelled runs, JSON run records and comparisons.
 */
#ifndef PK_TIMINGS_H
#define PK_TIMINGS_H

#include "lib/stage.h"

int tm_timings(st_ctx *c, const st_args *a, st_error *err);
extern const st_option timings_opts[];

#define TM_TIMINGS_ROWS                                                           \
  {"timings", tm_timings, 0, 0, 0, "report",                                   \
   "%timings [--chart] [--json PATH] [--label NAME] [--compare A B] [--clear]", \
   "Table (and chart) of every stage timed in this session, in the "          \
   "whitepaper's stage order.",                                                \
   "Rows: stage, magic, seconds, bytes, MB/s, backend, and a total.\n"        \
   "--label NAME keeps the current records as run NAME; --compare A B shows\n" \
   "two runs side by side with the speed-up per stage and in total, where A\n" \
   "and B are labels of this session, paths of --json records, `current`, or\n" \
   "the whitepaper's runs paper:test1-weka, paper:test1-s3nvme,\n"           \
   "paper:test2-weka, paper:test2-s3nvme. --clear starts a new run.",         \
   timings_opts},

#endif
