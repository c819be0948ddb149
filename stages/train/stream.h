/*
 * stream.h -- the input of %train --from DIR: the batch files read by a
 * thread of their own while the trainer works, out of core.
 *
 * The reader thread takes the data_batch_N files of DIR in a new order
 * every epoch (the file order shuffled from the seed, cnn_shuffle), and
 * hands them on in windows of W consecutive files of that order: each
 * window is one block of its images (the files mapped, parsed with the safe
 * pickle reader of %load, checked, their pixels copied out and the mapping
 * dropped) that the trainer shuffles and steps through. The reader keeps
 * reading ahead, but never holds more than W + P files' images at once,
 * counting the window being trained (P: --prefetch): memory is bounded by
 * the window, whatever the set's size. A file that cannot be read ends the
 * stream with its error (the file, the offset, what was expected) after
 * the windows completed before it. The trainer's waits are counted: the
 * data-stall time.
 *
 * The files may be S3 objects (root s3://BUCKET/PREFIX/): listed once, each
 * read ahead of use by the reader with s3_get (ranged GETs in parallel, the
 * ETag checked) into memory, then parsed as a file is. The reader talks to
 * s3_get through a context of its own; what that prints (retry lines) is
 * kept and shown by the stage thread (tr_stream_flush), and an interrupt of
 * the stage reaches it.
 */
#ifndef PK_TR_STREAM_H
#define PK_TR_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "lib/cache.h"
#include "lib/stage.h"

/* One file's part of a window. */
typedef struct tr_wfile {
  size_t file;          /* index into the stream's file list (tr_stream_file_name) */
  size_t first, n;      /* its images in the window */
} tr_wfile;

/* A window: images from `nfiles` files, in the epoch's file order. */
typedef struct tr_window {
  uint8_t *pixels;      /* n * 3072 bytes, in an anonymous mapping of cap bytes */
  size_t cap;
  uint8_t *labels;      /* n */
  size_t n;
  tr_wfile *files;
  size_t nfiles;
  uint64_t file_bytes;  /* the sizes of its files */
  long long epoch;      /* 0-based */
  int last;             /* the epoch's last window */
  struct tr_window *next;
} tr_window;

typedef struct tr_stream_opts {
  const char *root;     /* the folder holding data_batch_N */
  long long epochs;
  int window;           /* W: files per window (>= 1) */
  int prefetch;         /* P: files read ahead beyond the window being trained */
  uint64_t seed;        /* of the file order */
  int n_classes;        /* bounds the labels (0: any byte) */
  int cold;             /* --cold: drop each file's pages before it is read */
  st_ctx *c;            /* the stage's context (S3: listing, interrupts) */
  const st_args *a;     /* the line's options (S3: the connection's) */
} tr_stream_opts;

typedef struct tr_stream tr_stream;

/* Lists the files (none is an error naming the folder) and starts the
 * reader. */
int tr_stream_open(tr_stream **out, const tr_stream_opts *o, st_error *err);

/* The next window in order into *w: 0, or 1 when the stream is done, or
 * the reader's error (copied into err), or ST_ECANCELED once c was
 * interrupted while waiting (checked every 50 ms). The time spent waiting
 * is added to *stall. */
int tr_stream_next(tr_stream *s, st_ctx *c, tr_window **w, double *stall, st_error *err);

/* Shows what the reader's S3 reads printed (retry lines) through c; call
 * from the stage thread. */
void tr_stream_flush(tr_stream *s, st_ctx *c);

/* An S3 object read whole into *buf (malloc'd, *len bytes, at most
 * PK_LIMIT_PICKLE_FILE_BYTES) with the line's connection options; from the
 * stage thread. */
int tr_s3_fetch(st_ctx *c, const st_args *a, const char *url, uint8_t **buf, size_t *len,
                st_error *err);

/* Hands a window back: its memory is freed and the reader may go on. */
void tr_stream_release(tr_stream *s, tr_window *w);

/* Stops the reader (wherever it is), waits for it and frees everything. */
void tr_stream_close(tr_stream *s);

size_t tr_stream_files(const tr_stream *s);
const char *tr_stream_file_name(const tr_stream *s, size_t i); /* "data_batch_3" */
uint64_t tr_stream_set_bytes(const tr_stream *s);   /* the files' sizes, one epoch */
/* What the reader did so far: bytes of the files read, seconds it was busy
 * reading (not waiting for room), most files' images held at once. */
void tr_stream_stats(tr_stream *s, uint64_t *bytes, double *busy, size_t *peak_files);
/* The cache figures of the files read (pc_report, pc_timing_add); call
 * once the reader stopped or between windows. */
const pc_stats *tr_stream_cache(const tr_stream *s);

#endif
