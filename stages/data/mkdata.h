/*
 * mkdata.h -- %mkdata: write a synthetic, learnable CIFAR-10 "python
 * version" dataset (the original layout and pickle format), its tarball and
 * an md5sum manifest.
 */
#ifndef PK_MKDATA_H
#define PK_MKDATA_H

#include <stdint.h>

#include "lib/stage.h"

int mk_mkdata(st_ctx *c, const st_args *a, st_error *err);
extern const st_option mk_mkdata_opts[];

/* Render image `index` of batch file `file` (0 = test_batch, k = data_batch_k)
 * for the given seed: 3072 planar bytes into out; returns its label. */
int mk_label(uint64_t seed, uint32_t file, uint32_t index);
void mk_render(uint8_t *out, int label, uint64_t seed, uint32_t file, uint32_t index);

#define MK_MKDATA_ROWS                                                                   \
  {"mkdata", mk_mkdata, 1, 1, ST_F_SLOW, "data",                                         \
   "%mkdata DIR [--train-batches N] [--images-per-batch N] [--seed S] [--gzip|--no-gzip]", \
   "Write a synthetic, learnable CIFAR-10 dataset in the original python layout.",       \
   "Writes DIR/cifar-10-batches-py/ (data_batch_1..N, test_batch, batches.meta,\n"       \
   "readme.html) with pickles built like the originals (Python 2 cPickle protocol 2,\n"   \
   "py2 strings, numpy _reconstruct arrays: load them with\n"                            \
   "pickle.load(f, encoding='latin1')), the tarball DIR/cifar-10-python.tar.gz (ISA-L\n" \
   "gzip; .tar with --no-gzip) and DIR/MANIFEST.md5 (md5sum format, paths relative\n"    \
   "to DIR, the extracted files only, so `%verify DIR/MANIFEST.md5 --root X` checks\n"   \
   "any folder the tarball was extracted into).\n"                                       \
   "Each class is its own procedural pattern (cross, car, triangle, ring, disc,\n"       \
   "square frame, checkerboard, diagonal stripes, horizontal stripes, X) in a class\n"  \
   "hue, with random position, scale, flips, colour jitter, background gradient,\n"     \
   "up to three distractor blobs and pixel noise (the tutorial CNN: about 88 % after 2 epochs).\n"  \
   "The output depends only on the options (same --seed, same bytes). Files are\n"      \
   "written batch by batch (any size, constant memory) under temporary names.\n"        \
   "Defaults: 5 train batches + 1 test batch of 10000 images, seed 0, gzip.\n"           \
   "Example: %mkdata data --train-batches 40 --seed 7",                                  \
   mk_mkdata_opts},

#endif
