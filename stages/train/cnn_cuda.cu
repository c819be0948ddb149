/*
 * cnn_cuda.cu -- the CUDA backend: the CPU backend's math, mirrored.
 *
 * A step is two kernels: k_sample (one block per image: forward, loss and
 * the whole gradient of that image into its own gradient slot, every entry
 * assigned) and k_reduce_sgd (one thread per parameter: the batch sum of
 * the slots, then torch's SGD rule; block 0 also sums the losses). The
 * whole train split is copied to the device once (bind); a step uploads
 * only its indices. Chosen only when cudaGetDeviceCount finds a device.
 *
 * The tests also compile this file as host C++ with -DCNN_CUDA_EMU, under
 * cnn_cuda_emu.h, and run its kernels on the CPU against the CPU backend;
 * for that, every launch goes through CNN_LAUNCH and every CUDA call is
 * one that header gives (docs/cuda.md).
 */
#ifdef CNN_CUDA_EMU
#include "cnn_cuda_emu.h" /* the kernels on the CPU, for the tests */
#else
#include <cuda_runtime.h>
/* Every launch goes through this macro, so that the emulation can run it. */
#define CNN_LAUNCH(k, grid, block, stream, ...) k<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#endif
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cnn_int.h"
}

namespace {

/* The parameters (and each image's gradient slot) in state_dict order, as
 * cnn.c's cnn_tensors lays them out. Arrays, not offsets: their bounds are
 * checked when the emulation runs under UBSan. */
struct net {
  float w1[6 * 3 * 25], b1[6], w2[16 * 6 * 25], b2[16], w3[120 * 400], b3[120], w4[84 * 120],
      b4[84], w5[10 * 84], b5[10];
};
static_assert(sizeof(net) == sizeof(float) * CNN_NPARAM &&
                  offsetof(net, w3) == sizeof(float) * 2872 &&
                  offsetof(net, b5) == sizeof(float) * 61996,
              "net is the layout of cnn_tensors");

/* One image's activations and gradients. */
struct ws {
  float x[3072], c1[4704], p1[1176], c2[1600], p2[400], h1[120], h2[84], lg[10];
  int a1[1176], a2[400];
  float dlg[10], dh2[84], dh1[120], dp2[400], dc2[1600], dp1[1176], dc1[4704];
};

__constant__ float c_tab[256];

/* The layers, one image per block: every thread of the block calls each of
 * them, and each but conv_wgrad (which writes only the gradient slot) ends
 * in __syncthreads. Shapes are template arguments, so a call with arrays of
 * other sizes does not compile. */
#define FOR_THREADS(q, n) for (int q = threadIdx.x; q < (n); q += blockDim.x)

/* out = ReLU(5x5 convolution of C planes W x W into O planes (W-4)^2). */
template <int C, int W, int O>
__device__ __forceinline__ void conv_relu(const float (&in)[C * W * W],
                                          const float (&wt)[O * C * 25], const float (&bias)[O],
                                          float (&out)[O * (W - 4) * (W - 4)]) {
  constexpr int Ho = W - 4;
  FOR_THREADS(q, O * Ho * Ho) {
    int o = q / (Ho * Ho), y = q / Ho % Ho, x = q % Ho;
    float s = bias[o];
    for (int c = 0; c < C; c++)
      for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
          s += wt[((o * C + c) * 5 + i) * 5 + j] * in[(c * W + y + i) * W + x + j];
    out[q] = s > 0.f ? s : 0.f;
  }
  __syncthreads();
}

/* 2x2 max pool of C planes H x H; arg[q]: where in c the window's first
 * maximum is (row-major order, as the CPU backend and PyTorch pick it). */
template <int C, int H>
__device__ __forceinline__ void pool(const float (&c)[C * H * H], float (&out)[C * H * H / 4],
                                     int (&arg)[C * H * H / 4]) {
  constexpr int Hp = H / 2;
  FOR_THREADS(q, C * Hp * Hp) {
    int o = q / (Hp * Hp), y = q / Hp % Hp, x = q % Hp;
    int base = (o * H + 2 * y) * H + 2 * x, bi = base;
    const int cand[3] = {base + 1, base + H, base + H + 1};
    for (int k = 0; k < 3; k++)
      if (c[cand[k]] > c[bi]) bi = cand[k];
    out[q] = c[bi];
    arg[q] = bi;
  }
  __syncthreads();
}

/* out[o] = bias[o] + wt[o] . in; ReLU if relu. */
template <int I, int O>
__device__ __forceinline__ void fc(const float (&wt)[O * I], const float (&bias)[O],
                                   const float (&in)[I], bool relu, float (&out)[O]) {
  FOR_THREADS(o, O) {
    float s = bias[o];
    for (int i = 0; i < I; i++) s += wt[o * I + i] * in[i];
    out[o] = !relu || s > 0.f ? s : 0.f;
  }
  __syncthreads();
}

/* fc backward: gw[o][i] = d[o] * in[i], gb = d, din[i] = sum_o d[o] wt[o][i]
 * (0 where in, a ReLU's output, is 0, if relu). */
template <int I, int O>
__device__ __forceinline__ void fc_back(const float (&wt)[O * I], const float (&d)[O],
                                        const float (&in)[I], bool relu, float (&gw)[O * I],
                                        float (&gb)[O], float (&din)[I]) {
  FOR_THREADS(q, O * I) gw[q] = d[q / I] * in[q % I];
  FOR_THREADS(o, O) gb[o] = d[o];
  FOR_THREADS(i, I) {
    float s = 0;
    for (int o = 0; o < O; o++) s += d[o] * wt[o * I + i];
    din[i] = !relu || in[i] > 0.f ? s : 0.f;
  }
  __syncthreads();
}

/* Pool and ReLU backward: dc[q] = dp of q's window where q is the window's
 * winner and c[q] > 0, else 0. */
template <int C, int H>
__device__ __forceinline__ void pool_back(const float (&c)[C * H * H],
                                          const int (&arg)[C * H * H / 4],
                                          const float (&dp)[C * H * H / 4],
                                          float (&dc)[C * H * H]) {
  constexpr int Hp = H / 2;
  FOR_THREADS(q, C * H * H) {
    int p = (q / (H * H) * Hp + q / H % H / 2) * Hp + q % H / 2;
    dc[q] = arg[p] == q && c[q] > 0.f ? dp[p] : 0.f;
  }
  __syncthreads();
}

/* Conv weight and bias gradients from the output gradient d and the input. */
template <int C, int W, int O>
__device__ __forceinline__ void conv_wgrad(const float (&d)[O * (W - 4) * (W - 4)],
                                           const float (&in)[C * W * W], float (&gw)[O * C * 25],
                                           float (&gb)[O]) {
  constexpr int Ho = W - 4;
  FOR_THREADS(q, O * C * 25) {
    int o = q / (C * 25), c = q / 25 % C, i = q / 5 % 5, j = q % 5;
    float s = 0;
    for (int y = 0; y < Ho; y++)
      for (int x = 0; x < Ho; x++)
        s += d[(o * Ho + y) * Ho + x] * in[(c * W + y + i) * W + x + j];
    gw[q] = s;
  }
  FOR_THREADS(o, O) {
    float s = 0;
    for (int p = 0; p < Ho * Ho; p++) s += d[o * Ho * Ho + p];
    gb[o] = s;
  }
}

__device__ void forward(const net *P, ws *w, const uint8_t *px) {
  FOR_THREADS(i, 3072) w->x[i] = c_tab[px[i]];
  __syncthreads();
  conv_relu<3, 32, 6>(w->x, P->w1, P->b1, w->c1);
  pool<6, 28>(w->c1, w->p1, w->a1);
  conv_relu<6, 14, 16>(w->p1, P->w2, P->b2, w->c2);
  pool<16, 10>(w->c2, w->p2, w->a2);
  fc(P->w3, P->b3, w->p2, true, w->h1);
  fc(P->w4, P->b4, w->h1, true, w->h2);
  fc(P->w5, P->b5, w->h2, false, w->lg);
}

/* One block per image b of the step: forward, loss, and the image's whole
 * gradient (times scale) into its slot G[b], every entry assigned. */
__global__ void k_sample(const net *P, net *G, ws *wss, const uint8_t *pix, const uint8_t *lab,
                         const uint32_t *idx, float scale, float *losses) {
  int b = blockIdx.x;
  ws *w = wss + b;
  net *g = G + b;
  uint32_t im = idx[b];
  forward(P, w, pix + (size_t)im * CNN_IMAGE);
  if (threadIdx.x == 0) { /* softmax cross-entropy */
    int label = lab[im];
    float m = w->lg[0], e[10], se = 0;
    for (int k = 1; k < 10; k++) m = w->lg[k] > m ? w->lg[k] : m;
    for (int k = 0; k < 10; k++) { e[k] = expf(w->lg[k] - m); se += e[k]; }
    losses[b] = m + logf(se) - w->lg[label];
    for (int k = 0; k < 10; k++) w->dlg[k] = (e[k] / se - (k == label ? 1.f : 0.f)) * scale;
  }
  __syncthreads();
  fc_back(P->w5, w->dlg, w->h2, true, g->w5, g->b5, w->dh2);
  fc_back(P->w4, w->dh2, w->h1, true, g->w4, g->b4, w->dh1);
  fc_back(P->w3, w->dh1, w->p2, false, g->w3, g->b3, w->dp2);
  pool_back<16, 10>(w->c2, w->a2, w->dp2, w->dc2);
  conv_wgrad<6, 14, 16>(w->dc2, w->p1, g->w2, g->b2);
  FOR_THREADS(q, 1176) { /* conv2's input gradient */
    int c = q / 196, yy = q / 14 % 14, xx = q % 14;
    float s = 0;
    for (int o = 0; o < 16; o++)
      for (int i = yy > 9 ? yy - 9 : 0; i < 5 && i <= yy; i++)
        for (int j = xx > 9 ? xx - 9 : 0; j < 5 && j <= xx; j++)
          s += P->w2[((o * 6 + c) * 5 + i) * 5 + j] *
               w->dc2[(o * 10 + yy - i) * 10 + xx - j];
    w->dp1[q] = s;
  }
  __syncthreads();
  pool_back<6, 28>(w->c1, w->a1, w->dp1, w->dc1);
  conv_wgrad<3, 32, 6>(w->dc1, w->x, g->w1, g->b1);
}

__global__ void k_reduce_sgd(float *P, float *V, const float *G, int n, float lr, float mu,
                             int first, const float *losses, float *loss_out) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i == 0) {
    float s = 0;
    for (int b = 0; b < n; b++) s += losses[b];
    *loss_out = s / (float)n;
  }
  if (i >= CNN_NPARAM) return;
  float g = 0;
  for (int b = 0; b < n; b++) g += G[(size_t)b * CNN_NPARAM + i];
  float v = (first || mu == 0.f) ? g : mu * V[i] + g;
  V[i] = v;
  P[i] -= lr * v;
}

__global__ void k_eval(const net *P, ws *wss, const uint8_t *pix, uint8_t *pred) {
  ws *w = wss + blockIdx.x;
  forward(P, w, pix + (size_t)blockIdx.x * CNN_IMAGE);
  if (threadIdx.x == 0) {
    int best = 0;
    for (int k = 1; k < 10; k++)
      if (w->lg[k] > w->lg[best]) best = k;
    pred[blockIdx.x] = (uint8_t)best;
  }
}

constexpr size_t EVAL_CHUNK = 2048; /* images per k_eval launch */

struct cu_state {
  cnn_config cfg;
  int first, maxb;
  float *P, *V, *losses, *loss_out;
  float *G; /* maxb gradient slots of CNN_NPARAM */
  ws *w;
  uint8_t *pix, *lab, *epix, *epred;
  const uint8_t *labels; /* the bound labels on the host, n_bound of them */
  size_t n_bound;
  uint32_t *idx, *h_idx;
  float *h_loss;
  cudaStream_t s;
  char desc[256]; /* the device's name */
};

int cu_fail(cudaError_t e, char *msg, size_t cap, const char *what) {
  if (e == cudaSuccess) return 0;
  cnn_msg(msg, cap, "%s: %s", what, cudaGetErrorString(e));
  return -1;
}

int cu_available(char *why, size_t cap) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cnn_msg(why, cap, "no CUDA device answered (cudaGetDeviceCount: %s)",
            e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return 0;
  }
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, 0) == cudaSuccess)
    cnn_msg(why, cap, "CUDA device 0 answered: %s", p.name);
  else
    cnn_msg(why, cap, "CUDA device 0 answered");
  return 1;
}

void cu_free(void *st) {
  cu_state *s = (cu_state *)st;
  if (!s) return;
  cudaFree(s->P); cudaFree(s->V); cudaFree(s->G); cudaFree(s->losses); cudaFree(s->loss_out);
  cudaFree(s->w); cudaFree(s->pix); cudaFree(s->lab); cudaFree(s->epix); cudaFree(s->epred);
  cudaFree(s->idx);
  cudaFreeHost(s->h_idx);
  cudaFreeHost(s->h_loss);
  if (s->s) cudaStreamDestroy(s->s);
  free(s);
}

void *cu_init(const cnn_config *cfg, const float *params, char *msg, size_t cap) {
  cu_state *s = (cu_state *)calloc(1, sizeof *s);
  if (!s) { cnn_msg(msg, cap, "out of memory"); return NULL; }
  s->cfg = *cfg;
  s->first = 1;
  s->maxb = cfg->batch > 0 ? cfg->batch : 1;
  size_t nw = (size_t)s->maxb > EVAL_CHUNK ? (size_t)s->maxb : EVAL_CHUNK;
  float tab[256];
  cnn_norm_table(tab);
  if (cu_fail(cudaStreamCreate(&s->s), msg, cap, "cudaStreamCreate") ||
      cu_fail(cudaMalloc(&s->P, sizeof(float) * CNN_NPARAM), msg, cap, "cudaMalloc") ||
      cu_fail(cudaMalloc(&s->V, sizeof(float) * CNN_NPARAM), msg, cap, "cudaMalloc") ||
      cu_fail(cudaMalloc(&s->G, sizeof(float) * CNN_NPARAM * (size_t)s->maxb), msg, cap, "cudaMalloc") ||
      cu_fail(cudaMalloc(&s->losses, sizeof(float) * (size_t)s->maxb), msg, cap, "cudaMalloc") ||
      cu_fail(cudaMalloc(&s->loss_out, sizeof(float)), msg, cap, "cudaMalloc") ||
      cu_fail(cudaMalloc(&s->w, sizeof(ws) * nw), msg, cap, "cudaMalloc") ||
      cu_fail(cudaMalloc(&s->epix, (size_t)EVAL_CHUNK * CNN_IMAGE), msg, cap, "cudaMalloc") ||
      cu_fail(cudaMalloc(&s->epred, EVAL_CHUNK), msg, cap, "cudaMalloc") ||
      cu_fail(cudaMalloc(&s->idx, sizeof(uint32_t) * (size_t)s->maxb), msg, cap, "cudaMalloc") ||
      cu_fail(cudaMallocHost(&s->h_idx, sizeof(uint32_t) * (size_t)s->maxb), msg, cap, "cudaMallocHost") ||
      cu_fail(cudaMallocHost(&s->h_loss, sizeof(float)), msg, cap, "cudaMallocHost") ||
      cu_fail(cudaMemcpyToSymbol(c_tab, tab, sizeof tab), msg, cap, "cudaMemcpyToSymbol") ||
      cu_fail(cudaMemcpy(s->P, params, sizeof(float) * CNN_NPARAM, cudaMemcpyHostToDevice), msg, cap, "cudaMemcpy") ||
      cu_fail(cudaMemset(s->V, 0, sizeof(float) * CNN_NPARAM), msg, cap, "cudaMemset")) {
    cu_free(s);
    return NULL;
  }
  cudaDeviceProp p;
  snprintf(s->desc, sizeof s->desc, "%s", cudaGetDeviceProperties(&p, 0) == cudaSuccess ? p.name : "device 0");
  return s;
}

int cu_bind(void *st, const uint8_t *pixels, const uint8_t *labels, size_t n) {
  cu_state *s = (cu_state *)st;
  cudaFree(s->pix);
  cudaFree(s->lab);
  s->pix = s->lab = NULL;
  s->labels = NULL;
  s->n_bound = 0;
  if (cudaMalloc(&s->pix, n * CNN_IMAGE) != cudaSuccess || cudaMalloc(&s->lab, n) != cudaSuccess ||
      cudaMemcpy(s->pix, pixels, n * CNN_IMAGE, cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaMemcpy(s->lab, labels, n, cudaMemcpyHostToDevice) != cudaSuccess)
    return -1;
  s->labels = labels; /* the caller keeps them until the next bind: checked per step */
  s->n_bound = n;
  return 0;
}

int cu_step(void *st, const uint32_t *idx, int n, float *loss) {
  cu_state *s = (cu_state *)st;
  if (cnn_batch_check(s->labels, s->n_bound, idx, n, s->maxb) != 0) return -1;
  (void)cudaGetLastError(); /* not this step's */
  memcpy(s->h_idx, idx, sizeof(uint32_t) * (size_t)n);
  cudaMemcpyAsync(s->idx, s->h_idx, sizeof(uint32_t) * (size_t)n, cudaMemcpyHostToDevice, s->s);
  CNN_LAUNCH(k_sample, n, 256, s->s, (const net *)s->P, (net *)s->G, s->w, s->pix, s->lab, s->idx,
             1.0f / (float)n, s->losses);
  /* a launch that failed (resources, configuration) ran nothing: the SGD
   * kernel must not apply the slots of an earlier step */
  if (cudaGetLastError() != cudaSuccess) return -1;
  CNN_LAUNCH(k_reduce_sgd, (CNN_NPARAM + 255) / 256, 256, s->s, s->P, s->V, s->G, n, s->cfg.lr,
             s->cfg.momentum, s->first, s->losses, s->loss_out);
  if (cudaGetLastError() != cudaSuccess) return -1;
  cudaMemcpyAsync(s->h_loss, s->loss_out, sizeof(float), cudaMemcpyDeviceToHost, s->s);
  if (cudaStreamSynchronize(s->s) != cudaSuccess) return -1;
  s->first = 0;
  if (loss) *loss = *s->h_loss;
  return 0;
}

int cu_eval(void *st, const uint8_t *pixels, size_t n, uint8_t *pred) {
  cu_state *s = (cu_state *)st;
  for (size_t lo = 0; lo < n; lo += EVAL_CHUNK) {
    size_t k = n - lo < EVAL_CHUNK ? n - lo : EVAL_CHUNK;
    if (cudaMemcpy(s->epix, pixels + lo * CNN_IMAGE, k * CNN_IMAGE, cudaMemcpyHostToDevice) != cudaSuccess)
      return -1;
    (void)cudaGetLastError();
    CNN_LAUNCH(k_eval, (unsigned)k, 256, 0, (const net *)s->P, s->w, s->epix, s->epred);
    if (cudaGetLastError() != cudaSuccess ||
        cudaMemcpy(pred + lo, s->epred, k, cudaMemcpyDeviceToHost) != cudaSuccess)
      return -1;
  }
  return 0;
}

int cu_get(void *st, float *params) {
  cu_state *s = (cu_state *)st;
  cudaStreamSynchronize(s->s);
  return cudaMemcpy(params, s->P, sizeof(float) * CNN_NPARAM, cudaMemcpyDeviceToHost) == cudaSuccess ? 0 : -1;
}

int cu_set(void *st, const float *params) {
  cu_state *s = (cu_state *)st;
  s->first = 1;
  return cudaMemcpy(s->P, params, sizeof(float) * CNN_NPARAM, cudaMemcpyHostToDevice) == cudaSuccess &&
                 cudaMemset(s->V, 0, sizeof(float) * CNN_NPARAM) == cudaSuccess
             ? 0
             : -1;
}

const char *cu_describe(void *st) { return ((cu_state *)st)->desc; }

const cnn_backend cuda_backend = {
    "cuda", cu_available, cu_init, cu_bind, cu_step, cu_eval, cu_get, cu_set, cu_describe, cu_free,
};

}  // namespace

#ifdef CNN_CUDA_EMU
extern "C" const cnn_backend *cnn_cuda_emu_backend(void) { return &cuda_backend; }
#else
extern "C" const cnn_backend *cnn_cuda_backend(void) { return &cuda_backend; }
#endif
