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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "cnn_int.h"
}

namespace {

enum {
  OFF_W1 = 0, OFF_B1 = 450, OFF_W2 = 456, OFF_B2 = 2856, OFF_W3 = 2872, OFF_B3 = 50872,
  OFF_W4 = 50992, OFF_B4 = 61072, OFF_W5 = 61156, OFF_B5 = 61996
};

struct ws {
  float x[3072], c1[4704], p1[1176], c2[1600], p2[400], h1[120], h2[84], lg[10];
  int a1[1176], a2[400];
  float dlg[10], dh2[84], dh1[120], dp2[400], dc2[1600], dp1[1176], dc1[4704];
};

__constant__ float c_tab[256];

__device__ void forward(const float *P, ws *w, const uint8_t *px) {
  int t = threadIdx.x, nt = blockDim.x;
  for (int i = t; i < 3072; i += nt) w->x[i] = c_tab[px[i]];
  __syncthreads();
  for (int q = t; q < 4704; q += nt) {
    int o = q / 784, y = (q / 28) % 28, x = q % 28;
    float s = P[OFF_B1 + o];
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
          s += P[OFF_W1 + ((o * 3 + c) * 5 + i) * 5 + j] * w->x[(c * 32 + y + i) * 32 + x + j];
    w->c1[q] = s > 0.f ? s : 0.f;
  }
  __syncthreads();
  for (int q = t; q < 1176; q += nt) {
    int o = q / 196, y = (q / 14) % 14, x = q % 14;
    int base = o * 784 + 2 * y * 28 + 2 * x, bi = base;
    float m = w->c1[base];
    int cand[3] = {base + 1, base + 28, base + 29};
    for (int k = 0; k < 3; k++)
      if (w->c1[cand[k]] > m) { m = w->c1[cand[k]]; bi = cand[k]; }
    w->p1[q] = m;
    w->a1[q] = bi;
  }
  __syncthreads();
  for (int q = t; q < 1600; q += nt) {
    int o = q / 100, y = (q / 10) % 10, x = q % 10;
    float s = P[OFF_B2 + o];
    for (int c = 0; c < 6; c++)
      for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
          s += P[OFF_W2 + ((o * 6 + c) * 5 + i) * 5 + j] * w->p1[(c * 14 + y + i) * 14 + x + j];
    w->c2[q] = s > 0.f ? s : 0.f;
  }
  __syncthreads();
  for (int q = t; q < 400; q += nt) {
    int o = q / 25, y = (q / 5) % 5, x = q % 5;
    int base = o * 100 + 2 * y * 10 + 2 * x, bi = base;
    float m = w->c2[base];
    int cand[3] = {base + 1, base + 10, base + 11};
    for (int k = 0; k < 3; k++)
      if (w->c2[cand[k]] > m) { m = w->c2[cand[k]]; bi = cand[k]; }
    w->p2[q] = m;
    w->a2[q] = bi;
  }
  __syncthreads();
  for (int o = t; o < 120; o += nt) {
    float s = P[OFF_B3 + o];
    for (int i = 0; i < 400; i++) s += P[OFF_W3 + o * 400 + i] * w->p2[i];
    w->h1[o] = s > 0.f ? s : 0.f;
  }
  __syncthreads();
  for (int o = t; o < 84; o += nt) {
    float s = P[OFF_B4 + o];
    for (int i = 0; i < 120; i++) s += P[OFF_W4 + o * 120 + i] * w->h1[i];
    w->h2[o] = s > 0.f ? s : 0.f;
  }
  __syncthreads();
  for (int o = t; o < 10; o += nt) {
    float s = P[OFF_B5 + o];
    for (int i = 0; i < 84; i++) s += P[OFF_W5 + o * 84 + i] * w->h2[i];
    w->lg[o] = s;
  }
  __syncthreads();
}

__global__ void k_sample(const float *P, float *G, ws *wss, const uint8_t *pix,
                         const uint8_t *lab, const uint32_t *idx, float scale, float *losses) {
  int b = blockIdx.x, t = threadIdx.x, nt = blockDim.x;
  ws *w = wss + b;
  float *g = G + (size_t)b * CNN_NPARAM;
  uint32_t im = idx[b];
  forward(P, w, pix + (size_t)im * CNN_IMAGE);
  int label = lab[im];
  if (t == 0) {
    float m = w->lg[0];
    for (int k = 1; k < 10; k++) m = w->lg[k] > m ? w->lg[k] : m;
    float e[10], se = 0;
    for (int k = 0; k < 10; k++) { e[k] = expf(w->lg[k] - m); se += e[k]; }
    losses[b] = m + logf(se) - w->lg[label];
    for (int k = 0; k < 10; k++) w->dlg[k] = (e[k] / se - (k == label ? 1.f : 0.f)) * scale;
  }
  __syncthreads();
  /* fc3 */
  for (int q = t; q < 840; q += nt) g[OFF_W5 + q] = w->dlg[q / 84] * w->h2[q % 84];
  for (int q = t; q < 10; q += nt) g[OFF_B5 + q] = w->dlg[q];
  for (int i = t; i < 84; i += nt) {
    float s = 0;
    for (int o = 0; o < 10; o++) s += w->dlg[o] * P[OFF_W5 + o * 84 + i];
    w->dh2[i] = w->h2[i] > 0.f ? s : 0.f;
  }
  __syncthreads();
  /* fc2 */
  for (int q = t; q < 10080; q += nt) g[OFF_W4 + q] = w->dh2[q / 120] * w->h1[q % 120];
  for (int q = t; q < 84; q += nt) g[OFF_B4 + q] = w->dh2[q];
  for (int i = t; i < 120; i += nt) {
    float s = 0;
    for (int o = 0; o < 84; o++) s += w->dh2[o] * P[OFF_W4 + o * 120 + i];
    w->dh1[i] = w->h1[i] > 0.f ? s : 0.f;
  }
  __syncthreads();
  /* fc1 */
  for (int q = t; q < 48000; q += nt) g[OFF_W3 + q] = w->dh1[q / 400] * w->p2[q % 400];
  for (int q = t; q < 120; q += nt) g[OFF_B3 + q] = w->dh1[q];
  for (int i = t; i < 400; i += nt) {
    float s = 0;
    for (int o = 0; o < 120; o++) s += w->dh1[o] * P[OFF_W3 + o * 400 + i];
    w->dp2[i] = s;
  }
  __syncthreads();
  /* pool2 + relu2 */
  for (int q = t; q < 1600; q += nt) w->dc2[q] = 0.f;
  __syncthreads();
  for (int q = t; q < 400; q += nt) w->dc2[w->a2[q]] = w->dp2[q];
  __syncthreads();
  for (int q = t; q < 1600; q += nt) w->dc2[q] = w->c2[q] > 0.f ? w->dc2[q] : 0.f;
  __syncthreads();
  /* conv2 */
  for (int q = t; q < 2400; q += nt) {
    int o = q / 150, c = (q / 25) % 6, i = (q / 5) % 5, j = q % 5;
    float s = 0;
    for (int y = 0; y < 10; y++)
      for (int x = 0; x < 10; x++) s += w->dc2[o * 100 + y * 10 + x] * w->p1[(c * 14 + y + i) * 14 + x + j];
    g[OFF_W2 + q] = s;
  }
  for (int o = t; o < 16; o += nt) {
    float s = 0;
    for (int p = 0; p < 100; p++) s += w->dc2[o * 100 + p];
    g[OFF_B2 + o] = s;
  }
  for (int q = t; q < 1176; q += nt) {
    int c = q / 196, yy = (q / 14) % 14, xx = q % 14;
    float s = 0;
    for (int o = 0; o < 16; o++)
      for (int i = 0; i < 5; i++) {
        int y = yy - i;
        if (y < 0 || y >= 10) continue;
        for (int j = 0; j < 5; j++) {
          int x = xx - j;
          if (x < 0 || x >= 10) continue;
          s += P[OFF_W2 + ((o * 6 + c) * 5 + i) * 5 + j] * w->dc2[o * 100 + y * 10 + x];
        }
      }
    w->dp1[q] = s;
  }
  __syncthreads();
  /* pool1 + relu1 */
  for (int q = t; q < 4704; q += nt) w->dc1[q] = 0.f;
  __syncthreads();
  for (int q = t; q < 1176; q += nt) w->dc1[w->a1[q]] = w->dp1[q];
  __syncthreads();
  for (int q = t; q < 4704; q += nt) w->dc1[q] = w->c1[q] > 0.f ? w->dc1[q] : 0.f;
  __syncthreads();
  /* conv1 */
  for (int q = t; q < 450; q += nt) {
    int o = q / 75, c = (q / 25) % 3, i = (q / 5) % 5, j = q % 5;
    float s = 0;
    for (int y = 0; y < 28; y++)
      for (int x = 0; x < 28; x++) s += w->dc1[o * 784 + y * 28 + x] * w->x[(c * 32 + y + i) * 32 + x + j];
    g[OFF_W1 + q] = s;
  }
  for (int o = t; o < 6; o += nt) {
    float s = 0;
    for (int p = 0; p < 784; p++) s += w->dc1[o * 784 + p];
    g[OFF_B1 + o] = s;
  }
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

__global__ void k_eval(const float *P, ws *wss, const uint8_t *pix, uint8_t *pred) {
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
  float *P, *V, *G, *losses, *loss_out;
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
  memcpy(s->h_idx, idx, sizeof(uint32_t) * (size_t)n);
  cudaMemcpyAsync(s->idx, s->h_idx, sizeof(uint32_t) * (size_t)n, cudaMemcpyHostToDevice, s->s);
  CNN_LAUNCH(k_sample, n, 256, s->s, s->P, s->G, s->w, s->pix, s->lab, s->idx, 1.0f / (float)n,
             s->losses);
  CNN_LAUNCH(k_reduce_sgd, (CNN_NPARAM + 255) / 256, 256, s->s, s->P, s->V, s->G, n, s->cfg.lr,
             s->cfg.momentum, s->first, s->losses, s->loss_out);
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
    CNN_LAUNCH(k_eval, (unsigned)k, 256, 0, s->P, s->w, s->epix, s->epred);
    if (cudaMemcpy(pred + lo, s->epred, k, cudaMemcpyDeviceToHost) != cudaSuccess) return -1;
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
