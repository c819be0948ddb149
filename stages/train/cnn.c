/*
 * cnn.c -- the trainer core's shared parts: the parameter layout, input
 * table, random generator, initialisation, shuffle, SGD rule, safetensors
 * writer and a double-precision reference forward pass for the tests.
 * libc and libm only.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnn_int.h"

const cnn_tensor cnn_tensors[CNN_NTENSORS] = {
    {"conv1.weight", 4, {6, 3, 5, 5}, 0, 450, 75},
    {"conv1.bias", 1, {6}, 450, 6, 75},
    {"conv2.weight", 4, {16, 6, 5, 5}, 456, 2400, 150},
    {"conv2.bias", 1, {16}, 2856, 16, 150},
    {"fc1.weight", 2, {120, 400}, 2872, 48000, 400},
    {"fc1.bias", 1, {120}, 50872, 120, 400},
    {"fc2.weight", 2, {84, 120}, 50992, 10080, 120},
    {"fc2.bias", 1, {84}, 61072, 84, 120},
    {"fc3.weight", 2, {10, 84}, 61156, 840, 84},
    {"fc3.bias", 1, {10}, 61996, 10, 84},
};

void cnn_msg(char *msg, size_t cap, const char *fmt, ...) {
  if (!msg || !cap) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, cap, fmt, ap);
  va_end(ap);
}

int cnn_batch_check(const uint8_t *labels, size_t n_bound, const uint32_t *idx, int n, int max) {
  if (n <= 0 || n > max || !labels) return -1;
  for (int i = 0; i < n; i++)
    if (idx[i] >= n_bound || labels[idx[i]] >= CNN_CLASSES) return -1;
  return 0;
}

void cnn_norm_table(float t[256]) {
  for (int p = 0; p < 256; p++) {
    volatile float a = (float)p / 255.0f; /* ToTensor */
    volatile float b = a - 0.5f;
    t[p] = b / 0.5f; /* Normalize(0.5, 0.5) */
  }
}

uint64_t cnn_rng_next(cnn_rng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void cnn_init_params(float *p, uint64_t seed) {
  cnn_rng r = {seed};
  for (int t = 0; t < CNN_NTENSORS; t++) {
    const cnn_tensor *T = &cnn_tensors[t];
    float bound = (float)(1.0 / sqrt((double)T->fan_in));
    for (size_t i = 0; i < T->count; i++) {
      float u = (float)(cnn_rng_next(&r) >> 40) * (1.0f / 16777216.0f);
      p[T->offset + i] = (2.0f * u - 1.0f) * bound;
    }
  }
}

uint64_t cnn_shuffle_seed(uint64_t seed) { return seed ^ 0x5EED5EED5EED5EEDull; }

void cnn_shuffle(cnn_rng *r, uint32_t *perm, size_t n) {
  for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
  for (size_t i = n; i-- > 1;) {
    size_t j = (size_t)(cnn_rng_next(r) % (uint64_t)(i + 1));
    uint32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

void cnn_sgd_update(float *p, float *v, const float *g, size_t n, float lr, float mu,
                    int first) {
  if (first || mu == 0.0f) {
    for (size_t i = 0; i < n; i++) {
      v[i] = g[i];
      p[i] -= lr * v[i];
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      v[i] = mu * v[i] + g[i];
      p[i] -= lr * v[i];
    }
  }
}

/* ---- safetensors ------------------------------------------------------ */
int cnn_safetensors_header(char *buf, size_t cap, size_t *len) {
  size_t o = 0;
  size_t off = 0;
#define PUT(...)                                                   \
  do {                                                             \
    int k_ = snprintf(buf + o, o < cap ? cap - o : 0, __VA_ARGS__); \
    if (k_ < 0) return -1;                                         \
    o += (size_t)k_;                                               \
  } while (0)
  PUT("{\"__metadata__\":{\"format\":\"pt\"}");
  for (int t = 0; t < CNN_NTENSORS; t++) {
    const cnn_tensor *T = &cnn_tensors[t];
    PUT(",\"%s\":{\"dtype\":\"F32\",\"shape\":[", T->name);
    for (int d = 0; d < T->ndim; d++) PUT("%s%d", d ? "," : "", T->shape[d]);
    PUT("],\"data_offsets\":[%zu,%zu]}", off, off + T->count * 4);
    off += T->count * 4;
  }
  PUT("}");
  while (o % 8) PUT(" ");
#undef PUT
  if (o >= cap) return -1;
  *len = o;
  return 0;
}

static int is_little_endian(void) {
  const uint16_t one = 1;
  return *(const uint8_t *)&one == 1;
}

int cnn_safetensors_write(const char *path, const float *params, char *msg, size_t cap) {
  char hdr[2048];
  size_t hlen;
  if (cnn_safetensors_header(hdr, sizeof hdr, &hlen) != 0) {
    cnn_msg(msg, cap, "safetensors header does not fit");
    return -1;
  }
  char tmp[4200];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= sizeof tmp) {
    cnn_msg(msg, cap, "%s: path too long", path);
    return -1;
  }
  /* O_NONBLOCK and a check of what opened: a FIFO at that name must not
   * hang the stage (stages/lib/fileio.h does the same for the stages) */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_CLOEXEC, 0644);
  struct stat st;
  int fl = fd < 0 ? -1 : fcntl(fd, F_GETFL);
  if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK)) {
    cnn_msg(msg, cap, "%s: cannot create: %s", tmp, fd < 0 ? strerror(errno) : "not a regular file");
    if (fd >= 0) close(fd);
    return -1;
  }
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    cnn_msg(msg, cap, "%s: cannot create: %s", tmp, strerror(errno));
    close(fd);
    return -1;
  }
  uint8_t le[8];
  for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  int ok = fwrite(le, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
  if (ok && is_little_endian()) {
    ok = fwrite(params, sizeof(float), CNN_NPARAM, f) == CNN_NPARAM;
  } else if (ok) {
    for (size_t i = 0; ok && i < CNN_NPARAM; i++) {
      uint32_t u;
      memcpy(&u, &params[i], 4);
      uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
      ok = fwrite(b, 1, 4, f) == 4;
    }
  }
  int e = errno;
  if (fflush(f) != 0 && ok) {
    ok = 0;
    e = errno;
  }
  if (ok && fsync(fileno(f)) != 0) { /* best effort on odd file systems */
  }
  if (fclose(f) != 0 && ok) {
    ok = 0;
    e = errno;
  }
  if (!ok) {
    cnn_msg(msg, cap, "%s: write failed: %s", tmp, strerror(e));
    unlink(tmp);
    return -1;
  }
  if (rename(tmp, path) != 0) {
    cnn_msg(msg, cap, "%s: cannot rename into place: %s", path, strerror(errno));
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* ---- reference forward (double) --------------------------------------- */
static void ref_conv_relu_pool(const double *in, int C, int H, const float *w,
                               const float *b, int O, double *out) {
  int Ho = H - 4, Hp = Ho / 2;
  double *full = malloc(sizeof(double) * (size_t)(O * Ho * Ho));
  for (int o = 0; o < O; o++)
    for (int y = 0; y < Ho; y++)
      for (int x = 0; x < Ho; x++) {
        double s = b[o];
        for (int c = 0; c < C; c++)
          for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++)
              s += (double)w[((o * C + c) * 5 + i) * 5 + j] * in[(c * H + y + i) * H + x + j];
        full[(o * Ho + y) * Ho + x] = s > 0 ? s : 0;
      }
  for (int o = 0; o < O; o++)
    for (int y = 0; y < Hp; y++)
      for (int x = 0; x < Hp; x++) {
        double m = -INFINITY;
        for (int i = 0; i < 2; i++)
          for (int j = 0; j < 2; j++) {
            double v = full[(o * Ho + 2 * y + i) * Ho + 2 * x + j];
            if (v > m) m = v;
          }
        out[(o * Hp + y) * Hp + x] = m;
      }
  free(full);
}

static void ref_fc(const double *in, int I, const float *w, const float *b, int O, int relu,
                   double *out) {
  for (int o = 0; o < O; o++) {
    double s = b[o];
    for (int i = 0; i < I; i++) s += (double)w[o * I + i] * in[i];
    out[o] = relu && s < 0 ? 0 : s;
  }
}

double cnn_ref_loss(const float *P, const float *x, const uint8_t *labels, int n) {
  double total = 0;
  double in[3072], p1[6 * 14 * 14], p2[400], h1[120], h2[84], lg[10];
  for (int s = 0; s < n; s++) {
    for (int i = 0; i < 3072; i++) in[i] = x[(size_t)s * 3072 + (size_t)i];
    ref_conv_relu_pool(in, 3, 32, P + 0, P + 450, 6, p1);
    ref_conv_relu_pool(p1, 6, 14, P + 456, P + 2856, 16, p2);
    ref_fc(p2, 400, P + 2872, P + 50872, 120, 1, h1);
    ref_fc(h1, 120, P + 50992, P + 61072, 84, 1, h2);
    ref_fc(h2, 84, P + 61156, P + 61996, 10, 0, lg);
    double m = lg[0];
    for (int k = 1; k < 10; k++)
      if (lg[k] > m) m = lg[k];
    double se = 0;
    for (int k = 0; k < 10; k++) se += exp(lg[k] - m);
    total += (m + log(se)) - lg[labels[s]];
  }
  return total / n;
}

#ifndef PK_HAVE_CUDA
const cnn_backend *cnn_cuda_backend(void) { return NULL; }
#endif
