/*
 * pickle.h -- a safe reader for the pickles CIFAR-10 ships in.
 *
 * Reads exactly the opcode subset and the allow-list of globals of
 * PIPELINE.md 7.3/7.4: the original Python 2 protocol-2 files and files
 * written by CPython 3 with numpy 1.x or 2.x at protocols 2 to 5. Globals are
 * interpreted natively and never called; everything else is refused with the
 * byte offset, the opcode and the reason.
 *
 * The result is a small object model in an arena owned by pk_doc. Strings,
 * bytes and array data point into the caller's buffer where they can (the
 * buffer must outlive the doc), so a 30 MB pixel block is never copied here.
 */
#ifndef PK_PICKLE_H
#define PK_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/stage.h"

typedef enum pk_type {
  PK_NONE = 0,
  PK_BOOL,
  PK_INT,
  PK_FLOAT,
  PK_BYTES,   /* py2 str, bytes, bytearray, _codecs.encode(..., 'latin1') */
  PK_STR,     /* unicode, UTF-8 (validated) */
  PK_LIST,
  PK_TUPLE,
  PK_DICT,
  PK_NDARRAY,
  PK_DTYPE,
  PK_GLOBAL,  /* an allow-listed global, before REDUCE */
} pk_type;

/* How the bytes of a PK_BYTES value or an array's data are stored. */
enum pk_enc {
  PK_RAW = 0,    /* `len` bytes at `p` */
  PK_LATIN1 = 1, /* UTF-8 text at `p` (`src_len` bytes) whose code points,
                    all <= 255, are the `len` bytes (protocol 2's
                    _codecs.encode path, kept lazy for large blocks) */
};

typedef struct pk_value pk_value;

typedef struct pk_dtype {
  char kind;      /* 'u', 'i', 'f', 'b' */
  char order;     /* '<', '>', '|' */
  int itemsize;   /* bytes */
} pk_dtype;

struct pk_value {
  pk_type type;
  union {
    int64_t i;          /* PK_BOOL, PK_INT (LONG beyond 64 bits is refused) */
    double f;           /* PK_FLOAT */
    struct {            /* PK_BYTES, PK_STR */
      const uint8_t *p;
      size_t len;       /* bytes (code points of a PK_LATIN1 value) */
      size_t src_len;   /* PK_BYTES + PK_LATIN1: bytes of UTF-8 at p;
                           PK_STR: number of code points */
      int enc;          /* PK_BYTES: enum pk_enc; PK_STR: 1 when every code
                           point is <= 255, else 2 */
    } s;
    struct {            /* PK_LIST, PK_TUPLE, PK_DICT (keys at even, values
                           at odd positions) */
      pk_value **items;
      size_t n, cap;
    } seq;
    struct {            /* PK_NDARRAY */
      pk_dtype dt;
      int ndim;         /* -1: _reconstruct placeholder not yet BUILT */
      size_t shape[8];
      int fortran;
      const uint8_t *data;
      size_t len;       /* bytes */
      size_t src_len;   /* PK_LATIN1: bytes of UTF-8 at data */
      int enc;
    } a;
    pk_dtype dt;        /* PK_DTYPE */
    int g;              /* PK_GLOBAL: enum pk_global (pickle.c) */
  } u;
  int64_t offset;       /* byte offset of the opcode that made it */
};

typedef struct pk_doc pk_doc;

/* Parse buf[0..len). `where` names the input in errors (the file name).
 * Returns the doc (its root via pk_root) or NULL with err filled:
 * ST_EUNSAFE (opcode or global outside the allow-list), ST_EFORMAT
 * (malformed, truncated), ST_E2BIG (a limit), ST_ENOMEM. */
pk_doc *pk_parse(const uint8_t *buf, size_t len, const char *where, st_error *err);
void pk_free(pk_doc *d);
const pk_value *pk_root(const pk_doc *d);

/* A dict's value for a key given by byte content: py2 str, bytes and
 * unicode keys all match. NULL when absent or d is not a dict. */
const pk_value *pk_dict_get(const pk_value *d, const char *key);
/* Number of items of a list or tuple (0 otherwise). */
size_t pk_len(const pk_value *v);
/* Short name of a type ("list", "ndarray" ...). */
const char *pk_type_name(const pk_value *v);

/* The bytes of a PK_BYTES/PK_STR value written to out (cap >= v->u.s.len
 * bytes); for PK_STR the UTF-8 bytes. Returns bytes written. */
size_t pk_bytes_copy(const pk_value *v, uint8_t *out, size_t cap);
/* Copy an array's data into dst (a->u.a.len bytes), narrowing a PK_LATIN1
 * block on the way. */
void pk_array_copy(const pk_value *a, uint8_t *dst);

#endif
