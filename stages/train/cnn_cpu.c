/*
 * cnn_cpu.c -- the CPU backend: im2col + vectorised row GEMMs per image,
 * images of a step split over worker threads (each with its own gradient
 * buffer), then the threads sum the gradients and apply SGD on their own
 * slices of the parameters. The kernels are compiled for generic x86-64,
 * AVX2+FMA and AVX-512 and picked at run time (__builtin_cpu_supports);
 * nothing needs AVX2 at build time. No allocation inside a step.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3", "fp-contract=fast")
#endif
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnn_int.h"

enum {
  OFF_W1 = 0, OFF_B1 = 450, OFF_W2 = 456, OFF_B2 = 2856, OFF_W3 = 2872, OFF_B3 = 50872,
  OFF_W4 = 50992, OFF_B4 = 61072, OFF_W5 = 61156, OFF_B5 = 61996
};

#define CNN_MAX_THREADS 64

/* Buffer geometry of the kernels (cnn_cpu_kern.h checks each tile against
 * it): conv1 writes planes of 28 rows of 32 (stride S1), conv2 planes of
 * 10 rows of 14 (stride S2); the gradient planes of conv2 have D_FRONT
 * zeros before them (stride DS2). */
#define ROUND_UP(n, m) (((n) + (m) - 1) / (m) * (m))
#define X_LEN (3072 + 64)
#define S1 928
#define P1_LEN (1176 + 72)
#define S2 144
#define D_FRONT 80
#define DS2 304
#define DP1S 208
#define K_MAXOB 8
#define K_MAXNV 4
#define K_SEQ4(j) (j), (j) + 1, (j) + 2, (j) + 3
#define K_EVN4(j) (j), (j) + 2, (j) + 4, (j) + 6
#if defined(__clang__) || __GNUC__ >= 12
#define K_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define K_SHUF(a, b, ...) __builtin_shuffle(a, b, (__typeof__(K(vi))){__VA_ARGS__})
#endif
/* A pool winner's gradient target when the ReLU cut it: an index into the
 * two gradient planes' buffers that no kernel reads. */
#define TRASH (6 * S1)

typedef struct cnn_ws {
  float x[X_LEN];       /* the image, 3 planes of 32 x 32, then zeros */
  float c1[6 * S1];     /* conv1 before the ReLU */
  float p1[P1_LEN];     /* pooled, 6 planes of 14 x 14, then zeros */
  float c2[16 * S2 + 32]; /* conv2 before the ReLU */
  float p2[400 + 16];
  int a1[1176 + 16], a2[400 + 16]; /* each pooled value's gradient target, or TRASH */
  float h1[120], h2[84], lg[10];
  float dlg[10], dh2[84], dh1[120], dp2[400];
  float d2[TRASH + 16];  /* conv2's output gradient: zero between images */
  float dp1[6 * DP1S];  /* conv2's input gradient */
  float d1[TRASH + 16];  /* conv1's output gradient (6 planes of S1), the same */
  float gv1[450 * 16], gv2[2400 * 16]; /* conv weight gradients, per lane */
} cnn_ws;

/* Generic: SSE2 on x86-64, NEON on aarch64 (16 registers assumed). */
#define KW 4
#define T1_OB 3
#define T1_NV 3
#define T2_OB 4
#define T2_NV 2
#define WG1_OB 2
#define WG2_OB 2
#define DG_NV 2
#define K(name) name##_generic
#define KATTR
#include "cnn_cpu_kern.h"
#undef K
#undef KATTR
#undef KW

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86_CLONES 1
#define KW 8
#define K(name) name##_avx2
#define KATTR __attribute__((target("avx2,fma")))
#include "cnn_cpu_kern.h"
#undef K
#undef KATTR
#undef KW
#undef T1_OB
#undef T1_NV
#undef T2_OB
#undef T2_NV
#undef WG1_OB
#undef WG2_OB
#undef DG_NV
/* AVX-512: 32 registers, tiles of 24 accumulators */
#define KW 16
#define T1_OB 6
#define T1_NV 4
#define T2_OB 8
#define T2_NV 3
#define WG1_OB 3
#define WG2_OB 4
#define DG_NV 3
#define K(name) name##_avx512
#define KATTR __attribute__((target("avx512f,avx512vl,avx2,fma")))
#include "cnn_cpu_kern.h"
#undef K
#undef KATTR
#undef KW
#endif

typedef double (*run_fn)(const float *, float *, cnn_ws *, const float *, const uint8_t *,
                         const uint8_t *, const uint32_t *, int, float);
typedef void (*pred_fn)(const float *, cnn_ws *, const float *, const uint8_t *, size_t,
                        uint8_t *);
typedef void (*sgd_fn)(float *, float *, float *const *, int, int, int, float, float, int);

static const char *isa_name = "generic";
static run_fn isa_run = run_samples_generic;
static pred_fn isa_pred = predict_generic;
static sgd_fn isa_sgd = reduce_sgd_generic;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

/* Switches the kernels to level 0 (generic), 1 (avx2) or 2 (avx512) if
 * this CPU has it; 0 or -1. */
static int isa_use(int level) {
  if (level == 0) {
    isa_name = "generic";
    isa_run = run_samples_generic;
    isa_pred = predict_generic;
    isa_sgd = reduce_sgd_generic;
    return 0;
  }
#ifdef HAVE_X86_CLONES
  __builtin_cpu_init();
  if (level == 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    isa_name = "avx2";
    isa_run = run_samples_avx2;
    isa_pred = predict_avx2;
    isa_sgd = reduce_sgd_avx2;
    return 0;
  }
  if (level == 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma")) {
    isa_name = "avx512";
    isa_run = run_samples_avx512;
    isa_pred = predict_avx512;
    isa_sgd = reduce_sgd_avx512;
    return 0;
  }
#endif
  return -1;
}

static int isa_level(const char *name) {
  return strcmp(name, "generic") == 0 ? 0 : strcmp(name, "avx2") == 0 ? 1 : 2;
}

static void isa_pick(void) {
  const char *cap = getenv("PK_CNN_ISA");
  for (int level = cap ? isa_level(cap) : 2; level > 0; level--)
    if (isa_use(level) == 0) return;
  isa_use(0);
}

int cnn_cpu_use_isa(const char *name) {
  pthread_once(&isa_once, isa_pick);
  if (strcmp(name, "generic") != 0 && strcmp(name, "avx2") != 0 && strcmp(name, "avx512") != 0)
    return -1;
  return isa_use(isa_level(name));
}

const char *cnn_cpu_isa(void) {
  pthread_once(&isa_once, isa_pick);
  return isa_name;
}

/* ---- a small pool: run job(tid) on every thread, wait for all ---------- */
typedef struct cpu_state cpu_state;
typedef void (*job_fn)(cpu_state *s, int tid);

struct cpu_state {
  cnn_config cfg;
  float *P, *V, **G; /* parameters, momentum, per-thread gradients (zero between steps) */
  int first;
  cnn_ws **ws;
  float tab[256];
  const uint8_t *pixels, *labels;
  size_t n_bound;
  char desc[96];
  /* the current job */
  const uint32_t *idx;
  int n;
  double part_loss[CNN_MAX_THREADS];
  const uint8_t *epix;
  size_t en;
  uint8_t *epred;
  int active; /* threads taking part in this job */
  /* pool */
  int nthreads;
  pthread_t th[CNN_MAX_THREADS];
  pthread_mutex_t mu;
  pthread_cond_t go, done;
  unsigned gen;
  int pending, quit;
  job_fn job;
};

static void *worker(void *arg) {
  void **a = arg;
  cpu_state *s = a[0];
  int tid = (int)(intptr_t)a[1];
  free(a);
  unsigned seen = 0;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (s->gen == seen && !s->quit) pthread_cond_wait(&s->go, &s->mu);
    if (s->quit) {
      pthread_mutex_unlock(&s->mu);
      return NULL;
    }
    seen = s->gen;
    job_fn job = s->job;
    int act = tid < s->active;
    pthread_mutex_unlock(&s->mu);
    if (act) job(s, tid);
    pthread_mutex_lock(&s->mu);
    if (--s->pending == 0) pthread_cond_signal(&s->done);
    pthread_mutex_unlock(&s->mu);
  }
}

static void pool_run(cpu_state *s, job_fn job, int active) {
  if (active <= 1 || s->nthreads <= 1) {
    s->active = 1;
    job(s, 0);
    return;
  }
  pthread_mutex_lock(&s->mu);
  s->job = job;
  s->active = active;
  s->pending = s->nthreads - 1;
  s->gen++;
  pthread_cond_broadcast(&s->go);
  pthread_mutex_unlock(&s->mu);
  job(s, 0);
  pthread_mutex_lock(&s->mu);
  while (s->pending) pthread_cond_wait(&s->done, &s->mu);
  pthread_mutex_unlock(&s->mu);
}

static void range_of(int n, int parts, int t, int *lo, int *hi) {
  *lo = (int)((long long)n * t / parts);
  *hi = (int)((long long)n * (t + 1) / parts);
}

static void job_grad(cpu_state *s, int tid) {
  int lo, hi;
  range_of(s->n, s->active, tid, &lo, &hi);
  s->part_loss[tid] = hi > lo ? isa_run(s->P, s->G[tid], s->ws[tid], s->tab, s->pixels,
                                        s->labels, s->idx + lo, hi - lo, 1.0f / (float)s->n)
                              : 0.0;
}

static void job_reduce_sgd(cpu_state *s, int tid) {
  int lo, hi;
  range_of(CNN_NPARAM, s->active, tid, &lo, &hi);
  isa_sgd(s->P, s->V, s->G, s->active, lo, hi, s->cfg.lr, s->cfg.momentum,
          s->first || s->cfg.momentum == 0.0f);
}

static void job_reduce(cpu_state *s, int tid) {
  int lo, hi;
  range_of(CNN_NPARAM, s->active, tid, &lo, &hi);
  for (int t = 1; t < s->active; t++)
    for (int i = lo; i < hi; i++) {
      s->G[0][i] += s->G[t][i];
      s->G[t][i] = 0.0f;
    }
}

static void job_eval(cpu_state *s, int tid) {
  int lo, hi;
  range_of((int)s->en, s->active, tid, &lo, &hi);
  if (hi > lo)
    isa_pred(s->P, s->ws[tid], s->tab, s->epix + (size_t)lo * CNN_IMAGE, (size_t)(hi - lo),
             s->epred + lo);
}

/* Threads for a step of n images: STEP_MIN_PER_THREAD images per thread
 * at least: waking a thread, zeroing its gradient buffer and adding it
 * into the others cost about as much as a few images, so a small batch
 * (the default of 4) runs on the calling thread alone, with no wake-ups. */
#define STEP_MIN_PER_THREAD 8
static int step_threads(const cpu_state *s, int n) {
  int t = n / STEP_MIN_PER_THREAD;
  return t < 1 ? 1 : t < s->nthreads ? t : s->nthreads;
}

static int cpu_available(char *why, size_t cap) {
  cnn_msg(why, cap, "always available");
  return 1;
}

static void cpu_free(void *st);

static void *cpu_init(const cnn_config *cfg, const float *params, char *msg, size_t cap) {
  cpu_state *s = calloc(1, sizeof *s);
  if (!s) {
    cnn_msg(msg, cap, "out of memory");
    return NULL;
  }
  s->cfg = *cfg;
  int nt = cfg->threads;
  if (nt <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    nt = c > 0 ? (int)c : 1;
  }
  if (nt > CNN_MAX_THREADS) nt = CNN_MAX_THREADS;
  s->nthreads = nt;
  s->first = 1;
  cnn_norm_table(s->tab);
  s->P = aligned_alloc(64, sizeof(float) * 62016);
  s->V = aligned_alloc(64, sizeof(float) * 62016);
  s->G = calloc((size_t)nt, sizeof *s->G);
  s->ws = calloc((size_t)nt, sizeof *s->ws);
  int ok = s->P && s->V && s->G && s->ws;
  for (int t = 0; ok && t < nt; t++) {
    s->G[t] = aligned_alloc(64, sizeof(float) * 62016);
    if (s->G[t]) memset(s->G[t], 0, sizeof(float) * 62016); /* zero between steps */
    s->ws[t] = aligned_alloc(64, (sizeof(cnn_ws) + 63) / 64 * 64);
    ok = s->G[t] && s->ws[t];
    if (ok) memset(s->ws[t], 0, sizeof(cnn_ws)); /* the pads and gradient planes */
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->go, NULL);
  pthread_cond_init(&s->done, NULL);
  int started = 1;
  for (int t = 1; ok && t < nt; t++) {
    void **a = malloc(2 * sizeof *a);
    if (!a) {
      ok = 0;
      break;
    }
    a[0] = s;
    a[1] = (void *)(intptr_t)t;
    if (pthread_create(&s->th[t], NULL, worker, a) != 0) {
      free(a);
      ok = 0;
      break;
    }
    started++;
  }
  s->nthreads = started;
  if (!ok) {
    cnn_msg(msg, cap, "out of memory or threads");
    cpu_free(s);
    return NULL;
  }
  memcpy(s->P, params, sizeof(float) * CNN_NPARAM);
  memset(s->V, 0, sizeof(float) * CNN_NPARAM);
  snprintf(s->desc, sizeof s->desc, "%d thread%s, %s", s->nthreads, s->nthreads == 1 ? "" : "s",
           cnn_cpu_isa());
  return s;
}

static int cpu_bind(void *st, const uint8_t *pixels, const uint8_t *labels, size_t n) {
  cpu_state *s = st;
  s->pixels = pixels;
  s->labels = labels;
  s->n_bound = n;
  return 0;
}

/* Forward and backward over the batch on nt threads, each into its own
 * gradient; returns the summed loss (-1 for a bad index). */
static double grad_pass(cpu_state *s, const uint32_t *idx, int n, int *nt) {
  if (cnn_batch_check(s->labels, s->n_bound, idx, n, s->cfg.batch > 0 ? s->cfg.batch : INT_MAX))
    return -1;
  s->idx = idx;
  s->n = n;
  *nt = step_threads(s, n);
  pool_run(s, job_grad, *nt);
  double l = 0;
  for (int t = 0; t < *nt; t++) l += s->part_loss[t];
  return l;
}

static int cpu_step(void *st, const uint32_t *idx, int n, float *loss) {
  cpu_state *s = st;
  int nt;
  double l = grad_pass(s, idx, n, &nt);
  if (l < 0) return -1;
  pool_run(s, job_reduce_sgd, nt);
  s->first = 0;
  if (loss) *loss = (float)(l / n);
  return 0;
}

int cnn_cpu_grad(void *st, const uint32_t *idx, int n, float *grad, float *loss) {
  cpu_state *s = st;
  int nt;
  double l = grad_pass(s, idx, n, &nt);
  if (l < 0) return -1;
  pool_run(s, job_reduce, nt);
  memcpy(grad, s->G[0], sizeof(float) * CNN_NPARAM);
  memset(s->G[0], 0, sizeof(float) * CNN_NPARAM);
  if (loss) *loss = (float)(l / n);
  return 0;
}

static int cpu_eval(void *st, const uint8_t *pixels, size_t n, uint8_t *pred) {
  cpu_state *s = st;
  if (n == 0) return 0;
  s->epix = pixels;
  s->en = n;
  s->epred = pred;
  pool_run(s, job_eval, n < (size_t)s->nthreads ? (int)n : s->nthreads);
  return 0;
}

static int cpu_get(void *st, float *params) {
  memcpy(params, ((cpu_state *)st)->P, sizeof(float) * CNN_NPARAM);
  return 0;
}

static int cpu_set(void *st, const float *params) {
  cpu_state *s = st;
  memcpy(s->P, params, sizeof(float) * CNN_NPARAM);
  memset(s->V, 0, sizeof(float) * CNN_NPARAM);
  s->first = 1;
  return 0;
}

static const char *cpu_describe(void *st) { return ((cpu_state *)st)->desc; }

static void cpu_free(void *st) {
  cpu_state *s = st;
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->quit = 1;
  pthread_cond_broadcast(&s->go);
  pthread_mutex_unlock(&s->mu);
  for (int t = 1; t < s->nthreads; t++) pthread_join(s->th[t], NULL);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->go);
  pthread_cond_destroy(&s->done);
  for (int t = 0; s->G && t < s->nthreads; t++) free(s->G[t]);
  for (int t = 0; s->ws && t < s->nthreads; t++) free(s->ws[t]);
  free(s->G);
  free(s->ws);
  free(s->P);
  free(s->V);
  free(s);
}

const cnn_backend cnn_cpu_backend = {
    "cpu", cpu_available, cpu_init, cpu_bind, cpu_step, cpu_eval,
    cpu_get, cpu_set, cpu_describe, cpu_free,
};
