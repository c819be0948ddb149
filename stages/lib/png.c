/*
 * png.c -- PNG encoding with libpng into a growing memory buffer.
 */
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "limits.h"
#include "png.h"

typedef struct {
  uint8_t *p;
  size_t len, cap;
  int oom;
} membuf;

static void mem_write(png_structp png, png_bytep data, png_size_t n) {
  membuf *b = png_get_io_ptr(png);
  if (b->oom) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    uint8_t *np = realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void mem_flush(png_structp png) { (void)png; }

/* The part that may longjmp; nothing here needs to survive it except what
 * the caller owns. */
static int encode(png_structp png, png_infop info, const uint8_t *rgb, int w, int h) {
  if (setjmp(png_jmpbuf(png))) return -1;
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)w * 3));
  png_write_end(png, NULL);
  return 0;
}

int pngenc_rgb(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *len,
                      st_error *err) {
  *out = NULL;
  *len = 0;
  if (w <= 0 || h <= 0 || (uint64_t)w * (uint64_t)h > PK_LIMIT_PNG_PIXELS)
    return st_error_set(err, ST_E2BIG, "png", -1,
                        "image of %dx%d pixels; at most %u pixels (PK_LIMIT_PNG_PIXELS)", w, h,
                        (unsigned)PK_LIMIT_PNG_PIXELS);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  if (!png) return st_error_set(err, ST_ENOMEM, "png", -1, "libpng: out of memory");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, NULL);
    return st_error_set(err, ST_ENOMEM, "png", -1, "libpng: out of memory");
  }
  membuf b = {0};
  png_set_write_fn(png, &b, mem_write, mem_flush);
  png_set_compression_level(png, 6);
  int rc = encode(png, info, rgb, w, h);
  png_destroy_write_struct(&png, &info);
  if (rc || b.oom) {
    free(b.p);
    return st_error_set(err, b.oom ? ST_ENOMEM : ST_EINTERNAL, "png", -1, "libpng could not encode the image");
  }
  *out = b.p;
  *len = b.len;
  return 0;
}
