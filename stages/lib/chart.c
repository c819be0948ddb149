/*
 * chart.c -- bar charts: one layout, rendered as SVG, PNG and text.
 *
 * Layout units are SVG pixels; the PNG is drawn at RASTER_SCALE times that
 * size with the built-in font (a 5x7 design with two rows of descenders,
 * one glyph per printable ASCII character, drawn for this project) so both renderings match.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chart.h"
#include "dynbuf.h"
#include "escape.h"
#include "png.h"
#include "table.h"

/* ---- the font: 7 rows of 5 bits (bit 4 = leftmost column) above the
 * baseline, 2 below it for g, j, p, q, y (unlisted rows are 0) ---- */
#define FONT_ROWS 9
static const uint8_t font5x7[95][FONT_ROWS] = {
    {0x00,0x00,0x00,0x00,0x00,0x00,0x00}, /* ' ' */
    {0x04,0x04,0x04,0x04,0x04,0x00,0x04}, /* '!' */
    {0x0a,0x0a,0x00,0x00,0x00,0x00,0x00}, /* '"' */
    {0x0a,0x1f,0x0a,0x0a,0x1f,0x0a,0x00}, /* '#' */
    {0x04,0x0f,0x14,0x0e,0x05,0x1e,0x04}, /* '$' */
    {0x18,0x19,0x02,0x04,0x08,0x13,0x03}, /* '%' */
    {0x0c,0x12,0x14,0x08,0x15,0x12,0x0d}, /* '&' */
    {0x04,0x04,0x00,0x00,0x00,0x00,0x00}, /* "'" */
    {0x02,0x04,0x08,0x08,0x08,0x04,0x02}, /* '(' */
    {0x08,0x04,0x02,0x02,0x02,0x04,0x08}, /* ')' */
    {0x00,0x04,0x15,0x0e,0x15,0x04,0x00}, /* '*' */
    {0x00,0x04,0x04,0x1f,0x04,0x04,0x00}, /* '+' */
    {0x00,0x00,0x00,0x00,0x0c,0x04,0x08}, /* ',' */
    {0x00,0x00,0x00,0x1f,0x00,0x00,0x00}, /* '-' */
    {0x00,0x00,0x00,0x00,0x00,0x0c,0x0c}, /* '.' */
    {0x00,0x01,0x02,0x04,0x08,0x10,0x00}, /* '/' */
    {0x0e,0x11,0x13,0x15,0x19,0x11,0x0e}, /* '0' */
    {0x04,0x0c,0x04,0x04,0x04,0x04,0x0e}, /* '1' */
    {0x0e,0x11,0x01,0x02,0x04,0x08,0x1f}, /* '2' */
    {0x1f,0x02,0x04,0x02,0x01,0x11,0x0e}, /* '3' */
    {0x02,0x06,0x0a,0x12,0x1f,0x02,0x02}, /* '4' */
    {0x1f,0x10,0x1e,0x01,0x01,0x11,0x0e}, /* '5' */
    {0x06,0x08,0x10,0x1e,0x11,0x11,0x0e}, /* '6' */
    {0x1f,0x01,0x02,0x04,0x08,0x08,0x08}, /* '7' */
    {0x0e,0x11,0x11,0x0e,0x11,0x11,0x0e}, /* '8' */
    {0x0e,0x11,0x11,0x0f,0x01,0x02,0x0c}, /* '9' */
    {0x00,0x0c,0x0c,0x00,0x0c,0x0c,0x00}, /* ':' */
    {0x00,0x0c,0x0c,0x00,0x0c,0x04,0x08}, /* ';' */
    {0x02,0x04,0x08,0x10,0x08,0x04,0x02}, /* '<' */
    {0x00,0x00,0x1f,0x00,0x1f,0x00,0x00}, /* '=' */
    {0x08,0x04,0x02,0x01,0x02,0x04,0x08}, /* '>' */
    {0x0e,0x11,0x01,0x02,0x04,0x00,0x04}, /* '?' */
    {0x0e,0x11,0x01,0x0d,0x15,0x15,0x0e}, /* '@' */
    {0x0e,0x11,0x11,0x1f,0x11,0x11,0x11}, /* 'A' */
    {0x1e,0x11,0x11,0x1e,0x11,0x11,0x1e}, /* 'B' */
    {0x0e,0x11,0x10,0x10,0x10,0x11,0x0e}, /* 'C' */
    {0x1c,0x12,0x11,0x11,0x11,0x12,0x1c}, /* 'D' */
    {0x1f,0x10,0x10,0x1e,0x10,0x10,0x1f}, /* 'E' */
    {0x1f,0x10,0x10,0x1e,0x10,0x10,0x10}, /* 'F' */
    {0x0e,0x11,0x10,0x17,0x11,0x11,0x0f}, /* 'G' */
    {0x11,0x11,0x11,0x1f,0x11,0x11,0x11}, /* 'H' */
    {0x0e,0x04,0x04,0x04,0x04,0x04,0x0e}, /* 'I' */
    {0x07,0x02,0x02,0x02,0x02,0x12,0x0c}, /* 'J' */
    {0x11,0x12,0x14,0x18,0x14,0x12,0x11}, /* 'K' */
    {0x10,0x10,0x10,0x10,0x10,0x10,0x1f}, /* 'L' */
    {0x11,0x1b,0x15,0x15,0x11,0x11,0x11}, /* 'M' */
    {0x11,0x11,0x19,0x15,0x13,0x11,0x11}, /* 'N' */
    {0x0e,0x11,0x11,0x11,0x11,0x11,0x0e}, /* 'O' */
    {0x1e,0x11,0x11,0x1e,0x10,0x10,0x10}, /* 'P' */
    {0x0e,0x11,0x11,0x11,0x15,0x12,0x0d}, /* 'Q' */
    {0x1e,0x11,0x11,0x1e,0x14,0x12,0x11}, /* 'R' */
    {0x0f,0x10,0x10,0x0e,0x01,0x01,0x1e}, /* 'S' */
    {0x1f,0x04,0x04,0x04,0x04,0x04,0x04}, /* 'T' */
    {0x11,0x11,0x11,0x11,0x11,0x11,0x0e}, /* 'U' */
    {0x11,0x11,0x11,0x11,0x11,0x0a,0x04}, /* 'V' */
    {0x11,0x11,0x11,0x15,0x15,0x15,0x0a}, /* 'W' */
    {0x11,0x11,0x0a,0x04,0x0a,0x11,0x11}, /* 'X' */
    {0x11,0x11,0x11,0x0a,0x04,0x04,0x04}, /* 'Y' */
    {0x1f,0x01,0x02,0x04,0x08,0x10,0x1f}, /* 'Z' */
    {0x0e,0x08,0x08,0x08,0x08,0x08,0x0e}, /* '[' */
    {0x00,0x10,0x08,0x04,0x02,0x01,0x00}, /* '\\' */
    {0x0e,0x02,0x02,0x02,0x02,0x02,0x0e}, /* ']' */
    {0x04,0x0a,0x11,0x00,0x00,0x00,0x00}, /* '^' */
    {0x00,0x00,0x00,0x00,0x00,0x00,0x1f}, /* '_' */
    {0x08,0x04,0x00,0x00,0x00,0x00,0x00}, /* '`' */
    {0x00,0x00,0x0e,0x01,0x0f,0x11,0x0f}, /* 'a' */
    {0x10,0x10,0x16,0x19,0x11,0x11,0x1e}, /* 'b' */
    {0x00,0x00,0x0e,0x10,0x10,0x11,0x0e}, /* 'c' */
    {0x01,0x01,0x0d,0x13,0x11,0x11,0x0f}, /* 'd' */
    {0x00,0x00,0x0e,0x11,0x1f,0x10,0x0e}, /* 'e' */
    {0x06,0x09,0x08,0x1c,0x08,0x08,0x08}, /* 'f' */
    {0x00,0x00,0x0f,0x11,0x11,0x11,0x0f,0x01,0x0e}, /* 'g' */
    {0x10,0x10,0x16,0x19,0x11,0x11,0x11}, /* 'h' */
    {0x04,0x00,0x0c,0x04,0x04,0x04,0x0e}, /* 'i' */
    {0x02,0x00,0x06,0x02,0x02,0x02,0x02,0x12,0x0c}, /* 'j' */
    {0x10,0x10,0x12,0x14,0x18,0x14,0x12}, /* 'k' */
    {0x0c,0x04,0x04,0x04,0x04,0x04,0x0e}, /* 'l' */
    {0x00,0x00,0x1a,0x15,0x15,0x11,0x11}, /* 'm' */
    {0x00,0x00,0x16,0x19,0x11,0x11,0x11}, /* 'n' */
    {0x00,0x00,0x0e,0x11,0x11,0x11,0x0e}, /* 'o' */
    {0x00,0x00,0x1e,0x11,0x11,0x11,0x1e,0x10,0x10}, /* 'p' */
    {0x00,0x00,0x0f,0x11,0x11,0x11,0x0f,0x01,0x01}, /* 'q' */
    {0x00,0x00,0x16,0x19,0x10,0x10,0x10}, /* 'r' */
    {0x00,0x00,0x0e,0x10,0x0e,0x01,0x1e}, /* 's' */
    {0x08,0x08,0x1c,0x08,0x08,0x09,0x06}, /* 't' */
    {0x00,0x00,0x11,0x11,0x11,0x13,0x0d}, /* 'u' */
    {0x00,0x00,0x11,0x11,0x11,0x0a,0x04}, /* 'v' */
    {0x00,0x00,0x11,0x11,0x15,0x15,0x0a}, /* 'w' */
    {0x00,0x00,0x11,0x0a,0x04,0x0a,0x11}, /* 'x' */
    {0x00,0x00,0x11,0x11,0x11,0x11,0x0f,0x01,0x0e}, /* 'y' */
    {0x00,0x00,0x1f,0x02,0x04,0x08,0x1f}, /* 'z' */
    {0x02,0x04,0x04,0x08,0x04,0x04,0x02}, /* '{' */
    {0x04,0x04,0x04,0x04,0x04,0x04,0x04}, /* '|' */
    {0x08,0x04,0x04,0x02,0x04,0x04,0x08}, /* '}' */
    {0x00,0x00,0x08,0x15,0x02,0x00,0x00}, /* '~' */
};

#define RASTER_SCALE 2
#define CW 6 /* character advance, layout units */
#define CH 7 /* character height */

int chart_font_draw(uint8_t *rgb, int w, int h, int x, int y, const char *s, int scale,
                 uint32_t color) {
  int x0 = x;
  uint8_t cr = (uint8_t)(color >> 16), cg = (uint8_t)(color >> 8), cb = (uint8_t)color;
  for (; *s; s++, x += CW * scale) {
    unsigned char ch = (unsigned char)*s;
    if (ch < 32 || ch > 126) ch = '?';
    const uint8_t *gl = font5x7[ch - 32];
    for (int row = 0; row < FONT_ROWS; row++)
      for (int col = 0; col < 5; col++) {
        if (!(gl[row] >> (4 - col) & 1)) continue;
        for (int dy = 0; dy < scale; dy++)
          for (int dx = 0; dx < scale; dx++) {
            int px = x + col * scale + dx, py = y + row * scale + dy;
            if (px < 0 || py < 0 || px >= w || py >= h) continue;
            uint8_t *p = rgb + ((size_t)py * (size_t)w + (size_t)px) * 3;
            p[0] = cr;
            p[1] = cg;
            p[2] = cb;
          }
      }
  }
  return x - x0;
}

/* ---- the layout: rectangles and text runs ---- */
enum { P_RECT, P_TEXT };
enum { A_START, A_MIDDLE, A_END };

typedef struct prim {
  int kind;
  double x, y, w, h; /* text: (x, y) = anchor point, top of the glyphs */
  uint32_t color;
  int anchor;
  char text[64];
} prim;

typedef struct layout {
  prim *p;
  int n, cap;
  double W, H;
} layout;

static const uint32_t C_TEXT = 0x222222, C_AXIS = 0x444444, C_GRID = 0xdddddd, C_BG = 0xffffff;
static const uint32_t C_SERIES[2] = {0x4c72b0, 0xdd8452};

static prim *add(layout *L, int kind) {
  if (L->n == L->cap) {
    int cap = L->cap ? L->cap * 2 : 64;
    prim *np = realloc(L->p, (size_t)cap * sizeof *np);
    if (!np) return NULL;
    L->p = np;
    L->cap = cap;
  }
  prim *p = &L->p[L->n++];
  memset(p, 0, sizeof *p);
  p->kind = kind;
  return p;
}

static void rect(layout *L, double x, double y, double w, double h, uint32_t color) {
  prim *p = add(L, P_RECT);
  if (!p) return;
  p->x = x;
  p->y = y;
  p->w = w;
  p->h = h;
  p->color = color;
}

static void text(layout *L, double x, double y, int anchor, uint32_t color, const char *s) {
  prim *p = add(L, P_TEXT);
  if (!p) return;
  p->x = x;
  p->y = y;
  p->anchor = anchor;
  p->color = color;
  esc_text(p->text, sizeof p->text, s, strlen(s)); /* labels come from outside (escape.h) */
}

static double text_w(const char *s) {
  size_t n = strlen(s);
  if (n > 63) n = 63;
  return n ? (double)n * CW - 1 : 0;
}

static int nseries(const chart_spec *ch) { return ch->values[1] ? 2 : 1; }

static double vmax(const chart_spec *ch) {
  double m = 0;
  for (int s = 0; s < nseries(ch); s++)
    for (int i = 0; i < ch->n; i++)
      if (ch->values[s][i] > m) m = ch->values[s][i];
  return m;
}

static double nice_step(double range) {
  double raw = range / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static void fmt_value(const chart_spec *ch, double v, char *buf, size_t cap) {
  snprintf(buf, cap, "%.*f%s", ch->decimals < 0 ? 0 : ch->decimals > 6 ? 6 : ch->decimals, v,
           ch->unit ? ch->unit : "");
}

static void legend(layout *L, const chart_spec *ch, double x, double y) {
  for (int s = 0; s < 2; s++) {
    const char *nm = ch->series[s] ? ch->series[s] : s ? "second" : "first";
    rect(L, x, y, 10, 7, C_SERIES[s]);
    text(L, x + 14, y, A_START, C_TEXT, nm);
    x += 14 + text_w(nm) + 16;
  }
}

static int build_layout(const chart_spec *ch, layout *L) {
  memset(L, 0, sizeof *L);
  int ns = nseries(ch);
  double mx = vmax(ch);
  if (mx <= 0) mx = 1;
  double step = nice_step(mx), top_v = ceil(mx / step) * step;
  size_t lab_chars = 1;
  for (int i = 0; i < ch->n; i++) {
    size_t k = strlen(ch->labels[i] ? ch->labels[i] : "");
    if (k > lab_chars) lab_chars = k > 40 ? 40 : k;
  }
  char buf[64];
  double y = 10;
  double title_y = y;
  if (ch->title) y += CH + 10;
  double legend_y = y;
  if (ns == 2) y += CH + 10;
  size_t tick_chars = 1;
  for (double v = 0; v <= top_v + step / 2; v += step) {
    snprintf(buf, sizeof buf, "%g", v);
    if (strlen(buf) > tick_chars) tick_chars = strlen(buf);
  }
  if (!ch->horizontal) {
    double axis_y = y;
    if (ch->axis_label) y += CH + 6;
    double left = 10 + (double)tick_chars * CW + 6, ph = 220;
    double bar_w = 14, slot = (double)lab_chars * CW + 10;
    if (slot < ns * bar_w + 12) slot = ns * bar_w + 12;
    double plot_top = y + CH + 4, base = plot_top + ph;
    L->W = left + slot * ch->n + 20;
    L->H = base + 6 + CH + 12;
    for (double v = 0; v <= top_v + step / 2; v += step) {
      double yy = base - v / top_v * ph;
      rect(L, left, yy, slot * ch->n, 1, v == 0 ? C_AXIS : C_GRID);
      snprintf(buf, sizeof buf, "%g", v);
      text(L, left - 5, yy - 3, A_END, C_TEXT, buf);
    }
    rect(L, left, plot_top - 4, 1, ph + 4, C_AXIS);
    if (ch->axis_label) text(L, 10, axis_y, A_START, C_TEXT, ch->axis_label);
    for (int i = 0; i < ch->n; i++) {
      double sx = left + slot * i, bx = sx + (slot - ns * bar_w) / 2;
      for (int s = 0; s < ns; s++) {
        double v = ch->values[s][i] > 0 ? ch->values[s][i] : 0, hh = v / top_v * ph;
        rect(L, bx + s * bar_w, base - hh, bar_w - 2, hh, C_SERIES[s]);
        fmt_value(ch, ch->values[s][i], buf, sizeof buf);
        if (ns == 1 || text_w(buf) <= slot / 2)
          text(L, bx + s * bar_w + (bar_w - 2) / 2, base - hh - CH - 3, A_MIDDLE, C_TEXT, buf);
      }
      snprintf(buf, sizeof buf, "%.40s", ch->labels[i] ? ch->labels[i] : "");
      text(L, sx + slot / 2, base + 6, A_MIDDLE, C_TEXT, buf);
    }
    if (ch->title) text(L, L->W / 2, title_y, A_MIDDLE, C_TEXT, ch->title);
    if (ns == 2) legend(L, ch, left, legend_y);
  } else {
    double left = 10 + (double)lab_chars * CW + 8, pw = 360, bar_h = 12;
    double row = ns * bar_h + 8, plot_top = y + 4;
    double base = plot_top + row * ch->n;
    double val_room = 0;
    for (int s = 0; s < ns; s++)
      for (int i = 0; i < ch->n; i++) {
        fmt_value(ch, ch->values[s][i], buf, sizeof buf);
        if (text_w(buf) > val_room) val_room = text_w(buf);
      }
    L->W = left + pw + val_room + 20;
    L->H = base + 6 + CH + (ch->axis_label ? CH + 10 : 0) + 12;
    for (double v = 0; v <= top_v + step / 2; v += step) {
      double xx = left + v / top_v * pw;
      rect(L, xx, plot_top, 1, base - plot_top, v == 0 ? C_AXIS : C_GRID);
      snprintf(buf, sizeof buf, "%g", v);
      text(L, xx, base + 6, A_MIDDLE, C_TEXT, buf);
    }
    rect(L, left, base, pw + 4, 1, C_AXIS);
    for (int i = 0; i < ch->n; i++) {
      double ry = plot_top + row * i + 4;
      snprintf(buf, sizeof buf, "%.40s", ch->labels[i] ? ch->labels[i] : "");
      text(L, left - 6, ry + (ns * bar_h - 2 - CH) / 2, A_END, C_TEXT, buf);
      for (int s = 0; s < ns; s++) {
        double v = ch->values[s][i] > 0 ? ch->values[s][i] : 0, ww = v / top_v * pw;
        rect(L, left + 1, ry + s * bar_h, ww, bar_h - 2, C_SERIES[s]);
        fmt_value(ch, ch->values[s][i], buf, sizeof buf);
        text(L, left + 1 + ww + 4, ry + s * bar_h + (bar_h - 2 - CH) / 2, A_START, C_TEXT, buf);
      }
    }
    if (ch->axis_label) text(L, left + pw / 2, base + 6 + CH + 8, A_MIDDLE, C_TEXT, ch->axis_label);
    if (ch->title) text(L, L->W / 2, title_y, A_MIDDLE, C_TEXT, ch->title);
    if (ns == 2) legend(L, ch, left, legend_y);
  }
  L->W = ceil(L->W);
  L->H = ceil(L->H);
  return L->n && L->p ? 0 : -1;
}

/* SVG and text renderings are capped (labels come from outside). */
#define CHART_RENDER_MAX (16u << 20)

char *chart_svg(const chart_spec *ch, size_t *len) {
  layout L;
  if (build_layout(ch, &L)) {
    free(L.p);
    return NULL;
  }
  dynbuf b = DYN_INIT(CHART_RENDER_MAX);
  dyn_printf(&b,
     "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
     "viewBox=\"0 0 %.0f %.0f\" font-family=\"monospace\" font-size=\"10\">\n"
     "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#%06x\"/>\n",
     L.W, L.H, L.W, L.H, L.W, L.H, C_BG);
  for (int i = 0; i < L.n; i++) {
    const prim *p = &L.p[i];
    if (p->kind == P_RECT) {
      dyn_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#%06x\"/>\n", p->x,
         p->y, p->w, p->h, p->color);
    } else {
      char *esc = tbl_html_escape(p->text);
      static const char *const anchors[] = {"start", "middle", "end"};
      dyn_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" fill=\"#%06x\">%s</text>\n", p->x,
         p->y + CH, anchors[p->anchor], p->color, esc ? esc : "");
      free(esc);
    }
  }
  dyn_printf(&b, "</svg>\n");
  free(L.p);
  return dyn_take(&b, len);
}

int chart_png(const chart_spec *ch, uint8_t **png, size_t *len, int *w, int *h, st_error *err) {
  layout L;
  if (build_layout(ch, &L)) {
    free(L.p);
    return st_error_set(err, ST_ENOMEM, "chart", -1, "out of memory");
  }
  const int S = RASTER_SCALE;
  int W = (int)L.W * S, H = (int)L.H * S;
  if ((uint64_t)W * (uint64_t)H > (64u << 20)) {
    free(L.p);
    return st_error_set(err, ST_E2BIG, "chart", -1, "chart of %dx%d pixels is too large", W, H);
  }
  uint8_t *rgb = malloc((size_t)W * (size_t)H * 3);
  if (!rgb) {
    free(L.p);
    return st_error_set(err, ST_ENOMEM, "chart", -1, "out of memory");
  }
  memset(rgb, 0xff, (size_t)W * (size_t)H * 3);
  for (int i = 0; i < L.n; i++) {
    const prim *p = &L.p[i];
    if (p->kind == P_RECT) {
      int x0 = (int)lround(p->x * S), y0 = (int)lround(p->y * S);
      int x1 = (int)lround((p->x + p->w) * S), y1 = (int)lround((p->y + p->h) * S);
      if (x1 == x0 && p->w > 0) x1 = x0 + 1;
      if (y1 == y0 && p->h > 0) y1 = y0 + 1;
      if (x0 < 0) x0 = 0;
      if (y0 < 0) y0 = 0;
      if (x1 > W) x1 = W;
      if (y1 > H) y1 = H;
      for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
          uint8_t *q = rgb + ((size_t)y * (size_t)W + (size_t)x) * 3;
          q[0] = (uint8_t)(p->color >> 16);
          q[1] = (uint8_t)(p->color >> 8);
          q[2] = (uint8_t)p->color;
        }
    } else {
      double tw = text_w(p->text);
      double x = p->anchor == A_MIDDLE ? p->x - tw / 2 : p->anchor == A_END ? p->x - tw : p->x;
      chart_font_draw(rgb, W, H, (int)lround(x * S), (int)lround(p->y * S), p->text, S, p->color);
    }
  }
  free(L.p);
  int rc = pngenc_rgb(rgb, W, H, png, len, err);
  free(rgb);
  if (!rc) {
    *w = W;
    *h = H;
  }
  return rc;
}

char *chart_text(const chart_spec *ch) {
  dynbuf b = DYN_INIT(CHART_RENDER_MAX);
  int ns = nseries(ch);
  double mx = vmax(ch);
  if (mx <= 0) mx = 1;
  size_t lab = 1, sn = 0;
  for (int i = 0; i < ch->n; i++) {
    size_t k = strlen(ch->labels[i] ? ch->labels[i] : "");
    if (k > lab) lab = k > 40 ? 40 : k;
  }
  if (ns == 2)
    for (int s = 0; s < 2; s++) {
      size_t k = strlen(ch->series[s] ? ch->series[s] : "");
      if (k > sn) sn = k;
    }
  if (ch->title) dyn_printf(&b, "%s%s%s%s\n", ch->title, ch->axis_label ? " (" : "",
                    ch->axis_label ? ch->axis_label : "", ch->axis_label ? ")" : "");
  char val[64];
  for (int i = 0; i < ch->n; i++)
    for (int s = 0; s < ns; s++) {
      int bar = (int)lround(ch->values[s][i] / mx * 40);
      if (bar < 0) bar = 0;
      fmt_value(ch, ch->values[s][i], val, sizeof val);
      esc_buf eb;
      dyn_printf(&b, "%-*.40s ", (int)lab, s == 0 ? esc_name(&eb, ch->labels[i]) : "");
      if (ns == 2) dyn_printf(&b, "%-*s ", (int)sn, ch->series[s] ? ch->series[s] : "");
      for (int k = 0; k < bar; k++) dyn_printf(&b, "#");
      dyn_printf(&b, "%s%s\n", bar ? " " : "", val);
    }
  return dyn_take(&b, NULL);
}

int chart_display(st_ctx *c, const chart_spec *ch, st_error *err) {
  size_t slen = 0, plen = 0;
  uint8_t *png = NULL;
  int w = 0, h = 0;
  char *svg = chart_svg(ch, &slen);
  char *txt = chart_text(ch);
  int rc = svg && txt ? chart_png(ch, &png, &plen, &w, &h, err)
                      : st_error_set(err, ST_ENOMEM, "chart", -1, "out of memory");
  if (!rc) {
    st_mime m[3] = {{"image/svg+xml", svg, slen, w / RASTER_SCALE, h / RASTER_SCALE},
                    {"image/png", png, plen, w / RASTER_SCALE, h / RASTER_SCALE},
                    {"text/plain", txt, strlen(txt), 0, 0}};
    st_display(c, m, 3, NULL);
  }
  free(svg);
  free(txt);
  free(png);
  return rc;
}
