/*
 * png.c -- PNG encoding with libpng into a growing memory buffer.
 */
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "dynbuf.h"
#include "limits.h"
#include "png.h"

static void mem_write(png_structp png, png_bytep data, png_size_t n) {
  dyn_add(png_get_io_ptr(png), data, n); /* a failure sticks in the dynbuf */
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
  /* raw rows, their filter bytes, and more than deflate ever adds */
  size_t raw = (size_t)w * (size_t)h * 3 + (size_t)h;
  dynbuf b = DYN_INIT(raw + raw / 2 + (64u << 10));
  png_set_write_fn(png, &b, mem_write, mem_flush);
  png_set_compression_level(png, 6);
  int rc = encode(png, info, rgb, w, h);
  png_destroy_write_struct(&png, &info);
  if (rc || b.err) {
    int code = b.err ? b.err : ST_EINTERNAL;
    dyn_free(&b);
    return st_error_set(err, code, "png", -1, "libpng could not encode the image");
  }
  *out = (uint8_t *)dyn_take(&b, len);
  return *out ? 0 : st_error_set(err, ST_ENOMEM, "png", -1, "out of memory");
}
