/*
 * cnn_cpu_kern.h -- the CPU kernels, compiled once per instruction set by
 * cnn_cpu.c (K(name) adds the suffix, KATTR the target attribute).
 * Convolutions are im2col + row-wise GEMM; every inner loop is an axpy or
 * a dot product over 16-float vectors (GCC vector extensions), so the same
 * source becomes SSE, AVX2+FMA or AVX-512 code.
 */
typedef float K(v16) __attribute__((vector_size(64)));

static KATTR inline void K(axpy)(float *restrict y, float a, const float *restrict x, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    K(v16) vx, vy;
    memcpy(&vx, x + i, sizeof vx);
    memcpy(&vy, y + i, sizeof vy);
    vy += a * vx;
    memcpy(y + i, &vy, sizeof vy);
  }
  for (; i < n; i++) y[i] += a * x[i];
}

static KATTR inline float K(dot)(const float *restrict a, const float *restrict b, int n) {
  K(v16) acc = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    K(v16) va, vb;
    memcpy(&va, a + i, sizeof va);
    memcpy(&vb, b + i, sizeof vb);
    acc += va * vb;
  }
  float s = 0;
  for (; i < n; i++) s += a[i] * b[i];
  float t = 0;
  for (int l = 0; l < 16; l++) t += acc[l];
  return s + t;
}

/* col[(c*25 + i*5 + j) * Ho*Ho + y*Ho + x] = in[c][y+i][x+j] */
static KATTR void K(im2col)(const float *restrict in, int C, int H, float *restrict col) {
  int Ho = H - 4;
  for (int c = 0; c < C; c++)
    for (int i = 0; i < 5; i++)
      for (int j = 0; j < 5; j++) {
        float *dst = col + (size_t)((c * 5 + i) * 5 + j) * (size_t)(Ho * Ho);
        for (int y = 0; y < Ho; y++)
          memcpy(dst + y * Ho, in + (c * H + y + i) * H + j, sizeof(float) * (size_t)Ho);
      }
}

static KATTR void K(col2im)(const float *restrict col, int C, int H, float *restrict in) {
  int Ho = H - 4;
  memset(in, 0, sizeof(float) * (size_t)(C * H * H));
  for (int c = 0; c < C; c++)
    for (int i = 0; i < 5; i++)
      for (int j = 0; j < 5; j++) {
        const float *src = col + (size_t)((c * 5 + i) * 5 + j) * (size_t)(Ho * Ho);
        for (int y = 0; y < Ho; y++) {
          float *d = in + (c * H + y + i) * H + j;
          const float *s = src + y * Ho;
          for (int x = 0; x < Ho; x++) d[x] += s[x];
        }
      }
}

/* out[o] = relu(b[o] + sum_k w[o][k] col[k]), then 2x2 max pool with the
 * argmax (first maximum in row-major order, as PyTorch). */
static KATTR void K(conv_relu_pool)(const float *restrict col, int K_, int HW, const float *w,
                                    const float *b, int O, float *restrict out,
                                    float *restrict pool, int *restrict arg) {
  int Ho = 1;
  while (Ho * Ho < HW) Ho++;
  for (int o = 0; o < O; o++) {
    float *r = out + (size_t)o * (size_t)HW;
    for (int p = 0; p < HW; p++) r[p] = b[o];
    for (int k = 0; k < K_; k++) K(axpy)(r, w[o * K_ + k], col + (size_t)k * (size_t)HW, HW);
    for (int p = 0; p < HW; p++) r[p] = r[p] > 0.0f ? r[p] : 0.0f;
    int Hp = Ho / 2;
    for (int y = 0; y < Hp; y++)
      for (int x = 0; x < Hp; x++) {
        int base = (2 * y) * Ho + 2 * x;
        int bi = base;
        float m = r[base];
        int cand[3] = {base + 1, base + Ho, base + Ho + 1};
        for (int q = 0; q < 3; q++)
          if (r[cand[q]] > m) {
            m = r[cand[q]];
            bi = cand[q];
          }
        pool[(o * Hp + y) * Hp + x] = m;
        arg[(o * Hp + y) * Hp + x] = o * HW + bi;
      }
  }
}

static KATTR void K(forward)(const float *P, cnn_ws *w) {
  K(im2col)(w->x, 3, 32, w->col1);
  K(conv_relu_pool)(w->col1, 75, 784, P + OFF_W1, P + OFF_B1, 6, w->c1, w->p1, w->a1);
  K(im2col)(w->p1, 6, 14, w->col2);
  K(conv_relu_pool)(w->col2, 150, 100, P + OFF_W2, P + OFF_B2, 16, w->c2, w->p2, w->a2);
  for (int o = 0; o < 120; o++) {
    float s = P[OFF_B3 + o] + K(dot)(P + OFF_W3 + o * 400, w->p2, 400);
    w->h1[o] = s > 0.0f ? s : 0.0f;
  }
  for (int o = 0; o < 84; o++) {
    float s = P[OFF_B4 + o] + K(dot)(P + OFF_W4 + o * 120, w->h1, 120);
    w->h2[o] = s > 0.0f ? s : 0.0f;
  }
  for (int o = 0; o < 10; o++) w->lg[o] = P[OFF_B5 + o] + K(dot)(P + OFF_W5 + o * 84, w->h2, 84);
}

/* fc backward: G_W[o] += d[o] * in; G_b += d; din = sum_o d[o] W[o] (then
 * masked by in > 0 when the input came out of a ReLU). */
static KATTR void K(fc_back)(const float *W, float *GW, float *Gb, const float *d, int O,
                             const float *in, int I, float *din, int mask) {
  if (din) memset(din, 0, sizeof(float) * (size_t)I);
  for (int o = 0; o < O; o++) {
    if (d[o] == 0.0f) continue;
    K(axpy)(GW + o * I, d[o], in, I);
    Gb[o] += d[o];
    if (din) K(axpy)(din, d[o], W + o * I, I);
  }
  if (din && mask)
    for (int i = 0; i < I; i++) din[i] = in[i] > 0.0f ? din[i] : 0.0f;
}

/* Pooled gradient back through the pool and the ReLU, then the conv's
 * weight and bias gradients; dcol (if asked) for the input gradient. */
static KATTR void K(conv_back)(const float *dp, const int *arg, int NP, const float *out,
                               float *dout, int O, int HW, const float *col, int K_,
                               const float *W, float *GW, float *Gb, float *dcol) {
  memset(dout, 0, sizeof(float) * (size_t)(O * HW));
  for (int i = 0; i < NP; i++) dout[arg[i]] += dp[i];
  for (int i = 0; i < O * HW; i++) dout[i] = out[i] > 0.0f ? dout[i] : 0.0f;
  if (dcol) memset(dcol, 0, sizeof(float) * (size_t)(K_ * HW));
  for (int o = 0; o < O; o++) {
    const float *d = dout + (size_t)o * (size_t)HW;
    float sb = 0;
    for (int p = 0; p < HW; p++) sb += d[p];
    Gb[o] += sb;
    for (int k = 0; k < K_; k++) {
      GW[o * K_ + k] += K(dot)(d, col + (size_t)k * (size_t)HW, HW);
      if (dcol) K(axpy)(dcol + (size_t)k * (size_t)HW, W[o * K_ + k], d, HW);
    }
  }
}

static KATTR float K(backward)(const float *P, float *G, cnn_ws *w, int label, float scale) {
  float m = w->lg[0];
  for (int k = 1; k < 10; k++) m = w->lg[k] > m ? w->lg[k] : m;
  float se = 0;
  float e[10];
  for (int k = 0; k < 10; k++) {
    e[k] = expf(w->lg[k] - m);
    se += e[k];
  }
  float lse = m + logf(se);
  for (int k = 0; k < 10; k++) w->dlg[k] = (e[k] / se - (k == label ? 1.0f : 0.0f)) * scale;
  K(fc_back)(P + OFF_W5, G + OFF_W5, G + OFF_B5, w->dlg, 10, w->h2, 84, w->dh2, 1);
  K(fc_back)(P + OFF_W4, G + OFF_W4, G + OFF_B4, w->dh2, 84, w->h1, 120, w->dh1, 1);
  K(fc_back)(P + OFF_W3, G + OFF_W3, G + OFF_B3, w->dh1, 120, w->p2, 400, w->dp2, 0);
  K(conv_back)(w->dp2, w->a2, 400, w->c2, w->dc2, 16, 100, w->col2, 150, P + OFF_W2,
               G + OFF_W2, G + OFF_B2, w->dcol2);
  K(col2im)(w->dcol2, 6, 14, w->dp1);
  K(conv_back)(w->dp1, w->a1, 1176, w->c1, w->dc1, 6, 784, w->col1, 75, P + OFF_W1,
               G + OFF_W1, G + OFF_B1, NULL);
  return lse - w->lg[label];
}

static KATTR double K(run_samples)(const float *P, float *G, cnn_ws *w, const float *tab,
                                   const uint8_t *pixels, const uint8_t *labels,
                                   const uint32_t *idx, int n, float scale) {
  double loss = 0;
  for (int s = 0; s < n; s++) {
    const uint8_t *px = pixels + (size_t)idx[s] * CNN_IMAGE;
    for (int i = 0; i < CNN_IMAGE; i++) w->x[i] = tab[px[i]];
    K(forward)(P, w);
    loss += K(backward)(P, G, w, labels[idx[s]], scale);
  }
  return loss;
}

static KATTR void K(predict)(const float *P, cnn_ws *w, const float *tab, const uint8_t *pixels,
                             size_t n, uint8_t *pred) {
  for (size_t s = 0; s < n; s++) {
    const uint8_t *px = pixels + s * CNN_IMAGE;
    for (int i = 0; i < CNN_IMAGE; i++) w->x[i] = tab[px[i]];
    K(forward)(P, w);
    int best = 0;
    for (int k = 1; k < 10; k++)
      if (w->lg[k] > w->lg[best]) best = k;
    pred[s] = (uint8_t)best;
  }
}
