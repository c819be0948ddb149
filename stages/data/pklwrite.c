/*
 * pklwrite.c -- Python 2 cPickle protocol-2 writer (see pklwrite.h).
 */
#include "pklwrite.h"

#include <string.h>

void pw_init(pw_buf *w, size_t max) {
  dyn_init(&w->b, max);
  w->memo = 0;
}

void pw_reset(pw_buf *w) {
  dyn_reset(&w->b);
  w->memo = 0;
}

void pw_free(pw_buf *w) {
  dyn_free(&w->b);
  w->memo = 0;
}

void pw_raw(pw_buf *w, const void *b, size_t n) { dyn_add(&w->b, b, n); }

void pw_op(pw_buf *w, uint8_t op) { pw_raw(w, &op, 1); }

static void le32(uint8_t *o, uint32_t v) {
  o[0] = (uint8_t)v; o[1] = (uint8_t)(v >> 8); o[2] = (uint8_t)(v >> 16); o[3] = (uint8_t)(v >> 24);
}

void pw_put(pw_buf *w) {
  uint8_t b[5];
  uint32_t i = w->memo++;
  if (i < 256) {
    b[0] = 'q'; b[1] = (uint8_t)i;
    pw_raw(w, b, 2);
  } else {
    b[0] = 'r'; le32(b + 1, i);
    pw_raw(w, b, 5);
  }
}

static void str_header(pw_buf *w, size_t n) {
  uint8_t b[5];
  if (n < 256) {
    b[0] = 'U'; b[1] = (uint8_t)n;
    pw_raw(w, b, 2);
  } else {
    b[0] = 'T'; le32(b + 1, (uint32_t)n);
    pw_raw(w, b, 5);
  }
}

void pw_str(pw_buf *w, const void *s, size_t n) {
  str_header(w, n);
  pw_raw(w, s, n);
  pw_put(w);
}

void pw_cstr(pw_buf *w, const char *s) { pw_str(w, s, strlen(s)); }

void pw_int(pw_buf *w, long long v) {
  uint8_t b[5];
  if (v >= 0 && v < 256) {
    b[0] = 'K'; b[1] = (uint8_t)v;
    pw_raw(w, b, 2);
  } else if (v >= 0 && v < 65536) {
    b[0] = 'M'; b[1] = (uint8_t)v; b[2] = (uint8_t)(v >> 8);
    pw_raw(w, b, 3);
  } else {
    b[0] = 'J'; le32(b + 1, (uint32_t)(int32_t)v);
    pw_raw(w, b, 5);
  }
}

void pw_global(pw_buf *w, const char *module, const char *name) {
  pw_op(w, 'c');
  pw_raw(w, module, strlen(module));
  pw_op(w, '\n');
  pw_raw(w, name, strlen(name));
  pw_op(w, '\n');
  pw_put(w);
}

void pw_list_ints(pw_buf *w, const int32_t *v, size_t n) {
  pw_op(w, PW_EMPTY_LIST);
  pw_put(w);
  for (size_t k = 0; k < n; k += 1000) {
    size_t m = n - k < 1000 ? n - k : 1000;
    if (m == 1) {
      pw_int(w, v[k]);
      pw_op(w, PW_APPEND);
      continue;
    }
    pw_op(w, PW_MARK);
    for (size_t i = 0; i < m; i++) pw_int(w, v[k + i]);
    pw_op(w, PW_APPENDS);
  }
}

void pw_list_strs(pw_buf *w, char *const *s, size_t n) {
  pw_op(w, PW_EMPTY_LIST);
  pw_put(w);
  for (size_t k = 0; k < n; k += 1000) {
    size_t m = n - k < 1000 ? n - k : 1000;
    if (m == 1) {
      pw_cstr(w, s[k]);
      pw_op(w, PW_APPEND);
      continue;
    }
    pw_op(w, PW_MARK);
    for (size_t i = 0; i < m; i++) pw_cstr(w, s[k + i]);
    pw_op(w, PW_APPENDS);
  }
}

static void dtype_u1(pw_buf *w) {
  pw_global(w, "numpy", "dtype");
  pw_cstr(w, "u1");
  pw_int(w, 0);
  pw_int(w, 1);
  pw_op(w, PW_TUPLE3);
  pw_put(w);
  pw_op(w, PW_REDUCE);
  pw_put(w);
  pw_op(w, PW_MARK);
  pw_int(w, 3);
  pw_cstr(w, "|");
  pw_raw(w, "NNN", 3);
  pw_int(w, -1);
  pw_int(w, -1);
  pw_int(w, 0);
  pw_op(w, PW_TUPLE);
  pw_put(w);
  pw_op(w, PW_BUILD);
}

size_t pw_array_u8_2d(pw_buf *w, uint32_t rows, uint32_t cols) {
  pw_global(w, "numpy.core.multiarray", "_reconstruct");
  pw_global(w, "numpy", "ndarray");
  pw_int(w, 0);
  pw_op(w, PW_TUPLE1);
  pw_put(w);
  pw_cstr(w, "b");
  pw_op(w, PW_TUPLE3);
  pw_put(w);
  pw_op(w, PW_REDUCE);
  pw_put(w);
  pw_op(w, PW_MARK);
  pw_int(w, 1);
  pw_int(w, rows);
  pw_int(w, cols);
  pw_op(w, PW_TUPLE2);
  pw_put(w);
  dtype_u1(w);
  pw_op(w, PW_NEWFALSE);
  size_t n = (size_t)rows * cols;
  str_header(w, n);
  if (!dyn_reserve(&w->b, n)) return (size_t)-1;
  size_t off = w->b.len;
  dyn_commit(&w->b, n);
  pw_put(w);
  pw_op(w, PW_TUPLE);
  pw_put(w);
  pw_op(w, PW_BUILD);
  return w->b.err ? (size_t)-1 : off;
}
