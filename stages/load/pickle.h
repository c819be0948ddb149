/*
 * pickle.h -- a safe reader for the pickles CIFAR-10 ships in.
 *
 * Reads exactly the opcode subset and the allow-list of globals of
 * docs/workflow.md: the original Python 2 protocol-2 files and files
 * written by CPython 3 with numpy 1.x or 2.x at protocols 2 to 5. Globals are
 * interpreted natively and never called; everything else is refused with the
 * byte offset, the opcode and the reason.
 *
 * The result is a small object model in an arena owned by pkl_doc. Strings,
 * bytes and array data point into the caller's buffer where they can (the
 * buffer must outlive the doc), so a 30 MB pixel block is never copied here.
 */
#ifndef PK_PICKLE_H
#define PK_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/stage.h"

typedef enum pkl_type {
  PKL_NONE = 0,
  PKL_BOOL,
  PKL_INT,
  PKL_FLOAT,
  PKL_BYTES,   /* py2 str, bytes, bytearray, _codecs.encode(..., 'latin1') */
  PKL_STR,     /* unicode, UTF-8 (validated) */
  PKL_LIST,
  PKL_TUPLE,
  PKL_DICT,
  PKL_NDARRAY,
  PKL_DTYPE,
  PKL_GLOBAL,  /* an allow-listed global, before REDUCE */
} pkl_type;

/* How the bytes of a PKL_BYTES value or an array's data are stored. */
enum pkl_enc {
  PKL_RAW = 0,    /* `len` bytes at `p` */
  PKL_LATIN1 = 1, /* UTF-8 text at `p` (`src_len` bytes) whose code points,
                    all <= 255, are the `len` bytes (protocol 2's
                    _codecs.encode path, kept lazy for large blocks) */
};

typedef struct pkl_value pkl_value;

typedef struct pkl_dtype {
  char kind;      /* 'u', 'i', 'f', 'b' */
  char order;     /* '<', '>', '|' */
  int itemsize;   /* bytes */
} pkl_dtype;

/* A numpy array: kept out of the value, so that the values a batch file
 * is made of (10,000 labels, 10,000 file names) stay small. */
typedef struct pkl_array {
  pkl_dtype dt;
  int ndim;         /* -1: _reconstruct placeholder not yet BUILT */
  size_t shape[8];
  int fortran;
  const uint8_t *data;
  size_t len;       /* bytes */
  size_t src_len;   /* PKL_LATIN1: bytes of UTF-8 at data */
  int enc;
} pkl_array;

struct pkl_value {
  pkl_type type;
  union {
    int64_t i;          /* PKL_BOOL, PKL_INT (LONG beyond 64 bits is refused) */
    double f;           /* PKL_FLOAT */
    struct {            /* PKL_BYTES, PKL_STR */
      const uint8_t *p;
      size_t len;       /* bytes (code points of a PKL_LATIN1 value) */
      size_t src_len;   /* PKL_BYTES + PKL_LATIN1: bytes of UTF-8 at p;
                           PKL_STR: number of code points */
      int enc;          /* PKL_BYTES: enum pkl_enc; PKL_STR: 1 when every code
                           point is <= 255, else 2 */
    } s;
    struct {            /* PKL_LIST, PKL_TUPLE, PKL_DICT (keys at even, values
                           at odd positions) */
      pkl_value **items;
      size_t n, cap;
    } seq;
    pkl_array *a;       /* PKL_NDARRAY (in the doc's arena) */
    pkl_dtype dt;        /* PKL_DTYPE */
    int g;              /* PKL_GLOBAL: enum pkl_global (pickle.c) */
  } u;
  int64_t offset;       /* byte offset of the opcode that made it */
};

typedef struct pkl_doc pkl_doc;

/* Parse buf[0..len). `where` names the input in errors (the file name).
 * Returns the doc (its root via pkl_root) or NULL with err filled:
 * ST_EUNSAFE (opcode or global outside the allow-list), ST_EFORMAT
 * (malformed, truncated), ST_E2BIG (a limit), ST_ENOMEM. */
pkl_doc *pkl_parse(const uint8_t *buf, size_t len, const char *where, st_error *err);
void pkl_free(pkl_doc *d);
const pkl_value *pkl_root(const pkl_doc *d);

/* A dict's value for a key given by byte content: py2 str, bytes and
 * unicode keys all match. NULL when absent or d is not a dict. */
const pkl_value *pkl_dict_get(const pkl_value *d, const char *key);
/* Number of items of a list or tuple (0 otherwise). */
size_t pkl_len(const pkl_value *v);
/* Short name of a type ("list", "ndarray" ...). */
const char *pkl_type_name(const pkl_value *v);

/* The bytes of a PKL_BYTES/PKL_STR value written to out (cap >= v->u.s.len
 * bytes); for PKL_STR the UTF-8 bytes. Returns bytes written. */
size_t pkl_bytes_copy(const pkl_value *v, uint8_t *out, size_t cap);
/* Copy an array's data into dst (a->len bytes), narrowing a PKL_LATIN1
 * block on the way. */
void pkl_array_copy(const pkl_array *a, uint8_t *dst);

#endif
