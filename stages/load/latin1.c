/*
 * latin1.c -- UTF-8 with code points <= 255, read 16 bytes at a time
 * (see latin1.h).
 *
 * In this subset a byte is ASCII (< 0x80), a lead (C2 or C3) or a
 * continuation (80..BF), and the text is well-formed exactly when the
 * continuations are the leads shifted on by one byte. With SSE2 a block of
 * 16 bytes gives those three sets as 16-bit masks, so checking a block is a
 * few mask operations. Narrowing computes every lead's code point in
 * place, ((lead & 3) << 6) | (next & 0x3f), and drops the continuations
 * with SSSE3 byte shuffles looked up by 8-bit keep masks.
 */
#include "latin1.h"

#include <pthread.h>

#if defined(__SSE2__) && (defined(__x86_64__) || defined(__i386__))
#define PKL_LATIN1_X86 1
#include <immintrin.h>
#endif

/* The scalar rule, for the tails and for other CPUs. */
static size_t scan_scalar(const uint8_t *p, size_t i, size_t n, size_t *count) {
  size_t c = *count;
  while (i < n) {
    uint8_t b = p[i];
    if (b < 0x80) {
      i++;
    } else if ((b & 0xfe) == 0xc2 && i + 1 < n && (p[i + 1] & 0xc0) == 0x80) {
      i += 2;
    } else {
      break;
    }
    c++;
  }
  *count = c;
  return i;
}

static void narrow_scalar(const uint8_t *src, size_t i, size_t n, uint8_t *dst) {
  while (i < n) {
    uint8_t b = src[i];
    if (b < 0x80) {
      *dst++ = b;
      i++;
    } else {
      *dst++ = (uint8_t)((b & 0x03) << 6 | (src[i + 1] & 0x3f));
      i += 2;
    }
  }
}

#ifdef PKL_LATIN1_X86
size_t pkl_latin1_prefix(const uint8_t *p, size_t n, size_t *ncp) {
  const __m128i fe = _mm_set1_epi8((char)0xfe), c2 = _mm_set1_epi8((char)0xc2);
  const __m128i below_c0 = _mm_set1_epi8((char)0xbf); /* signed: x > -65 is x >= 0xc0 or ASCII */
  size_t i = 0, count = 0;
  unsigned carry = 0; /* p[i - 1] is a lead */
  while (n - i >= 16) {
    __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
    unsigned hi = (unsigned)_mm_movemask_epi8(x);
    if (!(hi | carry)) {
      i += 16;
      count += 16;
      continue;
    }
    unsigned lead = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(x, fe), c2));
    unsigned ge_c0 = (unsigned)_mm_movemask_epi8(_mm_cmpgt_epi8(x, below_c0)) & hi;
    unsigned cont = hi & ~ge_c0;
    if (ge_c0 != lead || cont != (((lead << 1) | carry) & 0xffffu)) break;
    count += 16 - (size_t)__builtin_popcount(cont);
    carry = lead >> 15;
    i += 16;
  }
  if (carry) { /* step back to the boundary before the open lead */
    i--;
    count--;
  }
  i = scan_scalar(p, i, n, &count);
  *ncp = count;
  return i;
}

/* shuffle[m]: the positions of the set bits of m, then 0x80 (a zero byte). */
static uint8_t shuffle[256][8];
static int have_ssse3;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_tables(void) {
  for (unsigned m = 0; m < 256; m++) {
    unsigned k = 0;
    for (unsigned b = 0; b < 8; b++)
      if (m >> b & 1) shuffle[m][k++] = (uint8_t)b;
    while (k < 8) shuffle[m][k++] = 0x80;
  }
  __builtin_cpu_init();
  have_ssse3 = __builtin_cpu_supports("ssse3");
}

__attribute__((target("ssse3"))) static size_t narrow_ssse3(const uint8_t *src, size_t n,
                                                             uint8_t *dst, size_t out_n,
                                                             size_t *out_done) {
  const __m128i three = _mm_set1_epi8(3), low6 = _mm_set1_epi8(0x3f), eight = _mm_set1_epi8(8);
  const __m128i zero = _mm_setzero_si128(), below_c0 = _mm_set1_epi8((char)0xbf);
  size_t i = 0, o = 0;
  /* each step reads 17 bytes and stores 16 (the last of them garbage that
   * the next step or the tail overwrites) */
  while (n - i >= 17 && out_n - o >= 16) {
    __m128i x = _mm_loadu_si128((const __m128i *)(src + i));
    unsigned hi = (unsigned)_mm_movemask_epi8(x);
    if (!hi) {
      _mm_storeu_si128((__m128i *)(dst + o), x);
      i += 16;
      o += 16;
      continue;
    }
    __m128i next = _mm_loadu_si128((const __m128i *)(src + i + 1));
    __m128i leadv = _mm_and_si128(_mm_cmpgt_epi8(x, below_c0), _mm_cmplt_epi8(x, zero));
    unsigned lead = (unsigned)_mm_movemask_epi8(leadv);
    __m128i pair = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(x, three), 6), _mm_and_si128(next, low6));
    __m128i v = _mm_or_si128(_mm_and_si128(leadv, pair), _mm_andnot_si128(leadv, x));
    unsigned keep = ~(lead << 1) & 0xffffu;
    unsigned klo = keep & 0xff, khi = keep >> 8;
    __m128i slo = _mm_loadl_epi64((const __m128i *)shuffle[klo]);
    __m128i shi = _mm_add_epi8(_mm_loadl_epi64((const __m128i *)shuffle[khi]), eight);
    _mm_storel_epi64((__m128i *)(dst + o), _mm_shuffle_epi8(v, slo));
    o += (size_t)__builtin_popcount(klo);
    _mm_storel_epi64((__m128i *)(dst + o), _mm_shuffle_epi8(v, shi));
    o += (size_t)__builtin_popcount(khi);
    i += 16 + (lead >> 15); /* a lead in the last byte took the next one */
  }
  *out_done = o;
  return i;
}

void pkl_latin1_narrow(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_len) {
  pthread_once(&once, init_tables);
  size_t i = 0, o = 0;
  if (have_ssse3) i = narrow_ssse3(src, src_len, dst, dst_len, &o);
  narrow_scalar(src, i, src_len, dst + o);
}
#else
size_t pkl_latin1_prefix(const uint8_t *p, size_t n, size_t *ncp) {
  size_t count = 0;
  size_t i = scan_scalar(p, 0, n, &count);
  *ncp = count;
  return i;
}

void pkl_latin1_narrow(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_len) {
  (void)dst_len;
  narrow_scalar(src, 0, src_len, dst);
}
#endif
