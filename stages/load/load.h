/*
 * load.h -- %load (load.c), %meta (meta.c), %preview (preview.c): stages 5, 6
 * and 8 of the workflow, over the safe pickle reader (pickle.c).
 */
#ifndef PK_LOAD_H
#define PK_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "pickle.h"
#include "lib/stage.h"

int ld_load(st_ctx *c, const st_args *a, st_error *err);
int ld_meta(st_ctx *c, const st_args *a, st_error *err);
int ld_preview(st_ctx *c, const st_args *a, st_error *err);

extern const st_option ld_load_opts[], ld_meta_opts[], ld_preview_opts[];

/* One parsed batch file: `data` describes the uint8 N x 3072 array (a copy
 * of the parse's, its bytes in the caller's buffer, so it outlives the
 * doc), labels a malloc'd copy of N label bytes. */
typedef struct ld_batch {
  pkl_array data;
  size_t n;
  uint8_t *labels;
} ld_batch;

struct pc_stats;

/* One batch file being read: mapped, parsed and checked by ld_file_open
 * (the parse is freed once checked, b keeping what the copy needs, unless
 * the pixels live in it; else they stay in the mapping until
 * ld_file_copy moves them),
 * released by ld_file_release. */
typedef struct ld_file {
  char *path;
  unsigned long long num; /* N of data_batch_N */
  uint8_t *map;
  size_t size;
  pkl_doc *doc;           /* the parse, kept only when the pixels live in it (a small latin-1 block) */
  ld_batch b;
  size_t first;           /* index of its first image in the split */
  int lost;               /* the file was cut short while a copy worker read it */
  size_t lost_off;        /* offset of its first lost byte */
  int mem;                /* map is the caller's memory (ld_file_open_mem), not a mapping */
  int warm;               /* found whole in the page cache: ld_file_open asks for no read-ahead */
} ld_file;

/* Maps f->path (a regular, non-empty pickle under PK_LIMIT_PICKLE_FILE_BYTES;
 * cache, when not NULL, measures and with --cold drops its pages first),
 * parses it with the safe reader and checks it as a batch (n_classes as
 * ld_batch_check), under a guard of the mapping: a file cut short
 * meanwhile is an IOError at the first lost byte. */
int ld_file_open(ld_file *f, int n_classes, struct pc_stats *cache, st_error *err);
/* As ld_file_open on len bytes already in memory (an S3 object), which
 * must stay valid until ld_file_release; f->path names them in errors. */
int ld_file_open_mem(ld_file *f, const uint8_t *buf, size_t len, int n_classes, st_error *err);
/* Copies the f->b.n images of an opened file to dst (f->b.n * 3072 bytes),
 * under the same guard. */
int ld_file_copy(ld_file *f, uint8_t *dst, st_error *err);
/* Unmaps and frees what ld_file_open made (not path); a no-op when closed. */
void ld_file_release(ld_file *f);

/* The data_batch_<digits> files of root in numeric order (then by name):
 * *out is a malloc'd array of *nout ld_files with only path and num set;
 * free with ld_files_free. At most PK_LIMIT_LOAD_FILES. */
int ld_list_batches(const char *root, ld_file **out, size_t *nout, st_error *err);
void ld_files_free(ld_file *f, size_t n);

/* Check a batch dict (keys data and labels, by byte content) and copy its
 * labels. n_classes > 0 also bounds the labels. Errors name `where`. */
int ld_batch_check(const pkl_value *root, const char *where, int n_classes, ld_batch *b,
                   st_error *err);
/* label_names of a batches.meta dict into a malloc'd array of malloc'd
 * NUL-terminated strings. */
int ld_meta_names(const pkl_value *root, const char *where, char ***names, int *n,
                  st_error *err);
void ld_names_free(char **names, int n);

/* label_names of DIR/batches.meta (root as ld_resolve_root gives it), as
 * ld_meta_names. */
int ld_read_meta(const char *root, char ***names, int *n, st_error *err);

/* The folder holding the batch files: DIR/cifar-10-batches-py when that is
 * a folder, else DIR. */
int ld_resolve_root(const char *dir, char *out, size_t cap, st_error *err);

/* The image grid of %preview (torchvision make_grid: nrow 8, padding 2, pad
 * value `pad`), scaled by `scale`, as RGB rows. malloc'd; *w, *h set. */
uint8_t *ld_grid_rgb(const uint8_t *pixels, const size_t *idx, int n, int scale, uint8_t pad,
                     int *w, int *h);

#define LD_LOAD_ROWS                                                                   \
  {"load", ld_load, 1, 1, ST_F_SLOW, "load",                                           \
   "%load DIR [--split train|test|all] [--name NAME] [--md5|--no-hash] [--cold]",      \
   "Read the pickled CIFAR-10 batches into memory (stage 5, \"pickled\").",            \
   "DIR is the folder holding cifar-10-batches-py/ or that folder itself. Every\n"     \
   "data_batch_N (any count, numeric order) makes the train split, test_batch the\n"   \
   "test split: one contiguous uint8 N x 3072 block plus N labels each. Prints per\n"  \
   "split the files, images, bytes, rate and a fingerprint of the pixel bytes\n"      \
   "(file order) and of the labels (one byte each): XXH3-128 by default, computed\n"  \
   "behind the copies (xxhash.xxh3_128(x.tobytes()) gives the same), the md5s that\n" \
   "hashlib gives with --md5, none with --no-hash. --cold drops the files' pages\n"   \
   "from the page cache first. The pickle reader runs no code: only the opcodes\n"    \
   "and numpy globals of the CIFAR formats are accepted.",                             \
   ld_load_opts},                                                                      \
  {"meta", ld_meta, 0, 1, 0, "load", "%meta [DIR] [--name NAME]",                      \
   "Class names from batches.meta and the images per class (stage 6, \"meta\").",     \
   "Shows a table and a bar chart of the loaded images per class. DIR defaults to\n"   \
   "the folder of the loaded dataset. The names are kept for %preview.",              \
   ld_meta_opts},                                                                      \
  {"preview", ld_preview, 0, 0, 0, "load",                                             \
   "%preview [--n 4] [--seed S] [--split train|test] [--scale K] [--name NAME]",       \
   "Show N random images in one grid with their classes (stage 8, \"preview\").",     \
   "Laid out like torchvision's make_grid (8 per row, 2 px padding) as the notebook\n" \
   "showed it: padding mid-grey (128), pixels as stored, scaled up K times (nearest).\n"\
   "Prints the class names on one line as the notebook does. Without --seed a\n"       \
   "random seed is used and printed, so the same grid can be shown again.",           \
   ld_preview_opts},

#endif
