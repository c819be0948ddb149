/*
 * cnn.h -- the trainer core: the PyTorch CIFAR-10 tutorial network, its
 * loss, SGD with momentum, initialisation, shuffling and the safetensors
 * layout, behind one backend interface (CPU always, CUDA when built).
 *
 * Builds with libc, libm and pthreads only (and the CUDA runtime for the
 * .cu backend): no ZeroMQ, jansson or stage-context headers here.
 *
 * Network (input N x 3 x 32 x 32 float32, CHW):
 *   conv1 3->6 k5, ReLU, maxpool 2; conv2 6->16 k5, ReLU, maxpool 2;
 *   flatten (c*25 + h*5 + w); fc1 400->120 ReLU; fc2 120->84 ReLU; fc3 84->10.
 * Loss: batch mean of -log softmax(logits)[label].
 * SGD as torch.optim.SGD(momentum=mu): v = g on the first step, then
 * v <- mu*v + g; p <- p - lr*v.
 *
 * Parameters are one float array of CNN_NPARAM in state_dict order
 * (conv1.weight, conv1.bias, ..., fc3.bias), each tensor row-major as
 * PyTorch stores it.
 */
#ifndef PK_CNN_H
#define PK_CNN_H

#include <stddef.h>
#include <stdint.h>

#define CNN_NPARAM 62006
#define CNN_NTENSORS 10
#define CNN_CLASSES 10
#define CNN_IMAGE 3072 /* 3 x 32 x 32 bytes, planar */

typedef struct cnn_tensor {
  const char *name;  /* "conv1.weight" */
  int ndim;
  int shape[4];
  size_t offset;     /* in floats, into the parameter array */
  size_t count;
  int fan_in;        /* PyTorch's init bound is 1/sqrt(fan_in) */
} cnn_tensor;

extern const cnn_tensor cnn_tensors[CNN_NTENSORS];

/* The input table: t[p] = (p/255 - 0.5)/0.5 in float32, by division
 * (ToTensor then Normalize(0.5, 0.5)). */
void cnn_norm_table(float t[256]);

/* ---- the documented random generator ---------------------------------
 * splitmix64: state += 0x9E3779B97F4A7C15; z = state;
 *   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *   z = (z ^ (z >> 27)) * 0x94D049BB133111EB;  return z ^ (z >> 31).
 * The state starts at the seed. */
typedef struct cnn_rng { uint64_t s; } cnn_rng;
uint64_t cnn_rng_next(cnn_rng *r);

/* PyTorch-style initialisation: every weight and bias uniform in
 * +-1/sqrt(fan_in), tensor by tensor in state_dict order, element by
 * element: u = (next() >> 40) * 2^-24, value = (2u - 1) * bound, from a
 * generator seeded with `seed`. */
void cnn_init_params(float *p, uint64_t seed);

/* Epoch shuffle: perm = 0..n-1, then for i = n-1 down to 1:
 * j = next() % (i + 1), swap perm[i], perm[j]. One generator seeded with
 * the training seed ^ 0x5EED5EED5EED5EED serves all epochs in order. */
void cnn_shuffle(cnn_rng *r, uint32_t *perm, size_t n);
uint64_t cnn_shuffle_seed(uint64_t seed);

/* ---- safetensors ------------------------------------------------------
 * 8-byte little-endian header length, a JSON header (padded with spaces to
 * a multiple of 8) {"__metadata__":{"format":"pt"},"conv1.weight":
 * {"dtype":"F32","shape":[6,3,5,5],"data_offsets":[0,1800]},...}, then the
 * tensors as little-endian float32 in state_dict order. The file is written
 * to PATH.tmp-PID and renamed. Returns 0, or -1 with msg filled. */
int cnn_safetensors_header(char *buf, size_t cap, size_t *len);
int cnn_safetensors_write(const char *path, const float *params, char *msg, size_t cap);

/* ---- backends ---------------------------------------------------------- */
typedef struct cnn_config {
  int batch;        /* maximum images per step */
  float lr, momentum;
  int threads;      /* CPU: worker threads (0: all online cores) */
} cnn_config;

typedef struct cnn_backend {
  const char *name; /* "cpu", "cuda" */
  /* 1 when usable here; else 0 with why filled ("no CUDA device answered"). */
  int (*available)(char *why, size_t cap);
  /* A training state from the parameters (copied). NULL with msg on error. */
  void *(*init)(const cnn_config *cfg, const float *params, char *msg, size_t cap);
  /* The data steps and evaluation read from: n images of CNN_IMAGE bytes
   * and their labels; must stay valid until the next bind or free. */
  int (*bind)(void *st, const uint8_t *pixels, const uint8_t *labels, size_t n);
  /* One SGD step on the bound images idx[0..n-1]: the batch-mean loss. -1,
   * changing nothing, unless 0 < n <= batch and every index is below the
   * bound count with a label below CNN_CLASSES (cnn_batch_check). */
  int (*step)(void *st, const uint32_t *idx, int n, float *loss);
  /* Predicted class of images pixels[0..n-1] (not the bound ones). */
  int (*eval)(void *st, const uint8_t *pixels, size_t n, uint8_t *pred);
  /* Copy the current parameters out / in (in also clears momentum). */
  int (*get)(void *st, float *params);
  int (*set)(void *st, const float *params);
  /* "2 threads, avx2" */
  const char *(*describe)(void *st);
  void (*free)(void *st);
} cnn_backend;

extern const cnn_backend cnn_cpu_backend;
/* NULL when built without CUDA. */
const cnn_backend *cnn_cuda_backend(void);

/* The CPU kernels' instruction set picked at run time: "avx512", "avx2" or
 * "generic"; PK_CNN_ISA=generic|avx2|avx512 caps it (tests, benchmarks). */
const char *cnn_cpu_isa(void);

/* ---- reference math, used by tests ------------------------------------ */
/* Batch-mean loss of n normalised images x (n x 3072) in double precision,
 * straight loops: the reference for gradient checks. */
double cnn_ref_loss(const float *params, const float *x, const uint8_t *labels, int n);

/* One SGD update on parameters p with momentum buffer v (first: v = g). */
void cnn_sgd_update(float *p, float *v, const float *g, size_t n, float lr, float mu,
                    int first);

#endif
