/*
 * error.c -- the one error convention: ST_E* codes from ST_ERRNO_MAP and
 * st_error with context. First error wins.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "escape.h"
#include "stage.h"

static const char *const names[] = {
#define ST__XX(c, e, m) e,
    ST_ERRNO_MAP(ST__XX)
#undef ST__XX
};

static const char *const messages[] = {
#define ST__XX(c, e, m) m,
    ST_ERRNO_MAP(ST__XX)
#undef ST__XX
};

static int index_of(int code) {
  int i = -1 - code;
  return (i >= 0 && i < ST__IDX_COUNT) ? i : -1;
}

const char *st_strerror(int code) {
  if (code == 0) return "success";
  int i = index_of(code);
  return i < 0 ? "unknown error" : messages[i];
}

const char *st_errname(int code) {
  if (code == 0) return "Success";
  int i = index_of(code);
  return i < 0 ? "Error" : names[i];
}

int st_from_errno(int e) {
  switch (e) {
  case 0: return ST_OK;
  case ENOENT: case ENOTDIR: return ST_ENOENT;
  case EEXIST: return ST_EEXIST;
  case EACCES: case EPERM: case EROFS: return ST_EACCES;
  case ENOSPC: case EDQUOT: case EFBIG: return ST_ENOSPC;
  case ENOMEM: return ST_ENOMEM;
  case EINVAL: return ST_EINVAL;
  case E2BIG: return ST_E2BIG;
  case ECANCELED: case EINTR: return ST_ECANCELED;
  case ETIMEDOUT: return ST_ETIMEDOUT;
  case ENOTSUP: return ST_ENOTSUP;
  default: return ST_EIO;
  }
}

int st_error_set(st_error *err, int code, const char *where, long long offset,
                 const char *fmt, ...) {
  if (!err || err->code != 0) return code;
  err->code = code;
  err->offset = offset;
  snprintf(err->where, sizeof err->where, "%s", where ? where : "");
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
  } else {
    snprintf(err->text, sizeof err->text, "%s", st_strerror(code));
  }
  /* names in errors come from outside (members, keys, URLs, server
   * messages): shown escaped, whoever built the text (escape.h) */
  esc_inplace(err->where, sizeof err->where);
  esc_inplace(err->text, sizeof err->text);
  return code;
}

int st_error_errno(st_error *err, int errnum, const char *where, const char *what) {
  return st_error_set(err, st_from_errno(errnum), where, -1, "%s: %s", what,
                      strerror(errnum));
}

void st_error_clear(st_error *err) {
  if (!err) return;
  err->code = 0;
  err->offset = -1;
  err->where[0] = 0;
  err->text[0] = 0;
}

size_t st_error_format(const st_error *err, char *buf, size_t cap) {
  if (!cap) return 0;
  int n;
  const char *text = err->text[0] ? err->text : st_strerror(err->code);
  if (err->where[0] && err->offset >= 0)
    n = snprintf(buf, cap, "%s: %s (at byte %lld)", err->where, text, err->offset);
  else if (err->where[0])
    n = snprintf(buf, cap, "%s: %s", err->where, text);
  else
    n = snprintf(buf, cap, "%s", text);
  if (n < 0) { buf[0] = 0; return 0; }
  return (size_t)n < cap ? (size_t)n : cap - 1;
}
