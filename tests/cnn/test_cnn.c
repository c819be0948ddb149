/*
 * test_cnn.c -- tests of the trainer core (links only stages/train/cnn*.c and the
 * CUDA backend): gradient check against finite differences for every layer,
 * the SGD rule, initialisation ranges, the safetensors layout, thread
 * counts agreeing, and the CUDA backend against the CPU backend (skipped
 * without a device). Prints "cnn-tests: N passed, N failed, N skipped".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/cnn_int.h"

static int failed_now;
static char skip_why[512];
#define CHECK(cond, ...)                                           \
  do {                                                             \
    if (!(cond)) {                                                 \
      printf("  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
      printf(__VA_ARGS__);                                         \
      printf("\n");                                                \
      failed_now = 1;                                              \
      return;                                                      \
    }                                                              \
  } while (0)
#define SKIP(...)                                                  \
  do {                                                             \
    snprintf(skip_why, sizeof skip_why, __VA_ARGS__);              \
    return;                                                        \
  } while (0)

/* Random images and labels. */
static void make_data(uint8_t *px, uint8_t *lab, size_t n, uint64_t seed) {
  cnn_rng r = {seed};
  for (size_t i = 0; i < n * CNN_IMAGE; i++) px[i] = (uint8_t)(cnn_rng_next(&r) >> 56);
  for (size_t i = 0; i < n; i++) lab[i] = (uint8_t)(cnn_rng_next(&r) % 10);
}

static void normalise(const uint8_t *px, size_t n, float *x) {
  float tab[256];
  cnn_norm_table(tab);
  for (size_t i = 0; i < n * CNN_IMAGE; i++) x[i] = tab[px[i]];
}

static void test_norm_table(void) {
  float t[256];
  cnn_norm_table(t);
  int differ = 0;
  for (int p = 0; p < 256; p++) {
    CHECK(t[p] == (float)p / 127.5f - 1.0f, "p=%d %.9g vs %.9g", p, t[p], (float)p / 127.5f - 1.0f);
    differ += t[p] != (float)p * (2.0f / 255.0f) - 1.0f;
  }
  CHECK(t[0] == -1.0f && t[255] == 1.0f, "ends");
  CHECK(differ > 0, "the multiplied form should differ somewhere");
}

static void test_grad_check(void) {
  enum { N = 3 };
  uint8_t *px = malloc(N * CNN_IMAGE), lab[N];
  float *x = malloc(sizeof(float) * N * CNN_IMAGE);
  float *P = malloc(sizeof(float) * CNN_NPARAM), *G = malloc(sizeof(float) * CNN_NPARAM);
  make_data(px, lab, N, 7);
  normalise(px, N, x);
  cnn_init_params(P, 11);
  cnn_config cfg = {N, 0.001f, 0.9f, 2};
  char msg[256];
  void *st = cnn_cpu_backend.init(&cfg, P, msg, sizeof msg);
  CHECK(st, "%s", msg);
  cnn_cpu_backend.bind(st, px, lab, N);
  uint32_t idx[N] = {0, 1, 2};
  float loss;
  CHECK(cnn_cpu_grad(st, idx, N, G, &loss) == 0, "grad");
  double ref = cnn_ref_loss(P, x, lab, N);
  CHECK(fabs(loss - ref) < 1e-5, "loss %.8f vs reference %.8f", loss, ref);
  cnn_rng r = {3};
  int checked = 0, bad = 0;
  for (int t = 0; t < CNN_NTENSORS; t++) {
    const cnn_tensor *T = &cnn_tensors[t];
    double worst = 0;
    for (int k = 0; k < 12; k++) {
      size_t i = T->offset + (size_t)(cnn_rng_next(&r) % T->count);
      float keep = P[i];
      const float h = 1e-5f;
      P[i] = keep + h;
      double lp = cnn_ref_loss(P, x, lab, N);
      P[i] = keep - h;
      double lm = cnn_ref_loss(P, x, lab, N);
      P[i] = keep;
      double fd = (lp - lm) / ((double)(keep + h) - (double)(keep - h));
      double e = fabs(fd - G[i]) / fmax(1e-3, fabs(fd) + fabs(G[i]));
      if (e > worst) worst = e;
      if (e > 1e-3) {
        printf("  %s[%zu]: analytic %.7g, finite difference %.7g\n", T->name, i - T->offset, G[i],
               fd);
        bad++;
      }
      checked++;
    }
    printf("  %-13s worst relative error %.2e\n", T->name, worst);
  }
  cnn_cpu_backend.free(st);
  free(px);
  free(x);
  free(P);
  free(G);
  /* a ReLU kink inside the difference step can spoil one sample */
  CHECK(bad <= 1, "%d of %d gradient entries disagree", bad, checked);
}

static void test_sgd_rule(void) {
  float p[3] = {1, 2, 3}, v[3] = {9, 9, 9}, g[3] = {0.5f, -1, 2};
  cnn_sgd_update(p, v, g, 3, 0.1f, 0.9f, 1);
  CHECK(v[0] == 0.5f && v[1] == -1 && v[2] == 2, "first step: v = g");
  CHECK(p[0] == 1 - 0.1f * 0.5f && p[1] == 2 + 0.1f * 1, "first step p");
  float g2[3] = {1, 1, 1};
  cnn_sgd_update(p, v, g2, 3, 0.1f, 0.9f, 0);
  CHECK(fabsf(v[0] - (0.9f * 0.5f + 1)) < 1e-7f, "v = mu v + g: %g", v[0]);
  CHECK(fabsf(p[0] - (1 - 0.05f - 0.1f * 1.45f)) < 1e-6f, "p: %g", p[0]);

  /* the backend's step does the same with its own gradient */
  enum { N = 4 };
  uint8_t *px = malloc(N * CNN_IMAGE), lab[N];
  make_data(px, lab, N, 5);
  float *P = malloc(sizeof(float) * CNN_NPARAM), *G = malloc(sizeof(float) * CNN_NPARAM),
        *G2 = malloc(sizeof(float) * CNN_NPARAM), *Q = malloc(sizeof(float) * CNN_NPARAM),
        *E = malloc(sizeof(float) * CNN_NPARAM), *V = malloc(sizeof(float) * CNN_NPARAM);
  cnn_init_params(P, 1);
  cnn_config cfg = {N, 0.01f, 0.9f, 1};
  char msg[256];
  void *st = cnn_cpu_backend.init(&cfg, P, msg, sizeof msg);
  CHECK(st, "%s", msg);
  cnn_cpu_backend.bind(st, px, lab, N);
  uint32_t a[2] = {0, 1}, b[2] = {2, 3};
  float l1, l2;
  cnn_cpu_grad(st, a, 2, G, NULL);
  cnn_cpu_backend.step(st, a, 2, &l1);
  cnn_cpu_grad(st, b, 2, G2, NULL);
  cnn_cpu_backend.step(st, b, 2, &l2);
  cnn_cpu_backend.get(st, Q);
  memcpy(E, P, sizeof(float) * CNN_NPARAM);
  cnn_sgd_update(E, V, G, CNN_NPARAM, 0.01f, 0.9f, 1);
  cnn_sgd_update(E, V, G2, CNN_NPARAM, 0.01f, 0.9f, 0);
  double worst = 0;
  for (size_t i = 0; i < CNN_NPARAM; i++) worst = fmax(worst, fabs(E[i] - Q[i]));
  cnn_cpu_backend.free(st);
  free(px); free(P); free(G); free(G2); free(Q); free(E); free(V);
  CHECK(worst < 1e-7, "backend steps differ from the rule by %g", worst);
}

static void test_init_ranges(void) {
  float *P = malloc(sizeof(float) * CNN_NPARAM), *Q = malloc(sizeof(float) * CNN_NPARAM);
  cnn_init_params(P, 42);
  cnn_init_params(Q, 42);
  CHECK(memcmp(P, Q, sizeof(float) * CNN_NPARAM) == 0, "same seed, same weights");
  cnn_init_params(Q, 43);
  CHECK(memcmp(P, Q, sizeof(float) * CNN_NPARAM) != 0, "another seed, other weights");
  size_t total = 0;
  for (int t = 0; t < CNN_NTENSORS; t++) {
    const cnn_tensor *T = &cnn_tensors[t];
    size_t c = 1;
    for (int d = 0; d < T->ndim; d++) c *= (size_t)T->shape[d];
    CHECK(c == T->count && T->offset == total, "%s layout", T->name);
    total += c;
    double b = 1.0 / sqrt(T->fan_in), lo = 1, hi = -1, mean = 0;
    for (size_t i = 0; i < T->count; i++) {
      double v = P[T->offset + i];
      CHECK(fabs(v) <= b, "%s[%zu] = %g outside +-%g", T->name, i, v, b);
      lo = fmin(lo, v);
      hi = fmax(hi, v);
      mean += v;
    }
    mean /= (double)T->count;
    if (T->count >= 400) {
      CHECK(lo < -0.9 * b && hi > 0.9 * b, "%s spans [%g, %g] of +-%g", T->name, lo, hi, b);
      CHECK(fabs(mean) < 0.1 * b, "%s mean %g", T->name, mean);
    }
  }
  CHECK(total == CNN_NPARAM, "62006 parameters: %zu", total);
  free(P);
  free(Q);
}

static void test_shuffle(void) {
  enum { N = 1000 };
  uint32_t p[N], q[N];
  int seen[N] = {0};
  cnn_rng r = {cnn_shuffle_seed(0)}, r2 = {cnn_shuffle_seed(0)};
  cnn_shuffle(&r, p, N);
  cnn_shuffle(&r2, q, N);
  CHECK(memcmp(p, q, sizeof p) == 0, "deterministic");
  for (int i = 0; i < N; i++) seen[p[i]]++;
  for (int i = 0; i < N; i++) CHECK(seen[i] == 1, "not a permutation at %d", i);
  cnn_shuffle(&r, q, N);
  CHECK(memcmp(p, q, sizeof p) != 0, "the next epoch differs");
  /* splitmix64's published first output for state 0 */
  cnn_rng z = {0};
  uint64_t first = cnn_rng_next(&z);
  CHECK(first == 0xE220A8397B1DCDAFull, "splitmix64(0) = %llx", (unsigned long long)first);
}

static void test_safetensors_layout(void) {
  float *P = malloc(sizeof(float) * CNN_NPARAM);
  cnn_init_params(P, 9);
  char path[] = "/tmp/cnn-test-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  close(fd);
  char msg[256];
  CHECK(cnn_safetensors_write(path, P, msg, sizeof msg) == 0, "%s", msg);
  FILE *f = fopen(path, "rb");
  CHECK(f, "reopen");
  static uint8_t buf[400000];
  size_t len = fread(buf, 1, sizeof buf, f);
  fclose(f);
  unlink(path);
  uint64_t h = 0;
  for (int i = 0; i < 8; i++) h |= (uint64_t)buf[i] << (8 * i);
  CHECK(h % 8 == 0 && h < 2048, "header length %llu", (unsigned long long)h);
  CHECK(len == 8 + h + CNN_NPARAM * 4, "file size %zu for header %llu", len, (unsigned long long)h);
  char hdr[2048];
  memcpy(hdr, buf + 8, h);
  hdr[h] = 0;
  CHECK(strstr(hdr, "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[6,3,5,5],\"data_offsets\":[0,1800]}"),
        "%s", hdr);
  CHECK(strstr(hdr, "\"fc3.bias\":{\"dtype\":\"F32\",\"shape\":[10],\"data_offsets\":[247984,248024]}"),
        "%s", hdr);
  for (size_t i = 0; i < CNN_NPARAM; i++) {
    uint32_t u = (uint32_t)buf[8 + h + 4 * i] | (uint32_t)buf[9 + h + 4 * i] << 8 |
                 (uint32_t)buf[10 + h + 4 * i] << 16 | (uint32_t)buf[11 + h + 4 * i] << 24;
    float v;
    memcpy(&v, &u, 4);
    CHECK(v == P[i], "value %zu", i);
  }
  CHECK(cnn_safetensors_write("/nonexistent-dir/x.safetensors", P, msg, sizeof msg) != 0 &&
            strstr(msg, "nonexistent-dir"),
        "error names the path: %s", msg);
  free(P);
}

/* Runs `steps` steps of batch `bs` on backend b; losses and final weights. */
static int run_steps(const cnn_backend *b, int threads, int bs, int steps, const uint8_t *px,
                     const uint8_t *lab, size_t n, float *losses, float *out, char *msg,
                     size_t cap) {
  float *P = malloc(sizeof(float) * CNN_NPARAM);
  cnn_init_params(P, 123);
  cnn_config cfg = {bs, 0.01f, 0.9f, threads};
  void *st = b->init(&cfg, P, msg, cap);
  free(P);
  if (!st) return -1;
  b->bind(st, px, lab, n);
  uint32_t *perm = malloc(sizeof(uint32_t) * n);
  cnn_rng r = {cnn_shuffle_seed(1)};
  cnn_shuffle(&r, perm, n);
  int rc = 0;
  for (int s = 0; s < steps && rc == 0; s++)
    rc = b->step(st, perm + (size_t)(s * bs) % (n - (size_t)bs + 1), bs, &losses[s]);
  if (rc == 0) rc = b->get(st, out);
  b->free(st);
  free(perm);
  return rc;
}

static void test_threads_agree(void) {
  enum { N = 256, STEPS = 20, BS = 24 }; /* 8 images a thread at least */
  uint8_t *px = malloc(N * CNN_IMAGE), lab[N];
  make_data(px, lab, N, 77);
  float l1[STEPS], l2[STEPS];
  float *w1 = malloc(sizeof(float) * CNN_NPARAM), *w2 = malloc(sizeof(float) * CNN_NPARAM);
  char msg[256];
  CHECK(run_steps(&cnn_cpu_backend, 1, BS, STEPS, px, lab, N, l1, w1, msg, sizeof msg) == 0, "%s", msg);
  CHECK(run_steps(&cnn_cpu_backend, 3, BS, STEPS, px, lab, N, l2, w2, msg, sizeof msg) == 0, "%s", msg);
  for (int s = 0; s < STEPS; s++) CHECK(fabsf(l1[s] - l2[s]) < 1e-5f, "step %d: %g vs %g", s, l1[s], l2[s]);
  double worst = 0;
  for (size_t i = 0; i < CNN_NPARAM; i++) worst = fmax(worst, fabs(w1[i] - w2[i]));
  CHECK(worst < 1e-5, "weights differ by %g", worst);
  CHECK(l1[STEPS - 1] < l1[0], "the loss went down: %g -> %g", l1[0], l1[STEPS - 1]);
  free(px); free(w1); free(w2);
}

static void test_eval_matches_ref(void) {
  enum { N = 16 };
  uint8_t *px = malloc(N * CNN_IMAGE), lab[N], pred[N];
  make_data(px, lab, N, 3);
  float *P = malloc(sizeof(float) * CNN_NPARAM), *x = malloc(sizeof(float) * CNN_IMAGE);
  cnn_init_params(P, 5);
  cnn_config cfg = {4, 0.001f, 0.9f, 2};
  char msg[256];
  void *st = cnn_cpu_backend.init(&cfg, P, msg, sizeof msg);
  CHECK(st, "%s", msg);
  CHECK(cnn_cpu_backend.eval(st, px, N, pred) == 0, "eval");
  cnn_cpu_backend.free(st);
  for (int i = 0; i < N; i++) {
    /* the predicted class has the smallest reference loss */
    normalise(px + (size_t)i * CNN_IMAGE, 1, x);
    uint8_t k = pred[i];
    double lk = cnn_ref_loss(P, x, &k, 1);
    for (uint8_t c = 0; c < 10; c++) {
      double lc = cnn_ref_loss(P, x, &c, 1);
      CHECK(lk <= lc + 1e-6, "image %d: class %d beats predicted %d", i, c, k);
    }
  }
  free(px); free(P); free(x);
}

/* Every kernel set this CPU runs (generic, avx2, avx512) gives the generic
 * one's gradient and loss, with the images split over two threads. */
static void test_isa_agree(void) {
  enum { N = 16 };
  uint8_t *px = malloc(N * CNN_IMAGE), lab[N];
  make_data(px, lab, N, 21);
  float *P = malloc(sizeof(float) * CNN_NPARAM), *G0 = malloc(sizeof(float) * CNN_NPARAM),
        *G = malloc(sizeof(float) * CNN_NPARAM);
  cnn_init_params(P, 13);
  uint32_t idx[N];
  for (int i = 0; i < N; i++) idx[i] = (uint32_t)(N - 1 - i);
  const char *keep = cnn_cpu_isa();
  static const char *const isas[] = {"generic", "avx2", "avx512"};
  float l0 = 0;
  int ran = 0;
  char msg[256] = "";
  for (int k = 0; k < 3; k++) {
    if (cnn_cpu_use_isa(isas[k]) != 0) {
      printf("  %s: not on this CPU\n", isas[k]);
      continue;
    }
    cnn_config cfg = {N, 0.01f, 0.9f, 2};
    void *st = cnn_cpu_backend.init(&cfg, P, msg, sizeof msg);
    CHECK(st, "%s", msg);
    cnn_cpu_backend.bind(st, px, lab, N);
    float l;
    CHECK(cnn_cpu_grad(st, idx, N, k ? G : G0, &l) == 0, "%s grad", isas[k]);
    cnn_cpu_backend.free(st);
    if (k == 0) {
      l0 = l;
      ran++;
      continue;
    }
    double big = 0, worst = 0;
    for (size_t i = 0; i < CNN_NPARAM; i++) {
      big = fmax(big, fabs(G0[i]));
      worst = fmax(worst, fabs(G[i] - G0[i]));
    }
    printf("  %s: loss %.7f vs %.7f, gradient max diff %.2e of max %.2e\n", isas[k], l, l0,
           worst, big);
    CHECK(fabsf(l - l0) < 1e-5f, "%s loss %g vs generic %g", isas[k], l, l0);
    CHECK(worst < 1e-4 * big, "%s gradient differs by %g (max %g)", isas[k], worst, big);
    ran++;
  }
  cnn_cpu_use_isa(keep);
  free(px); free(P); free(G0); free(G);
  CHECK(ran >= 1, "no kernel set ran");
}

static void test_cuda_vs_cpu(void) {
  const cnn_backend *cu = cnn_cuda_backend();
  if (!cu) SKIP("built without CUDA (make CUDA=yes on a machine with nvcc)");
  char why[256];
  if (!cu->available(why, sizeof why)) SKIP("no CUDA device: %s", why);
  enum { N = 512, STEPS = 50 };
  uint8_t *px = malloc(N * CNN_IMAGE), lab[N];
  make_data(px, lab, N, 99);
  static const int sizes[] = {4, 32, 128};
  float lc[STEPS], lg[STEPS];
  float *wc = malloc(sizeof(float) * CNN_NPARAM), *wg = malloc(sizeof(float) * CNN_NPARAM);
  for (int z = 0; z < 3; z++) {
    int bs = sizes[z];
    char msg[256];
    CHECK(run_steps(&cnn_cpu_backend, 2, bs, STEPS, px, lab, N, lc, wc, msg, sizeof msg) == 0, "%s", msg);
    CHECK(run_steps(cu, 0, bs, STEPS, px, lab, N, lg, wg, msg, sizeof msg) == 0, "cuda: %s", msg);
    double worst = 0;
    for (int s = 0; s < STEPS; s++) worst = fmax(worst, fabs(lc[s] - lg[s]));
    double ww = 0;
    for (size_t i = 0; i < CNN_NPARAM; i++) ww = fmax(ww, fabs(wc[i] - wg[i]));
    printf("  batch %3d: loss max diff %.2e, weights max diff %.2e\n", bs, worst, ww);
    CHECK(worst < 1e-4, "batch %d: losses differ by %g", bs, worst);
    CHECK(ww < 1e-3, "batch %d: weights differ by %g", bs, ww);
    /* evaluation agrees too */
    uint8_t pc[N], pg[N];
    float *P = malloc(sizeof(float) * CNN_NPARAM);
    cnn_init_params(P, 8);
    cnn_config cfg = {bs, 0.01f, 0.9f, 2};
    void *a = cnn_cpu_backend.init(&cfg, P, msg, sizeof msg), *b = cu->init(&cfg, P, msg, sizeof msg);
    CHECK(a && b, "%s", msg);
    cnn_cpu_backend.eval(a, px, N, pc);
    cu->eval(b, px, N, pg);
    int same = 0;
    for (int i = 0; i < N; i++) same += pc[i] == pg[i];
    cnn_cpu_backend.free(a);
    cu->free(b);
    free(P);
    CHECK(same >= N - 2, "predictions agree on %d of %d", same, N);
  }
  free(px); free(wc); free(wg);
}

typedef struct { const char *name; void (*fn)(void); } tcase;
static const tcase cases[] = {
    {"norm_table", test_norm_table},
    {"grad_check", test_grad_check},
    {"sgd_rule", test_sgd_rule},
    {"init_ranges", test_init_ranges},
    {"shuffle", test_shuffle},
    {"safetensors_layout", test_safetensors_layout},
    {"threads_agree", test_threads_agree},
    {"eval_matches_ref", test_eval_matches_ref},
    {"isa_agree", test_isa_agree},
    {"cuda_vs_cpu", test_cuda_vs_cpu},
};

int main(int argc, char **argv) {
  int pass = 0, fail = 0, skip = 0;
  printf("cnn: cpu kernels %s\n", cnn_cpu_isa());
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (argc > 1 && !strstr(cases[i].name, argv[1])) continue;
    failed_now = 0;
    skip_why[0] = 0;
    printf("cnn %s\n", cases[i].name);
    fflush(stdout);
    cases[i].fn();
    if (failed_now) {
      fail++;
      printf("  -> FAIL\n");
    } else if (skip_why[0]) {
      skip++;
      printf("  -> SKIP: %s\n", skip_why);
    } else {
      pass++;
      printf("  -> ok\n");
    }
  }
  printf("cnn-tests: %d passed, %d failed, %d skipped\n", pass, fail, skip);
  return fail ? 1 : 0;
}
