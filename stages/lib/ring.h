/*
 * ring.h -- a ring of byte buffers between one producer thread and one
 * consumer thread: how %download --extract hands the bytes it receives to
 * the extractor, and how the extractor's inflater hands what it inflated to
 * the tar reader.
 *
 * The producer fills the free slot in place (ring_acquire, then
 * ring_publish) or hands over a buffer of its own in exchange for the
 * slot's (ring_publish_swap: no copy). The consumer takes the oldest
 * filled slot and holds it until it asks for the next (ring_take).
 * Either side can end it: the producer closes (the end of the data, or an
 * error), the consumer stops (it wants no more); a side that waits wakes at
 * once.
 */
#ifndef PK_RING_H
#define PK_RING_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RING_MAX 16

typedef struct ring_buf {
  uint8_t *buf[RING_MAX];
  size_t len[RING_MAX];
  size_t size;           /* bytes per slot */
  int slots;
  int head, tail, count; /* filled: [tail, tail + count), modulo slots */
  int held;              /* the consumer holds slot tail */
  int closed;            /* producer: 1 at the end of the data, -1 on an error */
  int stopped;           /* consumer: wants no more */
  pthread_mutex_t mu;
  pthread_cond_t cv;
} ring_buf;

/* 0, or -1 when out of memory (then nothing is left to free). slots: 2 to
 * RING_MAX. */
int ring_init(ring_buf *r, int slots, size_t size);
void ring_free(ring_buf *r);

/* Producer. The free slot (r->size bytes), waiting while every slot is
 * filled or held; NULL once the consumer has stopped, or when cancelled(ud)
 * says so (asked every 100 ms while waiting; NULL: wait without asking). */
uint8_t *ring_acquire(ring_buf *r, int (*cancelled)(void *ud), void *ud);
/* Producer. Publishes the acquired slot with n bytes in it. */
void ring_publish(ring_buf *r, size_t n);
/* Producer. Publishes *buf (r->size bytes of room, n used) in place of the
 * acquired slot's buffer, which comes back in *buf: the bytes are not
 * copied. The buffers the ring holds at ring_free are freed there; the
 * one the producer holds is its own. */
void ring_publish_swap(ring_buf *r, uint8_t **buf, size_t n);
/* Producer. No more slots: how = 1 at the end of the data, -1 on an error. */
void ring_close(ring_buf *r, int how);

/* Consumer. Releases the slot held since the last call, then waits for the
 * next filled one: > 0 bytes at *out (valid until the next call); 0 at the
 * end of the data or once stopped; -1 when the producer closed on an error
 * (after every slot it filled before). */
ssize_t ring_take(ring_buf *r, const void **out);
/* Consumer. Wants no more: wakes a producer waiting for a slot. Returns 1
 * when the producer had not closed yet (it may be busy elsewhere). */
int ring_stop(ring_buf *r);

#endif
