/*
 * escape.c -- names from outside shown as text (see escape.h).
 */
#include "escape.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The length of the valid UTF-8 sequence at s[0..n) and its code point, or
 * 0 when s[0] does not start one (overlong forms, surrogates and code
 * points past U+10FFFF are not valid). */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  size_t len;
  uint32_t v, min;
  if (c < 0x80) { *cp = c; return 1; }
  if (c >= 0xc2 && c <= 0xdf) { len = 2; v = c & 0x1fu; min = 0x80; }
  else if (c >= 0xe0 && c <= 0xef) { len = 3; v = c & 0x0fu; min = 0x800; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; v = c & 0x07u; min = 0x10000; }
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    v = v << 6 | (s[i] & 0x3fu);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *cp = v;
  return len;
}

/* A code point shown escaped even when its encoding is valid. */
static int escaped_cp(uint32_t cp) {
  return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x200e || cp == 0x200f ||
         (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 ||
         cp == 0x2029;
}

/* What s[0..n) starts with: *len bytes, to be shown as they are (0) or as
 * the escape written into e (1). */
static int next_piece(const unsigned char *s, size_t n, size_t *len, char e[12]) {
  uint32_t cp;
  size_t k = utf8_seq(s, n, &cp);
  if (!k) {
    snprintf(e, 12, "\\x%02x", s[0]);
    *len = 1;
    return 1;
  }
  *len = k;
  if (!escaped_cp(cp)) return 0;
  if (cp < 0x80) snprintf(e, 12, "\\x%02x", (unsigned)cp);
  else snprintf(e, 12, "\\u%04x", (unsigned)cp);
  return 1;
}

/* esc_text, saying in *used how many bytes of s it took. */
static size_t esc_run(char *out, size_t cap, const char *s, size_t n, size_t *used) {
  const unsigned char *p = (const unsigned char *)s;
  size_t o = 0, i = 0;
  while (i < n) {
    size_t len;
    char e[12];
    const char *src = (const char *)p + i;
    size_t slen;
    if (next_piece(p + i, n - i, &len, e)) {
      src = e;
      slen = strlen(e);
    } else {
      slen = len;
    }
    if (o + slen >= cap) break;
    memcpy(out + o, src, slen);
    o += slen;
    i += len;
  }
  out[o] = 0;
  *used = i;
  return o;
}

size_t esc_text(char *out, size_t cap, const char *s, size_t n) {
  size_t used;
  return esc_run(out, cap, s, n, &used);
}

int esc_needed(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    if (p[i] >= 0x20 && p[i] < 0x7f) { i++; continue; } /* the usual case */
    size_t len;
    char e[12];
    if (next_piece(p + i, n - i, &len, e)) return 1;
    i += len;
  }
  return 0;
}

void esc_inplace(char *buf, size_t cap) {
  size_t n = strlen(buf);
  if (!esc_needed(buf, n)) return;
  char *copy = malloc(n + 1);
  if (!copy) { /* no memory for a copy: the escaped bytes become '?' */
    for (size_t i = 0; i < n; i++)
      if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] >= 0x7f) buf[i] = '?';
    return;
  }
  memcpy(copy, buf, n + 1);
  esc_text(buf, cap, copy, n);
  free(copy);
}

char *esc_dup(const char *s) {
  size_t n = strlen(s), cap = esc_needed(s, n) ? 6 * n + 1 : n + 1;
  char *out = malloc(cap);
  if (out) esc_text(out, cap, s, n);
  return out;
}

const char *esc_name(esc_buf *b, const char *s) {
  if (!s) return "";
  size_t n = strlen(s), used;
  esc_run(b->s, sizeof b->s, s, n, &used);
  if (used < n) { /* cut (never inside an escape or a code point): say so */
    size_t w = esc_run(b->s, sizeof b->s - 3, s, n, &used);
    memcpy(b->s + w, "...", 4);
  }
  return b->s;
}
