/*
 * png.h -- encode an 8-bit RGB image as PNG in memory (libpng).
 */
#ifndef PK_PNG_H
#define PK_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "stage.h"

/* rgb: h rows of w*3 bytes. On success *out is a malloc'd PNG of *len
 * bytes. Fails (ST_E2BIG) beyond PK_LIMIT_PNG_PIXELS. */
int pngenc_rgb(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *len,
                      st_error *err);

#endif
