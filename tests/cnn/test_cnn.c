/*
 * test_cnn.c -- tests of the trainer core (links only stages/train/cnn*.c and the
 * CUDA backend): gradient check against finite differences for every layer,
 * the SGD rule, initialisation ranges, the safetensors layout, thread
 * counts agreeing, and the CUDA backend against the CPU backend (skipped
 * without a device). Prints "cnn-tests: N passed, N failed, N skipped".
 */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cnn_emu_test.h"
#include "train/cnn_int.h"

extern char **environ;

/* make CUDA_EMU=no leaves the CUDA emulation out: its tests skip. */
#ifdef CNN_TEST_NO_EMU
#define EMU_BACKEND() NULL
#else
#define EMU_BACKEND() cnn_cuda_emu_backend()
#endif
#define NO_EMU "built without the CUDA emulation (make CUDA_EMU=no)"

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

/* ---- the CUDA backend against the CPU backend ----------------------------
 * The same initial weights and batch order on both, for each run of
 * CNN_TEST_RUNS (batch x steps, default "4x50,128x10"; CNN_TEST_SEED=S picks
 * the weights (S), images (S + 1) and batch order (S + 2), default 123):
 * every step's loss within 1e-4, the weights within 1e-4 halfway and at the
 * end; halfway, as an interrupt does, the weights are read, two refused
 * steps (an index past the bound images, a batch over the configured size)
 * must leave them as they were, and training goes on from them; then
 * k_eval's predictions with the CPU's final weights equal the CPU's. */
enum { VS_N = 512, VS_MAX_RUNS = 8, VS_MAX_STEPS = 1000 };

static int vs_runs(int bs[VS_MAX_RUNS], int steps[VS_MAX_RUNS], char *msg, size_t cap) {
  const char *e = getenv("CNN_TEST_RUNS");
  if (!e || !*e) e = "4x50,128x10";
  int n = 0;
  for (const char *p = e; *p;) {
    char *end;
    long b = strtol(p, &end, 10);
    if (end == p || *end != 'x') break;
    p = end + 1;
    long k = strtol(p, &end, 10);
    if (end == p || b < 1 || b > VS_N || k < 2 || k > VS_MAX_STEPS || n == VS_MAX_RUNS) break;
    bs[n] = (int)b;
    steps[n++] = (int)k;
    p = end;
    if (*p == ',') p++;
    else if (*p) break;
    if (!*p) return n;
  }
  snprintf(msg, cap, "CNN_TEST_RUNS=%s: expected up to %d of BATCHxSTEPS, comma-separated, batch 1..%d,"
           " steps 2..%d", e, VS_MAX_RUNS, VS_N, VS_MAX_STEPS);
  return -1;
}

static double max_diff(const float *a, const float *b, size_t n) {
  double w = 0;
  for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - (double)b[i]));
  return w;
}

static void vs_cpu(const cnn_backend *cu) {
  const cnn_backend *cpu = &cnn_cpu_backend;
  int bss[VS_MAX_RUNS], stepss[VS_MAX_RUNS];
  char msg[256];
  int nruns = vs_runs(bss, stepss, msg, sizeof msg);
  CHECK(nruns > 0, "%s", msg);
  const char *se = getenv("CNN_TEST_SEED");
  uint64_t seed = se && *se ? strtoull(se, NULL, 0) : 123;
  printf("  seed %llu, %s\n", (unsigned long long)seed, cu->name);
  static uint8_t px[VS_N * CNN_IMAGE];
  uint8_t lab[VS_N], pc[VS_N], pg[VS_N];
  make_data(px, lab, VS_N, seed + 1);
  uint32_t perm[VS_N], bad[VS_N + 1];
  static float lc[VS_MAX_STEPS], lg[VS_MAX_STEPS];
  float *P = malloc(sizeof(float) * CNN_NPARAM), *wc = malloc(sizeof(float) * CNN_NPARAM),
        *wg = malloc(sizeof(float) * CNN_NPARAM), *again = malloc(sizeof(float) * CNN_NPARAM);
  void *a = NULL, *b = NULL;
  for (int r = 0; r < nruns; r++) {
    int bs = bss[r], steps = stepss[r], half = steps / 2;
    cnn_init_params(P, seed);
    cnn_config cfg = {bs, 0.01f, 0.9f, 2};
    a = cpu->init(&cfg, P, msg, sizeof msg);
    CHECK(a, "cpu: %s", msg);
    b = cu->init(&cfg, P, msg, sizeof msg);
    CHECK(b, "%s: %s", cu->name, msg);
    CHECK(cpu->bind(a, px, lab, VS_N) == 0 && cu->bind(b, px, lab, VS_N) == 0, "bind");
    cnn_rng rng = {seed + 2};
    cnn_shuffle(&rng, perm, VS_N);
    double worst = 0, mid = 0;
    for (int s = 0; s < steps; s++) {
      if (s == half) { /* an interrupt: read the weights, refuse two steps */
        CHECK(cpu->get(a, wc) == 0 && cu->get(b, wg) == 0, "get after %d steps", s);
        mid = max_diff(wc, wg, CNN_NPARAM);
        CHECK(mid < 1e-4, "batch %d: weights after %d steps differ by %g", bs, s, mid);
        memcpy(bad, perm, sizeof(uint32_t) * (size_t)bs);
        bad[bs - 1] = VS_N; /* past the bound images */
        CHECK(cpu->step(a, bad, bs, NULL) != 0 && cu->step(b, bad, bs, NULL) != 0,
              "a step with image %d of %d bound was taken", VS_N, VS_N);
        CHECK(bs == VS_N || (cpu->step(a, perm, bs + 1, NULL) != 0 && cu->step(b, perm, bs + 1, NULL) != 0),
              "a step of %d images on a batch size of %d was taken", bs + 1, bs);
        CHECK(cu->get(b, again) == 0 && memcmp(again, wg, sizeof(float) * CNN_NPARAM) == 0,
              "%s: the refused steps changed the weights", cu->name);
        CHECK(cpu->get(a, again) == 0 && memcmp(again, wc, sizeof(float) * CNN_NPARAM) == 0,
              "cpu: the refused steps changed the weights");
      }
      const uint32_t *idx = perm + (size_t)(s * bs) % (VS_N - (size_t)bs + 1);
      CHECK(cpu->step(a, idx, bs, &lc[s]) == 0, "cpu step %d", s);
      CHECK(cu->step(b, idx, bs, &lg[s]) == 0, "%s step %d", cu->name, s);
      worst = fmax(worst, fabs((double)lc[s] - (double)lg[s]));
      CHECK(fabs((double)lc[s] - (double)lg[s]) < 1e-4, "batch %d step %d: loss %.7f vs cpu %.7f",
            bs, s, lg[s], lc[s]);
    }
    CHECK(cpu->get(a, wc) == 0 && cu->get(b, wg) == 0, "get");
    double ww = max_diff(wc, wg, CNN_NPARAM), moved = max_diff(wc, P, CNN_NPARAM);
    /* the same weights on both: the same predictions */
    CHECK(cu->set(b, wc) == 0, "set");
    CHECK(cpu->eval(a, px, VS_N, pc) == 0 && cu->eval(b, px, VS_N, pg) == 0, "eval");
    int same = 0;
    for (int i = 0; i < VS_N; i++) same += pc[i] == pg[i];
    printf("  batch %3d x %3d steps: loss max diff %.2e, weights max diff %.2e after %d step%s, "
           "%.2e at the end (training moved them up to %.2e); predictions %d of %d equal\n",
           bs, steps, worst, mid, half, half == 1 ? "" : "s", ww, moved, same, VS_N);
    CHECK(ww < 1e-4, "batch %d: final weights differ by %g", bs, ww);
    CHECK(same == VS_N, "batch %d: %d of %d predictions differ", bs, VS_N - same, VS_N);
    cpu->free(a);
    cu->free(b);
    a = b = NULL;
  }
  free(P); free(wc); free(wg); free(again);
}

/* On a CUDA device (skipped without one; tools/gpu-check.sh runs it). */
static void test_cuda_vs_cpu(void) {
  const cnn_backend *cu = cnn_cuda_backend();
  if (!cu) SKIP("built without CUDA (make CUDA=yes on a machine with nvcc)");
  char why[256];
  if (!cu->available(why, sizeof why)) SKIP("no CUDA device: %s", why);
  vs_cpu(cu);
}

/* The same kernels on the CPU (stages/train/cnn_cuda_emu.h), on every machine. */
static void test_cuda_emu_vs_cpu(void) {
  if (!EMU_BACKEND()) SKIP(NO_EMU);
  vs_cpu(EMU_BACKEND());
}

#ifndef CNN_TEST_NO_EMU
/* Runs this binary as `--emu-fault WHAT`; its stderr into out. The exit
 * status as waitpid gives it, or -1. */
static int run_fault(const char *what, char *out, size_t cap) {
  int fd[2];
  if (pipe(fd) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fd[1], 2);
  posix_spawn_file_actions_addclose(&fa, fd[0]);
  char *argv[] = {(char *)"test-cnn", (char *)"--emu-fault", (char *)what, NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fd[1]);
  size_t len = 0;
  for (;;) {
    ssize_t k = read(fd[0], out + len, cap - 1 - len);
    if (k <= 0) break;
    len += (size_t)k;
  }
  out[len] = 0;
  close(fd[0]);
  int status = -1;
  if (rc != 0 || waitpid(pid, &status, 0) != pid) return -1;
  return status;
}

/* The emulation's own checks: what cnn_cuda.cu's kernels do not exercise,
 * and the faults it must stop on. */
static void test_cuda_emu_checks(void) {
  static const char *const self[] = {"blocks", "async", "errors"};
  char msg[256];
  for (int i = 0; i < 3; i++) CHECK(cnn_emu_selftest(self[i], msg, sizeof msg) == 0, "%s: %s", self[i], msg);
  static const struct { const char *what, *says; } faults[] = {
      {"divergent", "every thread of a block must reach the same __syncthreads"},
      {"host-pointer", "is not device memory"},
  };
  for (int i = 0; i < 2; i++) {
    static char out[65536];
    int st = run_fault(faults[i].what, out, sizeof out);
    CHECK(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(out, faults[i].says),
          "%s: status %d, stderr: %s", faults[i].what, st, out);
    printf("  %s: %.*s", faults[i].what, (int)strcspn(out, "\n") + 1, out);
  }
}
#else
static void test_cuda_emu_checks(void) { SKIP(NO_EMU); }
#endif

/* ---- --epoch: the training speed on one backend -------------------------
 * test-cnn --epoch cpu|cuda|cuda-emu BATCH [N]: one epoch over N synthetic
 * images (default 50000, the size of CIFAR-10's train split) in a shuffled
 * order at batch size BATCH, lr 0.001, momentum 0.9, then an evaluation of
 * min(N, 10000) more; prints one line with images/s (tools/gpu-check.sh reads it).
 * Exit 0, 1 when a step or the evaluation failed, 2 for bad arguments or
 * a backend that is not there. */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int epoch_main(int argc, char **argv) {
  const cnn_backend *be = NULL;
  if (argc >= 4 && strcmp(argv[2], "cpu") == 0) be = &cnn_cpu_backend;
  if (argc >= 4 && strcmp(argv[2], "cuda") == 0) be = cnn_cuda_backend();
  if (argc >= 4 && strcmp(argv[2], "cuda-emu") == 0) be = EMU_BACKEND();
  char *end = NULL;
  long bs = argc >= 4 ? strtol(argv[3], &end, 10) : 0;
  long n = argc >= 5 ? strtol(argv[4], NULL, 10) : 50000;
  if (argc < 4 || argc > 5 || (!be && strcmp(argv[2], "cuda") != 0 && strcmp(argv[2], "cuda-emu") != 0) ||
      !end || *end || bs < 1 || bs > 4096 || n < 1 || n > 1000000) {
    fprintf(stderr, "usage: test-cnn --epoch cpu|cuda|cuda-emu BATCH(1-4096) [IMAGES(1-1000000)]\n");
    return 2;
  }
  char why[256] = "";
  if (!be || !be->available(why, sizeof why)) {
    fprintf(stderr, "epoch: %s: %s\n", argv[2],
            be ? why : argv[2][4] ? NO_EMU : "built without CUDA (make CUDA=yes with nvcc)");
    return 2;
  }
  const int NTEST = n < 10000 ? (int)n : 10000;
  size_t total = (size_t)n + (size_t)NTEST;
  uint8_t *px = malloc(total * CNN_IMAGE), *lab = malloc(total), *pred = malloc((size_t)NTEST);
  uint32_t *perm = malloc(sizeof(uint32_t) * (size_t)n);
  float *P = malloc(sizeof(float) * CNN_NPARAM);
  if (!px || !lab || !pred || !perm || !P) {
    fprintf(stderr, "epoch: out of memory for %zu images\n", total);
    return 2;
  }
  cnn_rng r = {1};
  for (size_t i = 0; i < total * CNN_IMAGE; i += 8) {
    uint64_t v = cnn_rng_next(&r);
    memcpy(px + i, &v, 8); /* CNN_IMAGE is a multiple of 8 */
  }
  for (size_t i = 0; i < total; i++) lab[i] = (uint8_t)(cnn_rng_next(&r) % CNN_CLASSES);
  cnn_init_params(P, 1);
  cnn_config cfg = {(int)bs, 0.001f, 0.9f, 0};
  char msg[256];
  void *st = be->init(&cfg, P, msg, sizeof msg);
  if (!st) {
    fprintf(stderr, "epoch: %s: %s\n", be->name, msg);
    return 2;
  }
  int rc = be->bind(st, px, lab, (size_t)n) == 0 ? 0 : 1;
  cnn_rng sh = {cnn_shuffle_seed(1)};
  cnn_shuffle(&sh, perm, (size_t)n);
  float first = 0, last = 0;
  double t0 = now_s();
  for (long lo = 0; lo < n && rc == 0; lo += bs) {
    int k = (int)(n - lo < bs ? n - lo : bs);
    rc = be->step(st, perm + lo, k, &last);
    if (lo == 0) first = last;
  }
  double t1 = now_s();
  if (rc == 0) rc = be->eval(st, px + (size_t)n * CNN_IMAGE, (size_t)NTEST, pred) == 0 ? 0 : 1;
  double t2 = now_s();
  if (rc == 0)
    printf("epoch %s batch %ld: %ld images in %.2f s, %.0f images/s; eval %d in %.2f s, %.0f images/s;"
           " loss %.4f -> %.4f; %s\n",
           be->name, bs, n, t1 - t0, (double)n / (t1 - t0), NTEST, t2 - t1, NTEST / (t2 - t1), first,
           last, be->describe(st));
  else
    fprintf(stderr, "epoch: %s batch %ld: a step or the evaluation failed\n", be->name, bs);
  be->free(st);
  free(px); free(lab); free(pred); free(perm); free(P);
  return rc;
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
    {"cuda_emu_checks", test_cuda_emu_checks},
    {"cuda_emu_vs_cpu", test_cuda_emu_vs_cpu},
};

int main(int argc, char **argv) {
#ifndef CNN_TEST_NO_EMU
  if (argc == 3 && strcmp(argv[1], "--emu-fault") == 0) { /* test_cuda_emu_checks */
    cnn_emu_fault(argv[2]);
    return 0;
  }
#endif
  if (argc >= 2 && strcmp(argv[1], "--epoch") == 0) return epoch_main(argc, argv);
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
