/*
 * blockw.c -- aligned blocks written to files by threads of their own
 * (blockw.h).
 */
#include "blockw.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct blockw_job {
  uint8_t *b;
  size_t n;
  int fd, fallback_fd;
  uint64_t off;
  blockw_stream *s;
  blockw_job *next;
};

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off) {
  for (size_t done = 0; done < n;) {
    ssize_t w = pwrite(fd, p + done, n - done, (off_t)(off + done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    if (w == 0) return EIO;
    done += (size_t)w;
  }
  return 0;
}

/* One block: refused (EINVAL: a file system that wants another alignment),
 * it goes through the page cache. */
static int write_block(const blockw_job *jb) {
  ssize_t w;
  do w = pwrite(jb->fd, jb->b, jb->n, (off_t)jb->off);
  while (w < 0 && errno == EINTR);
  if (w == (ssize_t)jb->n) return 0;
  if (w < 0 && errno == EINVAL && jb->fallback_fd >= 0)
    return write_all(jb->fallback_fd, jb->b, jb->n, jb->off);
  if (w < 0) return errno;
  /* short: the rest (now off the alignment) through the page cache, where
   * a full disk says so */
  int fd = jb->fallback_fd >= 0 ? jb->fallback_fd : jb->fd;
  return write_all(fd, jb->b + w, jb->n - (size_t)w, jb->off + (uint64_t)w);
}

static void *writer_main(void *arg) {
  blockw *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->head && !w->stop) pthread_cond_wait(&w->work, &w->mu);
    blockw_job *jb = w->head;
    if (!jb) break; /* stopped, and nothing left to write */
    w->head = jb->next;
    if (!w->head) w->tail = NULL;
    pthread_mutex_unlock(&w->mu);
    int e = write_block(jb);
    pthread_mutex_lock(&w->mu);
    if (e && !jb->s->err) jb->s->err = e;
    jb->s->pending--;
    w->free_blocks[w->nfree++] = jb->b;
    jb->next = w->spare;
    w->spare = jb;
    pthread_cond_broadcast(&w->done);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

int blockw_open(blockw *w, int threads, int nblocks, size_t size, size_t align) {
  memset(w, 0, sizeof *w);
  if (threads < 1) threads = 1;
  if (threads > BLOCKW_MAX_THREADS) threads = BLOCKW_MAX_THREADS;
  if (nblocks < 1) nblocks = 1;
  w->size = size;
  w->align = align;
  w->free_blocks = calloc((size_t)nblocks, sizeof *w->free_blocks);
  w->jobs = calloc((size_t)nblocks, sizeof *w->jobs);
  if (!w->free_blocks || !w->jobs) goto fail;
  for (int i = 0; i < nblocks; i++) {
    w->free_blocks[i] = aligned_alloc(align, size);
    if (!w->free_blocks[i]) goto fail;
    w->nblocks = w->nfree = i + 1;
    w->jobs[i].next = w->spare;
    w->spare = &w->jobs[i];
  }
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->work, NULL);
  pthread_cond_init(&w->done, NULL);
  for (int i = 0; i < threads; i++) {
    if (pthread_create(&w->threads[i], NULL, writer_main, w) != 0) break;
    w->nthreads = i + 1;
  }
  if (w->nthreads) return 0;
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->work);
  pthread_cond_destroy(&w->done);
fail:
  for (int i = 0; w->free_blocks && i < w->nfree; i++) free(w->free_blocks[i]);
  free(w->free_blocks);
  free(w->jobs);
  memset(w, 0, sizeof *w);
  return -1;
}

void blockw_close(blockw *w) {
  if (!w->nthreads) return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_broadcast(&w->work);
  pthread_mutex_unlock(&w->mu);
  for (int i = 0; i < w->nthreads; i++) pthread_join(w->threads[i], NULL);
  for (int i = 0; i < w->nfree; i++) free(w->free_blocks[i]);
  free(w->free_blocks);
  free(w->jobs);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->work);
  pthread_cond_destroy(&w->done);
  memset(w, 0, sizeof *w);
}

uint8_t *blockw_get(blockw *w) {
  pthread_mutex_lock(&w->mu);
  while (!w->nfree) pthread_cond_wait(&w->done, &w->mu);
  uint8_t *b = w->free_blocks[--w->nfree];
  pthread_mutex_unlock(&w->mu);
  return b;
}

void blockw_drop(blockw *w, uint8_t *b) {
  if (!b) return;
  pthread_mutex_lock(&w->mu);
  w->free_blocks[w->nfree++] = b;
  pthread_cond_broadcast(&w->done);
  pthread_mutex_unlock(&w->mu);
}

void blockw_put(blockw *w, blockw_stream *s, uint8_t *b, size_t n, int fd, int fallback_fd,
                uint64_t off) {
  pthread_mutex_lock(&w->mu);
  blockw_job *jb = w->spare; /* one entry per block: never NULL for a block taken */
  w->spare = jb->next;
  *jb = (blockw_job){.b = b, .n = n, .fd = fd, .fallback_fd = fallback_fd, .off = off, .s = s};
  if (w->tail) w->tail->next = jb;
  else w->head = jb;
  w->tail = jb;
  s->pending++;
  pthread_cond_signal(&w->work);
  pthread_mutex_unlock(&w->mu);
}

int blockw_wait(blockw *w, blockw_stream *s) {
  pthread_mutex_lock(&w->mu);
  while (s->pending) pthread_cond_wait(&w->done, &w->mu);
  int e = s->err;
  pthread_mutex_unlock(&w->mu);
  return e;
}

int blockw_failed(blockw *w, blockw_stream *s) {
  pthread_mutex_lock(&w->mu);
  int e = s->err;
  pthread_mutex_unlock(&w->mu);
  return e;
}

void blockw_reset(blockw_stream *s) {
  s->pending = 0;
  s->err = 0;
}
