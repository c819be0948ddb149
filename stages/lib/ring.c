/*
 * ring.c -- the producer/consumer ring of byte buffers (ring.h).
 */
#include "ring.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int ring_init(ring_buf *r, int slots, size_t size) {
  memset(r, 0, sizeof *r);
  if (slots < 2 || slots > RING_MAX || !size) return -1;
  r->slots = slots;
  r->size = size;
  for (int i = 0; i < slots; i++) {
    r->buf[i] = malloc(size);
    if (!r->buf[i]) {
      for (int k = 0; k < i; k++) free(r->buf[k]);
      return -1;
    }
  }
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  return 0;
}

void ring_free(ring_buf *r) {
  if (!r->slots) return;
  for (int i = 0; i < r->slots; i++) free(r->buf[i]);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  r->slots = 0;
}

uint8_t *ring_acquire(ring_buf *r, int (*cancelled)(void *ud), void *ud) {
  pthread_mutex_lock(&r->mu);
  while (!r->stopped && r->count >= r->slots) { /* the held slot is one of count */
    if (!cancelled) {
      pthread_cond_wait(&r->cv, &r->mu);
      continue;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    if (cancelled(ud)) {
      pthread_mutex_unlock(&r->mu);
      return NULL;
    }
  }
  uint8_t *b = r->stopped ? NULL : r->buf[r->head];
  pthread_mutex_unlock(&r->mu);
  return b;
}

static void publish_locked(ring_buf *r, size_t n) {
  r->len[r->head] = n;
  r->head = (r->head + 1) % r->slots;
  r->count++;
  pthread_cond_broadcast(&r->cv);
}

void ring_publish(ring_buf *r, size_t n) {
  pthread_mutex_lock(&r->mu);
  publish_locked(r, n);
  pthread_mutex_unlock(&r->mu);
}

void ring_publish_swap(ring_buf *r, uint8_t **buf, size_t n) {
  pthread_mutex_lock(&r->mu);
  uint8_t *slot = r->buf[r->head];
  r->buf[r->head] = *buf;
  *buf = slot;
  publish_locked(r, n);
  pthread_mutex_unlock(&r->mu);
}

void ring_close(ring_buf *r, int how) {
  pthread_mutex_lock(&r->mu);
  r->closed = how < 0 ? -1 : 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

ssize_t ring_take(ring_buf *r, const void **out) {
  pthread_mutex_lock(&r->mu);
  if (r->held) {
    r->held = 0;
    r->tail = (r->tail + 1) % r->slots;
    r->count--;
    pthread_cond_broadcast(&r->cv);
  }
  while (r->count == 0 && !r->closed && !r->stopped) pthread_cond_wait(&r->cv, &r->mu);
  if (r->stopped || r->count == 0) {
    ssize_t rc = !r->stopped && r->closed < 0 ? -1 : 0;
    pthread_mutex_unlock(&r->mu);
    return rc;
  }
  r->held = 1;
  *out = r->buf[r->tail];
  ssize_t n = (ssize_t)r->len[r->tail];
  pthread_mutex_unlock(&r->mu);
  return n;
}

int ring_stop(ring_buf *r) {
  pthread_mutex_lock(&r->mu);
  r->stopped = 1;
  int producing = !r->closed;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return producing;
}
