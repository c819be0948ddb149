/*
 * preview.c -- %preview (stage 8): a grid of random images of the loaded
 * dataset, as a PNG with their class names.
 */

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/escape.h"
#include "lib/limits.h"
#include "lib/png.h"
#include "lib/session.h"
#include "load.h"

const st_option ld_preview_opts[] = {
    {"n", 1, "N", "number of images (default 4)"},
    {"seed", 1, "S", "random seed (default: a new one, printed)"},
    {"split", 1, "SPLIT", "train or test (default train)"},
    {"scale", 1, "K", "nearest-neighbour upscaling (default 4)"},
    {"name", 1, "NAME", "dataset (default: the last loaded)"},
    {NULL, 0, NULL, NULL}};

/* ------------------------------------------------------------------ */
/* %preview                                                            */
/* ------------------------------------------------------------------ */
uint8_t *ld_grid_rgb(const uint8_t *pixels, const size_t *idx, int n, int scale, uint8_t pad,
                     int *w, int *h) {
  const int nrow = 8, padding = 2, cell = 32 + padding;
  int xmaps = n < nrow ? n : nrow, ymaps = (n + xmaps - 1) / xmaps;
  int gw = xmaps * cell + padding, gh = ymaps * cell + padding;
  int W = gw * scale, H = gh * scale;
  uint8_t *out = malloc((size_t)W * (size_t)H * 3);
  if (!out) return NULL;
  memset(out, pad, (size_t)W * (size_t)H * 3);
  for (int k = 0; k < n; k++) {
    const uint8_t *img = pixels + idx[k] * SS_IMAGE_BYTES;
    int ox = (k % xmaps) * cell + padding, oy = (k / xmaps) * cell + padding;
    for (int y = 0; y < 32; y++)
      for (int x = 0; x < 32; x++) {
        uint8_t px[3] = {img[y * 32 + x], img[1024 + y * 32 + x], img[2048 + y * 32 + x]};
        for (int dy = 0; dy < scale; dy++) {
          uint8_t *row = out + ((size_t)((oy + y) * scale + dy) * (size_t)W + (size_t)(ox + x) * (size_t)scale) * 3;
          for (int dx = 0; dx < scale; dx++) memcpy(row + dx * 3, px, 3);
        }
      }
  }
  *w = W;
  *h = H;
  return out;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n) { /* uniform in [0, n) */
  uint64_t lim = UINT64_MAX - UINT64_MAX % n;
  for (;;) {
    uint64_t r = splitmix(s);
    if (r < lim) return r % n;
  }
}

static const char *const cifar_names[] = {"airplane", "automobile", "bird", "cat", "deer",
                                          "dog", "frog", "horse", "ship", "truck"};
static const char *const short_names[] = {"plane", "car", "bird", "cat", "deer",
                                          "dog", "frog", "horse", "ship", "truck"};

static int standard_names(const ss_dataset *d) {
  if (d->n_classes != 10 || !d->label_names) return 0;
  for (int i = 0; i < 10; i++)
    if (strcmp(d->label_names[i], cifar_names[i]) != 0) return 0;
  return 1;
}

int ld_preview(st_ctx *c, const st_args *a, st_error *err) {
  const char *name = st_arg_str(a, "name", NULL);
  ss_dataset *d = ss_session_dataset(c->session, name);
  if (!d)
    return st_error_set(err, ST_ESTATE, "preview", -1,
                        name ? "no dataset named %s: run %%load DIR --name %s first"
                             : "no dataset loaded: run %%load DIR first%s%s",
                        name ? name : "", name ? name : "");
  const char *split = st_arg_str(a, "split", "train");
  ss_split *sp = strcmp(split, "train") == 0 ? &d->train : strcmp(split, "test") == 0 ? &d->test : NULL;
  if (!sp) return st_error_set(err, ST_EINVAL, "preview", -1, "--split must be train or test, not '%s'", split);
  if (!sp->n)
    return st_error_set(err, ST_ESTATE, "preview", -1, "the %s split of %s is not loaded", split, d->name);
  long long n, scale, seed;
  int rc = st_arg_int(a, "n", 4, 1, PK_LIMIT_PREVIEW_IMAGES, &n, err);
  if (!rc) rc = st_arg_int(a, "scale", 4, 1, PK_LIMIT_PREVIEW_SCALE, &scale, err);
  if (rc) return rc;
  if ((size_t)n > sp->n)
    return st_error_set(err, ST_EINVAL, "preview", -1, "--n %lld but the %s split has %zu images", n,
                        split, sp->n);
  if (st_arg_has(a, "seed")) {
    rc = st_arg_int(a, "seed", 0, 0, INT64_MAX, &seed, err);
    if (rc) return rc;
  } else {
    uint32_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &r, sizeof r) != (ssize_t)sizeof r)
      r = (uint32_t)(st_now() * 1e6) ^ (uint32_t)getpid();
    if (fd >= 0) close(fd);
    seed = (long long)(r % 1000000000u);
  }
  double t0 = st_now();
  /* n distinct indices, in draw order */
  size_t idx[PK_LIMIT_PREVIEW_IMAGES];
  uint64_t s = (uint64_t)seed;
  for (int k = 0; k < n; k++) {
    for (;;) {
      size_t v = (size_t)below(&s, sp->n);
      int dup = 0;
      for (int j = 0; j < k; j++) dup |= idx[j] == v;
      if (!dup) {
        idx[k] = v;
        break;
      }
    }
  }
  int w, h;
  uint8_t *rgb = ld_grid_rgb(sp->pixels, idx, (int)n, (int)scale, 128, &w, &h);
  if (!rgb) return st_error_set(err, ST_ENOMEM, "preview", -1, "out of memory");
  uint8_t *png = NULL;
  size_t plen = 0;
  rc = pngenc_rgb(rgb, w, h, &png, &plen, err);
  free(rgb);
  if (rc) return rc;
  char alt[256];
  snprintf(alt, sizeof alt, "<%lld %s images of %s: %dx%d PNG grid>", n, split, d->name, w, h);
  st_mime m[2] = {{"image/png", png, plen, w, h}, {"text/plain", alt, strlen(alt), 0, 0}};
  st_display(c, m, 2, NULL);
  free(png);

  const char *const *cls = standard_names(d) ? short_names
                           : d->label_names ? (const char *const *)d->label_names : NULL;
  char line[PK_LIMIT_PREVIEW_IMAGES * 24];
  size_t o = 0;
  for (int k = 0; k < n && o < sizeof line; k++) {
    uint8_t lb = sp->labels[idx[k]];
    char num[8];
    snprintf(num, sizeof num, "%u", lb);
    esc_buf eb; /* class names come from batches.meta */
    const char *nm = cls && lb < d->n_classes ? esc_name(&eb, cls[lb]) : num;
    o += (size_t)snprintf(line + o, sizeof line - o, "%s%9s", k ? " " : "", nm);
  }
  st_printf(c, "%s\n", line);
  char ix[PK_LIMIT_PREVIEW_IMAGES * 12];
  o = 0;
  for (int k = 0; k < n && o < sizeof ix; k++)
    o += (size_t)snprintf(ix + o, sizeof ix - o, "%s%zu", k ? " " : "", idx[k]);
  st_printf(c, "preview: %s images %s; seed %lld (repeat with --seed %lld)\n", split, ix, seed, seed);
  st_timing_add(c, "preview", "preview", st_now() - t0, (uint64_t)plen, (uint64_t)n, "libpng", NULL);
  return 0;
}
