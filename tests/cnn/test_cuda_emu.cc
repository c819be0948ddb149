/*
 * test_cuda_emu.cc -- kernels that check the CUDA emulation itself
 * (stages/train/cnn_cuda_emu.h) where cnn_cuda.cu does not reach: blocks in
 * turn with __shared__ storage and 2-D thread blocks, a result that is stale
 * until the stream is synchronised, the API's error codes, and the faults it
 * must abort on. Called from test_cnn.c (cnn_emu_test.h).
 */
#include "train/cnn_cuda_emu.h"

extern "C" {
#include "cnn_emu_test.h"
}

namespace {

/* Each block sums v[block*n + t] over its n threads in shared memory (a tree,
 * a __syncthreads per level) and adds its block number, so that a block
 * that ran with another's shared values or before the previous block's
 * last write would give a wrong sum. */
__global__ void k_block_sums(const int *v, int *out) {
  __shared__ int part[256];
  unsigned t = threadIdx.y * blockDim.x + threadIdx.x, n = blockDim.x * blockDim.y;
  part[t] = v[blockIdx.x * n + t];
  __syncthreads();
  for (unsigned h = n / 2; h > 0; h /= 2) {
    if (t < h) part[t] += part[t + h];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = part[0] + (int)blockIdx.x;
}

__global__ void k_fill(int *p, int v) { p[threadIdx.x] = v; }

/* Thread 0 leaves while the others wait at the barrier. */
__global__ void k_divergent(int *p) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  p[threadIdx.x] = 1;
}

__device__ int d_sym[4];

int fail(char *msg, size_t cap, const char *what) {
  snprintf(msg, cap, "%s", what);
  return -1;
}

int test_blocks(char *msg, size_t cap) {
  enum { B = 5 };
  static const dim3 shapes[] = {dim3(64), dim3(8, 4), dim3(256)};
  for (dim3 sh : shapes) {
    int n = (int)(sh.x * sh.y), h[B * 256], r[B];
    for (int i = 0; i < B * n; i++) h[i] = i * 7 % 13 - 6;
    int *dv, *dout;
    if (cudaMalloc(&dv, sizeof(int) * B * (size_t)n) || cudaMalloc(&dout, sizeof r) ||
        cudaMemcpy(dv, h, sizeof(int) * B * (size_t)n, cudaMemcpyHostToDevice))
      return fail(msg, cap, "cudaMalloc/cudaMemcpy");
    CNN_LAUNCH(k_block_sums, B, sh, 0, dv, dout);
    if (cudaGetLastError() || cudaMemcpy(r, dout, sizeof r, cudaMemcpyDeviceToHost))
      return fail(msg, cap, "launch or copy back");
    for (int b = 0; b < B; b++) {
      int want = b;
      for (int t = 0; t < n; t++) want += h[b * n + t];
      if (r[b] != want) {
        snprintf(msg, cap, "block %d of %ux%u threads: sum %d, expected %d", b, sh.x, sh.y, r[b], want);
        return -1;
      }
    }
    cudaFree(dv);
    cudaFree(dout);
  }
  return 0;
}

int test_async(char *msg, size_t cap) {
  int *d, *h;
  cudaStream_t s;
  if (cudaStreamCreate(&s) || cudaMalloc(&d, 32 * sizeof(int)) || cudaMallocHost(&h, 32 * sizeof(int)))
    return fail(msg, cap, "setup");
  h[5] = -7;
  CNN_LAUNCH(k_fill, 1, 32, s, d, 42);
  cudaMemcpyAsync(h, d, 32 * sizeof(int), cudaMemcpyDeviceToHost, s);
  if (h[5] != -7) return fail(msg, cap, "the copy ran before the stream was synchronised");
  cudaStreamSynchronize(s);
  if (h[5] != 42) return fail(msg, cap, "the copy did not run at cudaStreamSynchronize");
  /* arguments are taken at the launch, not when it runs */
  int v = 1;
  CNN_LAUNCH(k_fill, 1, 32, s, d, v);
  v = 2;
  if (cudaMemcpy(h, d, 32 * sizeof(int), cudaMemcpyDeviceToHost) || h[31] != 1)
    return fail(msg, cap, "a kernel argument was read after the launch");
  cudaStreamDestroy(s);
  cudaFree(d);
  cudaFreeHost(h);
  return 0;
}

int test_errors(char *msg, size_t cap) {
  char host[64] = {0};
  char *d;
  if (cudaMalloc(&d, 64)) return fail(msg, cap, "cudaMalloc");
  unsigned char first;
  if (cudaMemcpy(&first, d, 1, cudaMemcpyDeviceToHost) || first != 0xff)
    return fail(msg, cap, "fresh device memory should read as 0xff bytes");
  if (cudaMemcpy(host, d, 64, cudaMemcpyHostToDevice) != cudaErrorInvalidMemcpyDirection)
    return fail(msg, cap, "a host-to-device copy onto host memory was taken");
  if (cudaGetLastError() != cudaErrorInvalidMemcpyDirection || cudaGetLastError() != cudaSuccess)
    return fail(msg, cap, "cudaGetLastError should report, then clear");
  volatile size_t all = 64; /* no compile-time view of the overrun refused here */
  if (cudaMemcpy(d + 8, host, all, cudaMemcpyHostToDevice) != cudaErrorInvalidValue)
    return fail(msg, cap, "a copy past the end of an allocation was taken");
  if (cudaMemset(d, 0, 65) != cudaErrorInvalidValue) return fail(msg, cap, "cudaMemset past the end");
  if (cudaFree(host) != cudaErrorInvalidDevicePointer) return fail(msg, cap, "cudaFree of host memory");
  int four[4] = {1, 2, 3, 4}, five[5] = {0};
  if (cudaMemcpyToSymbol(d_sym, four, sizeof four) || d_sym[3] != 4)
    return fail(msg, cap, "cudaMemcpyToSymbol");
  if (cudaMemcpyToSymbol(d_sym, five, sizeof five) != cudaErrorInvalidValue)
    return fail(msg, cap, "cudaMemcpyToSymbol past the symbol");
  cudaGetLastError();
  CNN_LAUNCH(k_fill, 1, 1025, 0, (int *)d, 0);
  if (cudaGetLastError() != cudaErrorInvalidConfiguration)
    return fail(msg, cap, "a block of 1025 threads was launched");
  CNN_LAUNCH(k_fill, 0, 32, 0, (int *)d, 0);
  if (cudaGetLastError() != cudaErrorInvalidConfiguration) return fail(msg, cap, "an empty grid");
  cudaFree(d);
  return 0;
}

}  // namespace

extern "C" int cnn_emu_selftest(const char *what, char *msg, size_t cap) {
  if (!strcmp(what, "blocks")) return test_blocks(msg, cap);
  if (!strcmp(what, "async")) return test_async(msg, cap);
  if (!strcmp(what, "errors")) return test_errors(msg, cap);
  return fail(msg, cap, "no such self-test");
}

extern "C" void cnn_emu_fault(const char *what) {
  int *d;
  cudaMalloc(&d, 64 * sizeof(int));
  if (!strcmp(what, "divergent")) {
    CNN_LAUNCH(k_divergent, 2, 64, 0, d);
  } else if (!strcmp(what, "host-pointer")) {
    static int host[64];
    CNN_LAUNCH(k_fill, 1, 64, 0, host, 1);
  }
  cudaDeviceSynchronize();
  cudaFree(d);
}
