/*
 * session.h -- state kept between cells: variables, loaded datasets,
 * timing records. One ss_session per kernel (or CLI) process; it is touched
 * only from the stage thread.
 */
#ifndef PK_SESSION_H
#define PK_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "stage.h"

#define SS_IMAGE_BYTES 3072 /* 3 x 32 x 32, planar R, G, B */

/* The memory of a split (its pixels and labels) once it is shared with a
 * holder outside the session, such as a numpy array of the Python module
 * (python/): a reference count, the last release frees the memory. */
typedef struct ss_block ss_block;

/* One split of a dataset: n images of 3072 bytes in the files' own planar
 * order, and one label byte per image. Owned by the dataset; moving the
 * struct (a later %load keeping the other split) moves the ownership. */
typedef struct ss_split {
  uint8_t *pixels;  /* n * 3072 bytes (malloc'd, or mmap'd: see map_len) */
  uint8_t *labels;  /* n bytes */
  size_t n;
  size_t files;     /* batch files it came from */
  size_t map_len;   /* nonzero: pixels is an mmap of this length */
  ss_block *shared; /* non-NULL once shared: the block owns pixels and labels */
  /* the fingerprint %load printed: hash "xxh3-128" (the default) or "md5"
   * (--md5), "" without one (--no-hash); each digest as lowercase hex (the
   * canonical, big-endian form xxh128sum and hashlib print) */
  char hash[16];
  char pixels_hash[33];
  char labels_hash[33];
} ss_split;

typedef struct ss_dataset {
  char name[64];          /* --name, default "cifar10" */
  char root[4096];        /* the cifar-10-batches-py folder */
  ss_split train, test;
  char **label_names;     /* NULL until batches.meta was read */
  int n_classes;
  struct ss_dataset *next;
} ss_dataset;

typedef struct ss_var {
  char *name, *value;
  struct ss_var *next;
} ss_var;

/* A labelled set of timing records (%timings --label, --compare). */
typedef struct ss_runrec {
  char label[64];
  st_timing *timings;
  size_t n;
  struct ss_runrec *next;
} ss_runrec;

typedef struct ss_session {
  ss_var *vars;
  ss_dataset *datasets;   /* most recently loaded first */
  st_timing *timings;
  size_t n_timings, cap_timings;
  char run_label[64];     /* %timings --label */
  struct ss_runrec *runs;    /* labelled runs kept by %timings --label */
  void *trainer;          /* opaque, owned by the train stage */
  void (*trainer_free)(void *);
} ss_session;

ss_session *ss_session_new(void);
void ss_session_free(ss_session *s);

/* Variables (%set). get returns NULL when unset (no environment fallback). */
const char *ss_session_get(const ss_session *s, const char *name);
int ss_session_set(ss_session *s, const char *name, const char *value);
int ss_session_unset(ss_session *s, const char *name);

/* Datasets. put takes ownership and replaces one of the same name. */
ss_dataset *ss_dataset_new(const char *name);
void ss_dataset_free(ss_dataset *d);
void ss_split_free(ss_split *sp);
void ss_session_put_dataset(ss_session *s, ss_dataset *d);
/* A new reference to the memory of sp: pixels and labels stay where they are
 * and valid until the reference is released, even after sp is freed or its
 * dataset replaced (ss_split_free then drops the split's own reference
 * instead of freeing). NULL when out of memory. Call it where the session
 * may be touched (no stage running on it); the pointers in sp do not
 * change and must not be freed by anyone else from then on. */
ss_block *ss_split_share(ss_split *sp);
/* Drops one reference, from any thread; the last one frees the memory
 * (munmap or free). NULL is a no-op. */
void ss_block_release(ss_block *b);
/* What a reference holds: n images (n * 3072 pixel bytes; pixels is NULL
 * when n is 0) and n labels. */
uint8_t *ss_block_pixels(const ss_block *b);
uint8_t *ss_block_labels(const ss_block *b);
size_t ss_block_count(const ss_block *b);
/* By name; NULL name = the most recently loaded. */
ss_dataset *ss_session_dataset(ss_session *s, const char *name);

/* Timings. */
int ss_session_add_timing(ss_session *s, const st_timing *t);
void ss_session_clear_timings(ss_session *s);

#endif
