/*
 * pklwrite.h -- a writer of Python 2 cPickle protocol-2 streams, the layout
 * of the original CIFAR-10 "python version" files (docs/workflow.md): py2
 * strings as SHORT_BINSTRING/BINSTRING, every string, container and global
 * memoized with BINPUT/LONG_BINPUT, lists as MARK ... APPENDS groups of at
 * most 1000 items, uint8 arrays as numpy.core.multiarray._reconstruct + BUILD.
 *
 * The writer appends to a capped growable buffer (lib/dynbuf.h): its first
 * failure (ST_ENOMEM, or ST_E2BIG past the cap) sticks in w->b.err and
 * makes later writes no-ops, so a caller writes a whole stream and checks
 * once. A caller that streams big blocks reserves them with pw_array_u8_2d
 * and fills them in place (by offset: the buffer may move while it grows).
 */
#ifndef PK_PKLWRITE_H
#define PK_PKLWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/dynbuf.h"

typedef struct pw_buf {
  dynbuf b;      /* the stream so far (b.p, b.len; b.err: the first failure) */
  uint32_t memo; /* next memo index */
} pw_buf;

/* An empty writer whose stream may grow to max bytes. */
void pw_init(pw_buf *w, size_t max);
/* Empty again (memo 0, no error), keeping the memory. */
void pw_reset(pw_buf *w);
void pw_free(pw_buf *w);
/* The stream's bytes (they move while it grows). */
static inline uint8_t *pw_bytes(const pw_buf *w) { return (uint8_t *)w->b.p; }
void pw_raw(pw_buf *w, const void *b, size_t n);
void pw_op(pw_buf *w, uint8_t op);
void pw_put(pw_buf *w);                           /* BINPUT / LONG_BINPUT */
void pw_str(pw_buf *w, const void *s, size_t n);  /* py2 str + memo */
void pw_cstr(pw_buf *w, const char *s);
void pw_int(pw_buf *w, long long v);              /* BININT1/BININT2/BININT */
void pw_global(pw_buf *w, const char *module, const char *name);
/* Lists (EMPTY_LIST + memo, then groups of <= 1000: MARK items APPENDS; a
 * group of one item is that item + APPEND, as cPickle does). */
void pw_list_ints(pw_buf *w, const int32_t *v, size_t n);
void pw_list_strs(pw_buf *w, char *const *s, size_t n);
/* A C-contiguous uint8 array of shape rows x cols: writes everything up to
 * and including the BINSTRING header of the raw block, rows*cols bytes
 * (uninitialised, for the caller to fill) and the tail (memo, TUPLE, BUILD). Returns the
 * offset of the raw block in pw_bytes(w), or (size_t)-1 once the writer
 * failed (w->b.err). */
size_t pw_array_u8_2d(pw_buf *w, uint32_t rows, uint32_t cols);

/* Pickle opcodes used. */
enum {
  PW_PROTO = 0x80, PW_EMPTY_DICT = '}', PW_EMPTY_LIST = ']', PW_MARK = '(',
  PW_APPEND = 'a', PW_APPENDS = 'e', PW_SETITEMS = 'u', PW_STOP = '.',
  PW_TUPLE = 't', PW_TUPLE1 = 0x85, PW_TUPLE2 = 0x86, PW_TUPLE3 = 0x87,
  PW_REDUCE = 'R', PW_BUILD = 'b', PW_NONE = 'N', PW_NEWFALSE = 0x89
};

#endif
