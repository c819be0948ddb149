/*
 * test-load.c -- the pickle reader (valid formats, every hostile case folder,
 * truncation at every offset, limits), the %preview grid and the charts.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/chart.h"
#include "load/latin1.h"
#include "lib/limits.h"
#include "load/load.h"
#include "load/pickle.h"
#include "task.h"

#define CORPUS "tests/fuzz/corpus/pickle"
#define INVALID "tests/data/pickle/invalid"

static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0, k;
  uint8_t *b = malloc(cap);
  while (b) {
    k = fread(b + n, 1, cap - n, f);
    if (k == 0) break;
    n += k;
    if (n == cap) {
      uint8_t *nb = realloc(b, cap *= 2);
      if (!nb) { free(b); b = NULL; }
      else b = nb;
    }
  }
  fclose(f);
  *len = n;
  return b;
}

/* Parse + check as %load does; returns 0 or the error code. */
static int parse_batch(const uint8_t *buf, size_t len, int n_classes, ld_batch *b, st_error *err) {
  st_error_clear(err);
  memset(b, 0, sizeof *b);
  pkl_doc *d = pkl_parse(buf, len, "input.pkl", err);
  if (!d) return err->code;
  int rc = ld_batch_check(pkl_root(d), "input.pkl", n_classes, b, err);
  pkl_free(d);
  free(b->labels);
  b->labels = NULL;
  return rc;
}

TEST_IMPL(pickle_invalid_cases) {
  DIR *dir = opendir(INVALID);
  if (!dir) RETURN_SKIP("run from the repository root (" INVALID " not found)");
  struct dirent *e;
  int cases = 0;
  for (e = readdir(dir); e; e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    char path[512], epath[512];
    snprintf(path, sizeof path, INVALID "/%s/input.pkl", e->d_name);
    snprintf(epath, sizeof epath, INVALID "/%s/error", e->d_name);
    size_t len, elen;
    uint8_t *buf = slurp(path, &len), *exp = slurp(epath, &elen);
    ASSERT(buf && exp);
    while (elen && (exp[elen - 1] == '\n' || exp[elen - 1] == '\r')) elen--;
    exp[elen] = 0;
    /* a "file" that is exactly as long as its contents, for ASan */
    uint8_t *exact = malloc(len ? len : 1);
    memcpy(exact, buf, len);
    st_error err;
    ld_batch b;
    int rc = parse_batch(exact, len, 10, &b, &err);
    char msg[4096];
    st_error_format(&err, msg, sizeof msg);
    if (rc == 0 || !strstr(msg, (char *)exp)) {
      fprintf(stderr, "case %s: rc %d, error \"%s\", expected \"%s\"\n", e->d_name, rc, msg, exp);
      ASSERT(0);
    }
    ASSERT(rc < 0 && err.code == rc);
    ASSERT_STR_EQ(err.where, "input.pkl");
    free(exact);
    free(buf);
    free(exp);
    cases++;
  }
  closedir(dir);
  ASSERT(cases >= 40);
  return 0;
}

static const char *const valid_files[] = {"py2_batch", "p2_batch", "p3_batch", "p4_batch",
                                          "p5_batch", "p2_np2_batch", "p3_np2_batch",
                                          "p4_np2_batch", "p5_np2_batch"};

/* ld_file_open frees a file's parse once it is checked, unless the pixels
 * live in it (a small latin-1 block narrowed into the parse's memory): the
 * pixels must survive other files parsed meanwhile, which take the freed
 * memory from the reader's pool (under ASan the memory is really freed and
 * a read of it is reported). */
TEST_IMPL(load_file_outlives_other_parses) {
  static const char *const files[] = {"p2_batch", "py2_batch", "p4_batch", "p2_np2_batch"};
  uint8_t want[2 * 3072], got[2 * 3072];
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[256];
    snprintf(path, sizeof path, CORPUS "/%s", files[i]);
    size_t len;
    uint8_t *buf = slurp(path, &len);
    ASSERT(buf); /* the runner starts in the repository root */
    st_error err;
    st_error_clear(&err);
    pkl_doc *d = pkl_parse(buf, len, path, &err);
    ASSERT(d);
    ld_batch b;
    ASSERT_EQ(ld_batch_check(pkl_root(d), path, 10, &b, &err), 0);
    ASSERT_EQ(b.data.len, sizeof want);
    pkl_array_copy(&b.data, want);
    free(b.labels);
    pkl_free(d);

    ld_file f;
    memset(&f, 0, sizeof f);
    f.path = path;
    ASSERT_EQ(ld_file_open(&f, 10, NULL, &err), 0);
    /* churn the pool: a list of 4000 ints (192 KB of values) written
     * over whatever memory the pool hands out, several times */
    uint8_t churn[6 + 2 * 4000 + 2];
    size_t o = 0;
    churn[o++] = 0x80, churn[o++] = 2, churn[o++] = ']', churn[o++] = 'q', churn[o++] = 0;
    churn[o++] = '(';
    for (int k = 0; k < 4000; k++) churn[o++] = 'K', churn[o++] = (uint8_t)(k * 7 + 1);
    churn[o++] = 'e';
    churn[o++] = '.';
    for (int k = 0; k < 4; k++) {
      pkl_doc *od = pkl_parse(churn, o, "churn", &err);
      ASSERT(od);
      ASSERT_EQ(pkl_len(pkl_root(od)), 4000);
      pkl_free(od);
    }
    memset(got, 0, sizeof got);
    ASSERT_EQ(ld_file_copy(&f, got, &err), 0);
    ASSERT(memcmp(want, got, sizeof want) == 0);
    ld_file_release(&f);
    free(buf);
  }
  return 0;
}

TEST_IMPL(pickle_formats_agree) {
  uint8_t ref[2 * 3072];
  for (size_t i = 0; i < sizeof valid_files / sizeof valid_files[0]; i++) {
    char path[256];
    snprintf(path, sizeof path, CORPUS "/%s", valid_files[i]);
    size_t len;
    uint8_t *buf = slurp(path, &len);
    if (!buf) RETURN_SKIP("run from the repository root (corpus not found)");
    st_error err;
    st_error_clear(&err);
    pkl_doc *d = pkl_parse(buf, len, path, &err);
    if (!d) fprintf(stderr, "%s: %s\n", path, err.text);
    ASSERT(d);
    ld_batch b;
    ASSERT_EQ(ld_batch_check(pkl_root(d), path, 10, &b, &err), 0);
    ASSERT_EQ(b.n, 2);
    ASSERT_EQ(b.labels[0], 3);
    ASSERT_EQ(b.labels[1], 7);
    uint8_t px[2 * 3072];
    pkl_array_copy(&b.data, px);
    if (i == 0) memcpy(ref, px, sizeof px);
    else ASSERT(memcmp(ref, px, sizeof px) == 0);
    const pkl_value *fn = pkl_dict_get(pkl_root(d), "filenames");
    ASSERT_EQ(pkl_len(fn), 2);
    free(b.labels);
    pkl_free(d);
    free(buf);
  }
  /* batches.meta, hand-built py2 (158 bytes) and protocol 4 with bytes keys */
  const char *metas[] = {CORPUS "/py2_meta", CORPUS "/p4_meta_bytes_keys"};
  for (int k = 0; k < 2; k++) {
    size_t len;
    uint8_t *buf = slurp(metas[k], &len);
    ASSERT(buf);
    if (k == 0) ASSERT_EQ(len, 158);
    st_error err;
    st_error_clear(&err);
    pkl_doc *d = pkl_parse(buf, len, metas[k], &err);
    ASSERT(d);
    char **names;
    int n;
    ASSERT_EQ(ld_meta_names(pkl_root(d), metas[k], &names, &n, &err), 0);
    ASSERT_EQ(n, 10);
    ASSERT_STR_EQ(names[0], "airplane");
    ASSERT_STR_EQ(names[9], "truck");
    ld_names_free(names, n);
    pkl_free(d);
    free(buf);
  }
  return 0;
}

/* Every proper prefix of every valid file is refused, none crashes. */
TEST_IMPL(pickle_truncation_every_offset) {
  size_t total = 0;
  for (size_t i = 0; i < sizeof valid_files / sizeof valid_files[0]; i++) {
    char path[256];
    snprintf(path, sizeof path, CORPUS "/%s", valid_files[i]);
    size_t len;
    uint8_t *buf = slurp(path, &len);
    if (!buf) RETURN_SKIP("run from the repository root (corpus not found)");
    for (size_t cut = 0; cut < len; cut++) {
      uint8_t *p = malloc(cut ? cut : 1);
      memcpy(p, buf, cut);
      st_error err;
      st_error_clear(&err);
      pkl_doc *d = pkl_parse(p, cut, "cut", &err);
      if (d) fprintf(stderr, "%s: prefix of %zu bytes parsed\n", path, cut);
      ASSERT(d == NULL);
      ASSERT(err.code == ST_EFORMAT || err.code == ST_EUNSAFE);
      ASSERT(err.offset >= 0 && (size_t)err.offset <= cut);
      free(p);
      total++;
    }
    free(buf);
  }
  ASSERT(total > 1000);
  return 0;
}

TEST_IMPL(pickle_limits) {
  /* a stack deeper than the limit: EMPTY_LIST repeated */
  size_t n = (size_t)PK_LIMIT_PICKLE_STACK + 10;
  uint8_t *buf = malloc(n + 3);
  buf[0] = 0x80;
  buf[1] = 2;
  memset(buf + 2, ']', n);
  buf[n + 2] = '.';
  st_error err;
  st_error_clear(&err);
  ASSERT(pkl_parse(buf, n + 3, "deep", &err) == NULL);
  ASSERT_EQ(err.code, ST_E2BIG);
  ASSERT_CONTAINS(err.text, "PK_LIMIT_PICKLE_STACK");
  /* nested lists through APPEND: deep but flat on the C stack */
  size_t pairs = 200000;
  uint8_t *b2 = malloc(2 + pairs * 2 + 1);
  size_t o = 0;
  b2[o++] = 0x80;
  b2[o++] = 2;
  b2[o++] = ']';
  for (size_t i = 1; i < pairs; i++) b2[o++] = ']';
  for (size_t i = 1; i < pairs; i++) b2[o++] = 'a';
  b2[o++] = '.';
  st_error_clear(&err);
  pkl_doc *d = pkl_parse(b2, o, "nested", &err);
  ASSERT(d != NULL);
  ASSERT_EQ(pkl_len(pkl_root(d)), 1);
  pkl_free(d);
  /* a list that contains itself (memo) is fine to hold */
  static const uint8_t self[] = "\x80\x02]q\x00h\x00" "a.";
  st_error_clear(&err);
  d = pkl_parse(self, sizeof self - 1, "self", &err);
  ASSERT(d != NULL);
  ASSERT(pkl_root(d)->u.seq.items[0] == pkl_root(d));
  pkl_free(d);
  free(buf);
  free(b2);
  return 0;
}

TEST_IMPL(pickle_scalars_and_keys) {
  /* numpy scalars of several dtypes, LONG1 negatives, BINFLOAT big-endian */
  static const uint8_t p[] =
      "\x80\x02]q\x00(\x8a\x01\xff\x8a\x02\x00\x80G\x3f\xf8\x00\x00\x00\x00\x00\x00"
      "J\xfe\xff\xff\xff\x88" "e.";
  st_error err;
  st_error_clear(&err);
  pkl_doc *d = pkl_parse(p, sizeof p - 1, "s", &err);
  ASSERT(d);
  const pkl_value *l = pkl_root(d);
  ASSERT_EQ(pkl_len(l), 5);
  ASSERT_EQ(l->u.seq.items[0]->u.i, -1);
  ASSERT_EQ(l->u.seq.items[1]->u.i, -32768);
  ASSERT(l->u.seq.items[2]->u.f == 1.5);
  ASSERT_EQ(l->u.seq.items[3]->u.i, -2);
  ASSERT_EQ(l->u.seq.items[4]->type, PKL_BOOL);
  pkl_free(d);
  /* the same key as py2 str, bytes and unicode: last one wins */
  static const uint8_t k[] = "\x80\x03}(U\x01" "kK\x01" "C\x01" "kK\x02" "X\x01\x00\x00\x00" "kK\x03" "u.";
  st_error_clear(&err);
  d = pkl_parse(k, sizeof k - 1, "k", &err);
  ASSERT(d);
  ASSERT_EQ(pkl_dict_get(pkl_root(d), "k")->u.i, 3);
  ASSERT(pkl_dict_get(pkl_root(d), "kk") == NULL);
  pkl_free(d);
  return 0;
}

TEST_IMPL(preview_grid_layout) {
  uint8_t px[5 * 3072];
  for (int k = 0; k < 5; k++)
    for (int c = 0; c < 3; c++) memset(px + k * 3072 + c * 1024, 10 * k + c, 1024);
  size_t idx[4] = {4, 0, 2, 1};
  int w, h;
  uint8_t *g = ld_grid_rgb(px, idx, 4, 1, 128, &w, &h);
  ASSERT(g);
  ASSERT_EQ(w, 138);
  ASSERT_EQ(h, 36);
  ASSERT_EQ(g[0], 128);                          /* padding */
  ASSERT_EQ(g[(2 * 138 + 2) * 3 + 0], 40);       /* image 4 red plane at (2,2) */
  ASSERT_EQ(g[(2 * 138 + 2) * 3 + 2], 42);
  ASSERT_EQ(g[(33 * 138 + 33) * 3], 40);         /* its last pixel */
  ASSERT_EQ(g[(33 * 138 + 34) * 3], 128);        /* padding between cells */
  ASSERT_EQ(g[(2 * 138 + 36) * 3 + 1], 1);       /* image 0 starts at x = 36 */
  ASSERT_EQ(g[(10 * 138 + 34 * 3 + 2) * 3 + 1], 11); /* image 1, fourth cell */
  free(g);
  /* scale 3: 9 images -> 8 per row, two rows */
  size_t idx9[9] = {0, 1, 2, 3, 4, 0, 1, 2, 3};
  g = ld_grid_rgb(px, idx9, 9, 3, 128, &w, &h);
  ASSERT(g);
  ASSERT_EQ(w, (8 * 34 + 2) * 3);
  ASSERT_EQ(h, (2 * 34 + 2) * 3);
  ASSERT_EQ(g[((36 * 3 + 1) * (size_t)w + 2 * 3 + 2) * 3], 30); /* 9th image = 3, row 2 */
  free(g);
  return 0;
}

/* The PNG font: letters that descend (g j p q y) reach 2 rows below the
 * baseline (rows 7-8 of the glyph cell), the others stay above it. */
static int ink_rows(const char *s, int *first, int *last) {
  enum { W = 16, H = 12 };
  uint8_t rgb[W * H * 3];
  memset(rgb, 0, sizeof rgb);
  chart_font_draw(rgb, W, H, 0, 0, s, 1, 0xffffff);
  *first = H;
  *last = -1;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      if (rgb[(y * W + x) * 3]) {
        if (y < *first) *first = y;
        if (y > *last) *last = y;
      }
  return *last >= 0;
}

TEST_IMPL(font_descenders) {
  int first, last;
  for (const char *c = "gjpqy"; *c; c++) {
    char s[2] = {*c, 0};
    ASSERT(ink_rows(s, &first, &last));
    ASSERT_EQ(last, 8);
  }
  for (const char *c = "abcdhxzAGQ09,;"; *c; c++) {
    char s[2] = {*c, 0};
    ASSERT(ink_rows(s, &first, &last));
    ASSERT(last <= 6 + (*c == ',' || *c == ';'));
  }
  ASSERT(!ink_rows(" ", &first, &last));
  return 0;
}

TEST_IMPL(chart_render) {
  const char *labels[] = {"download", "verify & <check>", "pickled"};
  double a[] = {275.55, 214.04, 28.08}, b[] = {3.1, 0.9, 0.05};
  for (int horiz = 0; horiz < 2; horiz++)
    for (int two = 0; two < 2; two++) {
      chart_spec ch = {0};
      ch.title = "Stage timings";
      ch.axis_label = "seconds";
      ch.horizontal = horiz;
      ch.n = 3;
      ch.labels = labels;
      ch.values[0] = a;
      ch.values[1] = two ? b : NULL;
      ch.series[0] = "whitepaper";
      ch.series[1] = "pipekernel";
      ch.decimals = 2;
      ch.unit = " s";
      size_t len;
      char *svg = chart_svg(&ch, &len);
      ASSERT(svg && len == strlen(svg));
      ASSERT(strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39) == 0);
      ASSERT_CONTAINS(svg, "verify &amp; &lt;check&gt;");
      ASSERT_CONTAINS(svg, "275.55 s");
      if (two) ASSERT_CONTAINS(svg, "pipekernel");
      ASSERT_CONTAINS(svg, "</svg>");
      char *t = chart_text(&ch);
      ASSERT(t);
      ASSERT_CONTAINS(t, "download");
      if (two) ASSERT_CONTAINS(t, "0.05 s");
      uint8_t *png;
      size_t plen;
      int w, h;
      st_error err;
      st_error_clear(&err);
      ASSERT_EQ(chart_png(&ch, &png, &plen, &w, &h, &err), 0);
      ASSERT(plen > 100 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
      ASSERT(w > 200 && h > 50);
      free(png);
      free(t);
      free(svg);
    }
  return 0;
}

/* The reference rule for pkl_latin1_prefix: one byte at a time. */
static size_t latin1_prefix_ref(const uint8_t *p, size_t n, size_t *ncp) {
  size_t i = 0, c = 0;
  while (i < n) {
    if (p[i] < 0x80) i++;
    else if ((p[i] == 0xc2 || p[i] == 0xc3) && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0xbf) i += 2;
    else break;
    c++;
  }
  *ncp = c;
  return i;
}

/* Latin-1 text in UTF-8 (what _codecs.encode(str, 'latin1') reads): the
 * 16-byte paths against the reference, at every length and alignment up
 * to a few blocks, with and without a defect planted at each position. */
TEST_IMPL(latin1_utf8_paths) {
  enum { MAXCP = 80 };
  static const uint8_t bad[] = {0x80, 0xbf, 0xc0, 0xc1, 0xc4, 0xe2, 0xff, 0x41};
  uint8_t cps[MAXCP], src[2 * MAXCP + 1 + 32], *base, out[MAXCP + 16];
  uint32_t seed = 12345;
  int checked = 0;
  for (int round = 0; round < 400; round++) {
    size_t ncp = (size_t)round % MAXCP;
    int density = round / MAXCP; /* 0: all ASCII .. 4: all above 0x7f */
    base = src + round % 16;     /* every alignment */
    size_t n = 0;
    for (size_t k = 0; k < ncp; k++) {
      seed = seed * 1103515245u + 12345u;
      uint8_t cp = (uint8_t)(seed >> 16);
      if ((int)(seed >> 8 & 3) >= density) cp &= 0x7f;
      else cp |= 0x80;
      cps[k] = cp;
      if (cp < 0x80) base[n++] = cp;
      else {
        base[n++] = (uint8_t)(0xc0 | cp >> 6);
        base[n++] = (uint8_t)(0x80 | (cp & 0x3f));
      }
    }
    size_t got_cp, want_cp;
    ASSERT_EQ(pkl_latin1_prefix(base, n, &got_cp), n);
    ASSERT_EQ(got_cp, ncp);
    memset(out, 0xee, sizeof out);
    pkl_latin1_narrow(base, n, out, ncp);
    ASSERT(memcmp(out, cps, ncp) == 0);
    ASSERT_EQ(out[ncp], 0xee); /* nothing written past dst_len */
    checked++;
    /* a defect at each position: the prefix stops where the reference does */
    for (size_t at = 0; at < n; at++) {
      for (size_t b = 0; b < sizeof bad; b++) {
        uint8_t keep = base[at];
        if (keep == bad[b]) continue;
        base[at] = bad[b];
        size_t got = pkl_latin1_prefix(base, n, &got_cp);
        size_t want = latin1_prefix_ref(base, n, &want_cp);
        ASSERT_EQ(got, want);
        ASSERT_EQ(got_cp, want_cp);
        base[at] = keep;
      }
    }
    /* cut short: a lead left open at the end is not in the prefix */
    if (n) {
      size_t got = pkl_latin1_prefix(base, n - 1, &got_cp);
      ASSERT_EQ(got, latin1_prefix_ref(base, n - 1, &want_cp));
      ASSERT_EQ(got_cp, want_cp);
    }
  }
  ASSERT_EQ(checked, 400);
  /* a large block, as a pixel array is: every byte value many times */
  size_t big = 1 << 20, bn = 0;
  uint8_t *bcp = malloc(big), *bsrc = malloc(2 * big), *bout = malloc(big + 1);
  ASSERT(bcp && bsrc && bout);
  for (size_t k = 0; k < big; k++) {
    seed = seed * 1103515245u + 12345u;
    bcp[k] = (uint8_t)(seed >> 16);
    if (bcp[k] < 0x80) bsrc[bn++] = bcp[k];
    else {
      bsrc[bn++] = (uint8_t)(0xc0 | bcp[k] >> 6);
      bsrc[bn++] = (uint8_t)(0x80 | (bcp[k] & 0x3f));
    }
  }
  size_t bcount;
  ASSERT_EQ(pkl_latin1_prefix(bsrc, bn, &bcount), bn);
  ASSERT_EQ(bcount, big);
  bout[big] = 0xee;
  pkl_latin1_narrow(bsrc, bn, bout, big);
  ASSERT(memcmp(bout, bcp, big) == 0);
  ASSERT_EQ(bout[big], 0xee);
  free(bcp);
  free(bsrc);
  free(bout);
  return 0;
}
