/*
 * cnn_cpu_kern.h -- the CPU kernels, compiled once per instruction set by
 * cnn_cpu.c: K(name) adds the suffix, KATTR the target attribute, KW is the
 * vector width in floats (4, 8 or 16) and T1_OB ... WG2_OB the register
 * tiles, sized to the register file. GCC vector extensions only, so the
 * same source becomes SSE/NEON, AVX2+FMA or AVX-512 code.
 *
 * The convolutions are direct, on flat rows: an image plane of width W is
 * one array, and a 5x5 convolution's output at flat position p = y*W + x is
 * sum over c, i, j of w[c][i][j] * in[c][i*W + j + p], a shifted contiguous
 * slice per tap (no im2col). Positions with x >= W - 4 wrap into the next
 * row: they are computed and never read by the pooling, and their
 * gradients stay zero, so the backward kernels run over whole vectors too.
 * Every buffer is padded so that vectors past an end read finite zeros.
 */
typedef float K(vf) __attribute__((vector_size(KW * 4)));
typedef int K(vi) __attribute__((vector_size(KW * 4)));
typedef float K(v4) __attribute__((vector_size(16)));

/* Lane shuffles of two vectors a:b (2*KW lanes): K_SHIFT(a, b, j) is lanes
 * j .. j+KW-1, K_EVEN/K_ODD the even/odd lanes. */
#undef K_SEQ
#undef K_EVN
#if KW == 16
#define K_SEQ(j) K_SEQ4(j), K_SEQ4((j) + 4), K_SEQ4((j) + 8), K_SEQ4((j) + 12)
#define K_EVN(j) K_EVN4(j), K_EVN4((j) + 8), K_EVN4((j) + 16), K_EVN4((j) + 24)
#elif KW == 8
#define K_SEQ(j) K_SEQ4(j), K_SEQ4((j) + 4)
#define K_EVN(j) K_EVN4(j), K_EVN4((j) + 8)
#else
#define K_SEQ(j) K_SEQ4(j)
#define K_EVN(j) K_EVN4(j)
#endif
#define K_SHIFT(a, b, j) K_SHUF(a, b, K_SEQ(j))
#define K_EVEN(a, b) K_SHUF(a, b, K_EVN(0))
#define K_ODD(a, b) K_SHUF(a, b, K_EVN(1))

_Static_assert(ROUND_UP(896, KW * T1_NV) <= S1, "conv1 tile fits the plane stride");
_Static_assert(ROUND_UP(140, KW * T2_NV) <= S2, "conv2 tile fits the plane stride");
_Static_assert(2048 + 4 * 32 + 4 + ROUND_UP(896, KW * T1_NV) <= X_LEN &&
                   2048 + 4 * 32 + 896 + KW <= X_LEN,
               "conv1 reads inside x");
_Static_assert(980 + 4 * 14 + 4 + ROUND_UP(140, KW * T2_NV) <= P1_LEN &&
                   980 + 4 * 14 + ROUND_UP(140, KW) + KW <= P1_LEN,
               "conv2 reads inside p1");
_Static_assert(D_FRONT + ROUND_UP(196, KW) <= DS2 && D_FRONT >= 4 * 14 + KW, "conv2 dgrad reads");
_Static_assert(27 * 32 + 2 * ROUND_UP(14, KW) <= S1 && 1176 - 14 + ROUND_UP(14, KW) <= 1176 + 16,
               "pool1 reads inside c1, writes inside p1 and a1");
_Static_assert(15 * S2 + 9 * 14 + 2 * ROUND_UP(5, KW) <= 16 * S2 + 32 &&
                   400 - 5 + ROUND_UP(5, KW) <= 400 + 16,
               "pool2 reads inside c2, writes inside p2 and a2");
_Static_assert(ROUND_UP(196, KW) <= DP1S, "dp1 stride");
_Static_assert(DG_NV <= K_MAXNV, "dgrad tile");
_Static_assert(6 * S1 <= TRASH && 16 * DS2 <= TRASH, "TRASH is past both gradient planes");
_Static_assert(T1_OB <= K_MAXOB && T2_OB <= K_MAXOB && WG1_OB <= K_MAXOB && WG2_OB <= K_MAXOB &&
                   T1_NV <= K_MAXNV && T2_NV <= K_MAXNV,
               "tiles within the accumulator arrays");

static KATTR inline K(vf) K(ld)(const float *p) {
  K(vf) v;
  memcpy(&v, p, sizeof v);
  return v;
}

static KATTR inline void K(st)(float *p, K(vf) v) { memcpy(p, &v, sizeof v); }

static KATTR inline float K(hsum)(K(vf) v) {
  K(v4) s;
  memcpy(&s, &v, sizeof s);
  for (int k = 1; k < KW / 4; k++) {
    K(v4) t;
    memcpy(&t, (const char *)&v + sizeof t * (size_t)k, sizeof t);
    s += t;
  }
  return (s[0] + s[2]) + (s[1] + s[3]);
}

static KATTR inline void K(axpy)(float *restrict y, float a, const float *restrict x, int n) {
  int i = 0;
  for (; i + KW <= n; i += KW) K(st)(y + i, K(ld)(y + i) + a * K(ld)(x + i));
  for (; i < n; i++) y[i] += a * x[i];
}

static KATTR inline float K(dot)(const float *restrict a, const float *restrict b, int n) {
  K(vf) acc = {0};
  int i = 0;
  for (; i + KW <= n; i += KW) acc += K(ld)(a + i) * K(ld)(b + i);
  float s = 0;
  for (; i < n; i++) s += a[i] * b[i];
  return s + K(hsum)(acc);
}

/* out[o*OS + p] = b[o] + sum_{c,i,j} w[o][c][i][j] * in[c*CS + i*W + j + p]
 * for p in [0, NP), NP a multiple of KW*NV; tiles of OB channels x NV
 * vectors stay in registers over all 25*C taps. */
static KATTR inline __attribute__((always_inline)) void K(conv_fwd)(
    const float *restrict in, int C, int CS, int W, const float *restrict w,
    const float *restrict b, int O, float *restrict out, int OS, int NP, const int OB,
    const int NV) {
  for (int o0 = 0; o0 < O; o0 += OB)
    for (int p0 = 0; p0 < NP; p0 += KW * NV) {
      K(vf) acc[K_MAXOB][K_MAXNV];
#pragma GCC unroll 8
      for (int r = 0; r < OB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = (K(vf)){0} + b[o0 + r];
      for (int c = 0; c < C; c++)
        for (int i = 0; i < 5; i++) {
          const float *src = in + c * CS + i * W + p0;
          const float *wr = w + (o0 * C + c) * 25 + i * 5;
#pragma GCC unroll 5
          for (int j = 0; j < 5; j++) {
            K(vf) x[K_MAXNV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) x[v] = K(ld)(src + j + v * KW);
#pragma GCC unroll 8
            for (int r = 0; r < OB; r++) {
              float a = wr[r * C * 25 + j];
#pragma GCC unroll 4
              for (int v = 0; v < NV; v++) acc[r][v] += a * x[v];
            }
          }
        }
#pragma GCC unroll 8
      for (int r = 0; r < OB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) K(st)(out + (o0 + r) * OS + p0 + v * KW, acc[r][v]);
    }
}

/* Weight gradient, lane by lane: gv[((o*C + c)*25 + i*5 + j)*KW + lane]
 * += the lane's share of sum_p d[o*DS + p] * in[c*CS + i*W + j + p], p in
 * [0, NP), NP a multiple of KW. The five taps of a row are lane shifts of
 * two loads. The lanes are summed once per job. */
static KATTR inline __attribute__((always_inline)) void K(conv_wgrad)(
    const float *restrict d, int DS, const float *restrict in, int C, int CS, int W, int O,
    int NP, float *restrict gv, const int OB) {
  for (int o0 = 0; o0 < O; o0 += OB)
    for (int c = 0; c < C; c++)
      for (int i = 0; i < 5; i++) {
        K(vf) acc[K_MAXOB][5];
#pragma GCC unroll 8
        for (int r = 0; r < OB; r++)
#pragma GCC unroll 5
          for (int j = 0; j < 5; j++) acc[r][j] = (K(vf)){0};
        const float *src = in + c * CS + i * W;
        K(vf) lo = K(ld)(src);
        for (int p = 0; p < NP; p += KW) {
          K(vf) hi = K(ld)(src + p + KW);
          K(vf) dv[K_MAXOB];
#pragma GCC unroll 8
          for (int r = 0; r < OB; r++) dv[r] = K(ld)(d + (o0 + r) * DS + p);
          K(vf) x[5] = {lo, K_SHIFT(lo, hi, 1), K_SHIFT(lo, hi, 2), K_SHIFT(lo, hi, 3),
                        K_SHIFT(lo, hi, 4)};
#pragma GCC unroll 5
          for (int j = 0; j < 5; j++)
#pragma GCC unroll 8
            for (int r = 0; r < OB; r++) acc[r][j] += dv[r] * x[j];
          lo = hi;
        }
#pragma GCC unroll 8
        for (int r = 0; r < OB; r++)
#pragma GCC unroll 5
          for (int j = 0; j < 5; j++) {
            float *g = gv + (size_t)(((o0 + r) * C + c) * 25 + i * 5 + j) * KW;
            K(st)(g, K(ld)(g) + acc[r][j]);
          }
      }
}

/* Input gradient of conv2: din[c*DP1S + q] = sum_{o,i,j} w[o][c][i][j] *
 * d[o*DS2 + q - i*14 - j] for q in [q0, q0 + NV*KW); d holds D_FRONT zeros
 * before each channel and zeros at the junk positions, which is what makes
 * the shifted reads at the borders right. */
static KATTR inline __attribute__((always_inline)) void K(conv2_dgrad_tile)(
    const float *restrict d, const float *restrict w, float *restrict din, int q0, const int NV) {
  K(vf) acc[6][K_MAXNV];
#pragma GCC unroll 6
  for (int c = 0; c < 6; c++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[c][v] = (K(vf)){0};
  /* rows y of the tile see d rows y - i; only 0..9 hold gradients */
  int ylo = q0 / 14, yhi = (q0 + NV * KW - 1) / 14;
  int ilo = ylo - 9 > 0 ? ylo - 9 : 0, ihi = yhi < 4 ? yhi : 4;
  for (int o = 0; o < 16; o++)
    for (int i = ilo; i <= ihi; i++) {
      /* L[v] holds d[base + (v-1)*KW ...], tap j of vector v is L[v]:L[v+1]
       * from lane KW - j */
      const float *src = d + o * DS2 + q0 - i * 14 - KW;
      const float *wr = w + o * 150 + i * 5;
      K(vf) L[K_MAXNV + 1];
#pragma GCC unroll 5
      for (int v = 0; v <= NV; v++) L[v] = K(ld)(src + v * KW);
#pragma GCC unroll 5
      for (int j = 0; j < 5; j++) {
        K(vf) x[K_MAXNV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
          x[v] = j == 0   ? L[v + 1]
                 : j == 1 ? K_SHIFT(L[v], L[v + 1], KW - 1)
                 : j == 2 ? K_SHIFT(L[v], L[v + 1], KW - 2)
                 : j == 3 ? K_SHIFT(L[v], L[v + 1], KW - 3)
                          : K_SHIFT(L[v], L[v + 1], KW - 4);
#pragma GCC unroll 6
        for (int c = 0; c < 6; c++) {
          float a = wr[c * 25 + j];
#pragma GCC unroll 4
          for (int v = 0; v < NV; v++) acc[c][v] += a * x[v];
        }
      }
    }
#pragma GCC unroll 6
  for (int c = 0; c < 6; c++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) K(st)(din + c * DP1S + q0 + v * KW, acc[c][v]);
}

static KATTR void K(conv2_dgrad)(const float *restrict d, const float *restrict w,
                                 float *restrict din) {
  int q0 = 0;
  for (; q0 + DG_NV * KW <= 196; q0 += DG_NV * KW) K(conv2_dgrad_tile)(d, w, din, q0, DG_NV);
  for (; q0 < 196; q0 += KW) K(conv2_dgrad_tile)(d, w, din, q0, 1);
}

/* ReLU then 2x2 max pool of O planes (stride S, flat rows of width W,
 * Hp x Hp windows), KW windows at a time: out[(o*Hp + y)*Hp + x], and in
 * arg the gradient's target o*AS + AOFF + flat position of the first
 * maximum (in PyTorch's row-major order), or TRASH (a slot no kernel
 * reads) where the ReLU gives 0: no gradient. Max of ReLUs = ReLU of the
 * max, and the first maximum is the same before and after the ReLU when it
 * is > 0. A row's last vector runs past its end into the next row (and
 * past the last row into the padding): rows are written in order, so the
 * next one overwrites those lanes. */
static KATTR void K(relu_pool)(const float *restrict c, int O, int S, int W, int Hp,
                               float *restrict out, int *restrict arg, int AS, int AOFF) {
  K(vi) lane2;
  for (int l = 0; l < KW; l++) lane2[l] = 2 * l;
  for (int o = 0; o < O; o++)
    for (int y = 0; y < Hp; y++)
      for (int x0 = 0; x0 < Hp; x0 += KW) {
        int at = 2 * y * W + 2 * x0;
        const float *r0 = c + o * S + at, *r1 = r0 + W;
        K(vf) A0 = K(ld)(r0), A1 = K(ld)(r0 + KW), B0 = K(ld)(r1), B1 = K(ld)(r1 + KW);
        K(vf) cand[3] = {K_ODD(A0, A1), K_EVEN(B0, B1), K_ODD(B0, B1)};
        const int off[3] = {1, W, W + 1};
        K(vf) m = K_EVEN(A0, A1);
        K(vi) bi = {0};
        for (int q = 0; q < 3; q++) {
          K(vi) gt = cand[q] > m;
          m = (K(vf))(((K(vi))cand[q] & gt) | ((K(vi))m & ~gt));
          bi = (off[q] & gt) | (bi & ~gt);
        }
        K(vi) pos = lane2 + bi + (o * AS + AOFF + at);
        K(vi) live = m > 0.0f;
        int k = (o * Hp + y) * Hp + x0;
        K(st)(out + k, (K(vf))((K(vi))m & live));
        K(vi) a = (pos & live) | (TRASH & ~live);
        memcpy(arg + k, &a, sizeof a);
      }
}

static KATTR void K(forward)(const float *P, cnn_ws *w) {
  K(conv_fwd)(w->x, 3, 1024, 32, P + OFF_W1, P + OFF_B1, 6, w->c1, S1,
              ROUND_UP(896, KW * T1_NV), T1_OB, T1_NV);
  K(relu_pool)(w->c1, 6, S1, 32, 14, w->p1, w->a1, S1, 0);
  K(conv_fwd)(w->p1, 6, 196, 14, P + OFF_W2, P + OFF_B2, 16, w->c2, S2,
              ROUND_UP(140, KW * T2_NV), T2_OB, T2_NV);
  K(relu_pool)(w->c2, 16, S2, 14, 5, w->p2, w->a2, DS2, D_FRONT);
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
 * masked by in > 0 when the input came out of a ReLU). Rows with d[o] = 0
 * (a ReLU cut them) are skipped; din is built a few vectors at a time over
 * all live rows, so it is written once. */
static KATTR inline __attribute__((always_inline)) void K(fc_din)(
    const float *W, const float *d, const int *live, int nl, const float *in, int I, float *din,
    int mask, int i, const int NT) {
  K(vf) acc[4];
#pragma GCC unroll 4
  for (int t = 0; t < NT; t++) acc[t] = (K(vf)){0};
  for (int k = 0; k < nl; k++) {
    const float *row = W + live[k] * I + i;
    float a = d[live[k]];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) acc[t] += a * K(ld)(row + t * KW);
  }
#pragma GCC unroll 4
  for (int t = 0; t < NT; t++) {
    if (mask) acc[t] = (K(vf))((K(vi))acc[t] & (K(ld)(in + i + t * KW) > 0.0f));
    K(st)(din + i + t * KW, acc[t]);
  }
}

static KATTR void K(fc_back)(const float *W, float *GW, float *Gb, const float *d, int O,
                             const float *in, int I, float *din, int mask) {
  int live[120], nl = 0;
  for (int o = 0; o < O; o++)
    if (d[o] != 0.0f) live[nl++] = o;
  for (int k = 0; k < nl; k++) {
    int o = live[k];
    K(axpy)(GW + o * I, d[o], in, I);
    Gb[o] += d[o];
  }
  int i = 0;
  for (; i + 4 * KW <= I; i += 4 * KW) K(fc_din)(W, d, live, nl, in, I, din, mask, i, 4);
  for (; i + KW <= I; i += KW) K(fc_din)(W, d, live, nl, in, I, din, mask, i, 1);
  for (; i < I; i++) {
    float a = 0;
    for (int k = 0; k < nl; k++) a += d[live[k]] * W[live[k] * I + i];
    din[i] = !mask || in[i] > 0.0f ? a : 0.0f;
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

  /* conv2: the pooled gradient onto the pool winners, then weights, bias
   * and input; d2 is zero again afterwards */
  for (int o = 0; o < 16; o++) {
    float sb = 0;
    for (int k = o * 25; k < o * 25 + 25; k++) {
      float g = w->dp2[k];
      w->d2[w->a2[k]] = g;
      sb += w->a2[k] != TRASH ? g : 0.0f;
    }
    G[OFF_B2 + o] += sb;
  }
  K(conv_wgrad)(w->d2 + D_FRONT, DS2, w->p1, 6, 196, 14, 16, ROUND_UP(140, KW), w->gv2, WG2_OB);
  K(conv2_dgrad)(w->d2 + D_FRONT, P + OFF_W2, w->dp1);
  for (int k = 0; k < 400; k++) w->d2[w->a2[k]] = 0.0f;

  /* conv1: the same, weights and bias only */
  for (int c = 0; c < 6; c++) {
    float sb = 0;
    for (int k = 0; k < 196; k++) {
      float g = w->dp1[c * DP1S + k];
      int a = w->a1[c * 196 + k];
      w->d1[a] = g;
      sb += a != TRASH ? g : 0.0f;
    }
    G[OFF_B1 + c] += sb;
  }
  K(conv_wgrad)(w->d1, S1, w->x, 3, 1024, 32, 6, 896, w->gv1, WG1_OB);
  for (int k = 0; k < 1176; k++) w->d1[w->a1[k]] = 0.0f;
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
  /* fold the lanes, leaving gv zero for the next job */
  for (int k = 0; k < 450; k++) {
    G[OFF_W1 + k] += K(hsum)(K(ld)(w->gv1 + k * KW));
    K(st)(w->gv1 + k * KW, (K(vf)){0});
  }
  for (int k = 0; k < 2400; k++) {
    G[OFF_W2 + k] += K(hsum)(K(ld)(w->gv2 + k * KW));
    K(st)(w->gv2 + k * KW, (K(vf)){0});
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

/* The sum of the threads' gradients, then torch's SGD rule, on [lo, hi);
 * the gradients are left zero for the next step. */
static KATTR void K(reduce_sgd)(float *restrict P, float *restrict V, float *const *G, int nt,
                                int lo, int hi, float lr, float mu, int first) {
  int i = lo;
  for (; i + KW <= hi; i += KW) {
    K(vf) g = K(ld)(G[0] + i);
    K(st)(G[0] + i, (K(vf)){0});
    for (int t = 1; t < nt; t++) {
      g += K(ld)(G[t] + i);
      K(st)(G[t] + i, (K(vf)){0});
    }
    K(vf) v = first ? g : mu * K(ld)(V + i) + g;
    K(st)(V + i, v);
    K(st)(P + i, K(ld)(P + i) - lr * v);
  }
  for (; i < hi; i++) {
    float g = G[0][i];
    G[0][i] = 0.0f;
    for (int t = 1; t < nt; t++) {
      g += G[t][i];
      G[t][i] = 0.0f;
    }
    V[i] = first ? g : mu * V[i] + g;
    P[i] -= lr * V[i];
  }
}
