/*
 * ring.c -- the producer/consumer ring of byte buffers (ring.h).
 */
#include "ring.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int st_ring_init(st_ring *r, int slots, size_t size) {
  memset(r, 0, sizeof *r);
  if (slots < 2 || slots > ST_RING_MAX || !size) return -1;
  r->slots = slots;
  r->size = size;
  for (int i = 0; i < slots; i++)
    if (!(r->buf[i] = malloc(size))) {
      for (int k = 0; k < i; k++) free(r->buf[k]);
      return -1;
    }
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  return 0;
}

void st_ring_free(st_ring *r) {
  if (!r->slots) return;
  for (int i = 0; i < r->slots; i++) free(r->buf[i]);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  r->slots = 0;
}

uint8_t *st_ring_acquire(st_ring *r, int (*cancelled)(void *ud), void *ud) {
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

static void publish_locked(st_ring *r, size_t n) {
  r->len[r->head] = n;
  r->head = (r->head + 1) % r->slots;
  r->count++;
  pthread_cond_broadcast(&r->cv);
}

void st_ring_publish(st_ring *r, size_t n) {
  pthread_mutex_lock(&r->mu);
  publish_locked(r, n);
  pthread_mutex_unlock(&r->mu);
}

void st_ring_publish_swap(st_ring *r, uint8_t **buf, size_t n) {
  pthread_mutex_lock(&r->mu);
  uint8_t *slot = r->buf[r->head];
  r->buf[r->head] = *buf;
  *buf = slot;
  publish_locked(r, n);
  pthread_mutex_unlock(&r->mu);
}

void st_ring_close(st_ring *r, int how) {
  pthread_mutex_lock(&r->mu);
  r->closed = how < 0 ? -1 : 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

ssize_t st_ring_take(st_ring *r, const void **out) {
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

int st_ring_stop(st_ring *r) {
  pthread_mutex_lock(&r->mu);
  r->stopped = 1;
  int producing = !r->closed;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return producing;
}
