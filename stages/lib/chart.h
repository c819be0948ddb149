/*
 * chart.h -- bar charts as SVG text, as PNG (a tiny rasterizer: filled
 * rectangles and a built-in 5x7 bitmap font, encoded with libpng) and as a
 * text/plain fallback. Horizontal or vertical bars, one series or two side
 * by side (e.g. two runs of the same stages), title and value-axis label.
 *
 * Both renderings come from one layout (a list of rectangles and text
 * runs), so the SVG and the PNG show the same chart.
 */
#ifndef PK_CHART_H
#define PK_CHART_H

#include <stddef.h>
#include <stdint.h>

#include "stage.h"

typedef struct chart_spec {
  const char *title;         /* NULL: none */
  const char *axis_label;    /* the value axis ("seconds", "images"); NULL: none */
  int horizontal;            /* 1: categories down the left, bars grow right */
  int n;                     /* categories */
  const char *const *labels; /* n category labels */
  const double *values[2];   /* values[1] == NULL: one series; values >= 0 */
  const char *series[2];     /* legend names, shown when there are two series */
  int decimals;              /* digits after the point in value labels */
  const char *unit;          /* appended to value labels (" s"); NULL: none */
} chart_spec;

/* malloc'd SVG document (UTF-8, XML-escaped text); *len its length. */
char *chart_svg(const chart_spec *ch, size_t *len);
/* malloc'd aligned text rendering with '#' bars. */
char *chart_text(const chart_spec *ch);
/* PNG of the same layout; *w, *h its size in pixels. */
int chart_png(const chart_spec *ch, uint8_t **png, size_t *len, int *w, int *h, st_error *err);
/* One display_data: image/svg+xml, image/png and text/plain. */
int chart_display(st_ctx *c, const chart_spec *ch, st_error *err);

/* The built-in font: draws s at (x, y) (top-left) into an RGB canvas, each
 * font pixel `scale` x `scale`; returns the width drawn. 6*scale px per char. */
int chart_font_draw(uint8_t *rgb, int w, int h, int x, int y, const char *s, int scale,
                 uint32_t color);

#endif
