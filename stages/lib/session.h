/*
 * session.h -- state kept between cells: variables, loaded datasets,
 * timing records. One st_session per kernel (or CLI) process; it is touched
 * only from the stage thread.
 */
#ifndef PK_SESSION_H
#define PK_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "stage.h"

#define ST_IMAGE_BYTES 3072 /* 3 x 32 x 32, planar R, G, B */

/* One split of a dataset: n images of 3072 bytes in the files' own planar
 * order, and one label byte per image. Owned by the dataset. */
typedef struct st_split {
  uint8_t *pixels;  /* n * 3072 bytes (malloc'd or mmap'd, see `mapped`) */
  uint8_t *labels;  /* n bytes */
  size_t n;
  size_t files;     /* batch files it came from */
  size_t map_len;   /* nonzero: pixels is an mmap of this length */
  char pixels_md5[33];
  char labels_md5[33];
} st_split;

typedef struct st_dataset {
  char name[64];          /* --name, default "cifar10" */
  char root[4096];        /* the cifar-10-batches-py folder */
  st_split train, test;
  char **label_names;     /* NULL until batches.meta was read */
  int n_classes;
  struct st_dataset *next;
} st_dataset;

typedef struct st_var {
  char *name, *value;
  struct st_var *next;
} st_var;

/* A labelled set of timing records (%timings --label, --compare). */
typedef struct st_runrec {
  char label[64];
  st_timing *timings;
  size_t n;
  struct st_runrec *next;
} st_runrec;

typedef struct st_session {
  st_var *vars;
  st_dataset *datasets;   /* most recently loaded first */
  st_timing *timings;
  size_t n_timings, cap_timings;
  char run_label[64];     /* %timings --label */
  struct st_runrec *runs;    /* labelled runs kept by %timings --label */
  void *trainer;          /* opaque, owned by the train stage */
  void (*trainer_free)(void *);
} st_session;

st_session *st_session_new(void);
void st_session_free(st_session *s);

/* Variables (%set). get returns NULL when unset (no environment fallback). */
const char *st_session_get(const st_session *s, const char *name);
int st_session_set(st_session *s, const char *name, const char *value);
int st_session_unset(st_session *s, const char *name);

/* Datasets. put takes ownership and replaces one of the same name. */
st_dataset *st_dataset_new(const char *name);
void st_dataset_free(st_dataset *d);
void st_split_free(st_split *sp);
void st_session_put_dataset(st_session *s, st_dataset *d);
/* By name; NULL name = the most recently loaded. */
st_dataset *st_session_dataset(st_session *s, const char *name);

/* Timings. */
int st_session_add_timing(st_session *s, const st_timing *t);
void st_session_clear_timings(st_session *s);

#endif
