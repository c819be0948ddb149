/*
 * pipeline.h -- %pipeline: the whitepaper's Test 1 (copy) or Test 2
 * (inplace) as one magic (docs/workflow.md).
 */
#ifndef PK_PIPELINE_H
#define PK_PIPELINE_H

#include "lib/stage.h"

int pl_pipeline(st_ctx *c, const st_args *a, st_error *err);
extern const st_option pipeline_opts[];

#define PL_PIPELINE_ROWS                                                            \
  {"pipeline", pl_pipeline, 0, 0, ST_F_SLOW, "report",                           \
   "%pipeline --mode copy|inplace --source URL|DIR [--work DIR] [--md5 HEX] "    \
   "[--s3 s3://BUCKET/PREFIX] [--endpoint URL] [--epochs N] [--label NAME] "     \
   "[--cold] [--stream]",                                                         \
   "Run the whitepaper's stages in order, then the timing table and chart.",    \
   "copy (Test 1): download, md5, extract, verify, load, meta, upload, preview,\n" \
   "train. inplace (Test 2): the data is already where it is read: verify,\n"   \
   "load, meta, upload, preview, train. Upload runs when --s3 is given and is\n" \
   "reported as skipped otherwise (an empty --s3 '' too). Each stage is an ordinary magic line, shown\n" \
   "as it runs, with its normal output. --fused (copy) downloads, hashes,\n"     \
   "extracts and verifies in one pass over the bytes.\n"                         \
   "The verify manifest is MANIFEST.md5 beside the source (as %mkdata writes\n" \
   "it) unless --manifest names one; for the original CIFAR-10 tarball\n"       \
   "(--md5 c58f30108f718f92721af3b95e74349a) its published md5s are used.\n"  \
   "A pipeline starts a new timing run (the session's records are cleared).\n" \
   "--source s3://BUCKET/KEY (copy) takes the tarball from S3 (the whitepaper's\n" \
   "S3 + local NVMe), its manifest from MANIFEST.md5 beside it; --endpoint goes\n" \
   "to every S3 line. inplace reads a file system, so an s3:// source is refused.\n" \
   "--cold gives --cold to every stage that reads files (md5, extract, verify,\n" \
   "load, upload, train --from): their pages are dropped from the page cache\n"   \
   "first, so the figures are the storage's; each stage says how much was\n"     \
   "cached and whether the drop took. --stream (inplace) trains straight from\n" \
   "the files with %train --from DIR and loads only the test split (for %meta\n" \
   "and %preview).",                                                             \
   pipeline_opts},

#endif
