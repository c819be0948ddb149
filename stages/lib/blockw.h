/*
 * blockw.h -- aligned blocks written to files by threads of their own: how
 * %download from S3 writes past the page cache (O_DIRECT) without stopping
 * the threads that receive the bytes while the storage takes each block.
 *
 * A writer has a fixed number of aligned blocks. A producer takes a free
 * one (blockw_get, which waits while none is free), fills it and queues it
 * (blockw_put) for one stream: the writes a producer must see done, or
 * failed, before it goes on (blockw_wait). Each queued block is written
 * with pwrite at its offset, through its descriptor; a file system that
 * refuses it there (EINVAL: not the alignment it wants) gets it through the
 * other descriptor given with it, through the page cache. Then the block is
 * free again.
 */
#ifndef PK_BLOCKW_H
#define PK_BLOCKW_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define BLOCKW_MAX_THREADS 4

typedef struct blockw_job blockw_job;

/* The writes of one producer's stream: how many are queued or being made,
 * and the errno of the first that failed (0: none). */
typedef struct {
  int pending;
  int err;
} blockw_stream;

typedef struct blockw {
  size_t size, align;   /* bytes of a block, and its alignment */
  int nblocks;
  uint8_t **free_blocks; /* nfree of them */
  int nfree;
  blockw_job *jobs;     /* nblocks of them: the queue's entries */
  blockw_job *head, *tail, *spare;
  int stop;
  int nthreads;
  pthread_t threads[BLOCKW_MAX_THREADS];
  pthread_mutex_t mu;
  pthread_cond_t work, done; /* a block queued / a block written */
} blockw;

/* 0, or -1 when out of memory or no thread can be started (then nothing is
 * left to free). threads: 1 to BLOCKW_MAX_THREADS; nblocks >= 1. */
int blockw_open(blockw *w, int threads, int nblocks, size_t size, size_t align);
/* Writes what is queued, then ends the threads and frees the blocks (every
 * block must have been put back or queued). */
void blockw_close(blockw *w);

/* A free block of w->size bytes (waits for one). */
uint8_t *blockw_get(blockw *w);
/* Gives back a block that is not to be written. */
void blockw_drop(blockw *w, uint8_t *b);
/* Queues n bytes of b (taken by blockw_get) to be written at off through
 * fd, or through fallback_fd where fd refuses them (EINVAL); b is free again
 * once written. */
void blockw_put(blockw *w, blockw_stream *s, uint8_t *b, size_t n, int fd, int fallback_fd,
                uint64_t off);
/* Waits until every write of s is made: 0, or the errno of the first that
 * failed (which s keeps until blockw_reset). */
int blockw_wait(blockw *w, blockw_stream *s);
/* The first failure of s so far, without waiting. */
int blockw_failed(blockw *w, blockw_stream *s);
void blockw_reset(blockw_stream *s);

#endif
