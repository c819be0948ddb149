/*
 * utf8.c -- UTF-8 validation after Unicode Table 3-7 (no overlongs, no
 * surrogates, nothing above U+10FFFF), the same rules jansson applies.
 */
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

int utf8_seq(const unsigned char *s, size_t len) {
  unsigned char b = s[0];
  if (b < 0x80) return 1;
  int need;
  unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
  if (b >= 0xC2 && b <= 0xDF) need = 2;
  else if (b == 0xE0) { need = 3; lo = 0xA0; }
  else if (b >= 0xE1 && b <= 0xEC) need = 3;
  else if (b == 0xED) { need = 3; hi = 0x9F; }
  else if (b >= 0xEE && b <= 0xEF) need = 3;
  else if (b == 0xF0) { need = 4; lo = 0x90; }
  else if (b >= 0xF1 && b <= 0xF3) need = 4;
  else if (b == 0xF4) { need = 4; hi = 0x8F; }
  else return 0;
  for (int i = 1; i < need; i++) {
    if ((size_t)i >= len) return -need;
    unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
    if (s[i] < lo_i || s[i] > hi_i) return 0;
  }
  return need;
}

size_t utf8_clean(const char *in, size_t len, int final, char *out, size_t *consumed) {
  const unsigned char *s = (const unsigned char *)in;
  size_t i = 0, o = 0;
  while (i < len) {
    int n = utf8_seq(s + i, len - i);
    if (n > 0) {
      memcpy(out + o, s + i, (size_t)n);
      o += (size_t)n;
      i += (size_t)n;
    } else if (n < 0 && !final) {
      break; /* incomplete tail: wait for more */
    } else {
      memcpy(out + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i++;
    }
  }
  if (consumed) *consumed = i;
  return o;
}

/* Length of one code point at s, as utf8_clean would count it. */
static size_t step(const unsigned char *s, size_t len) {
  int n = utf8_seq(s, len);
  return n > 0 ? (size_t)n : 1;
}

size_t utf8_cp_to_byte(const char *s, size_t len, size_t cp) {
  size_t i = 0;
  while (cp && i < len) {
    i += step((const unsigned char *)s + i, len - i);
    cp--;
  }
  return i > len ? len : i;
}

size_t utf8_byte_to_cp(const char *s, size_t len, size_t byte) {
  if (byte > len) byte = len;
  size_t i = 0, cp = 0;
  while (i < byte) {
    i += step((const unsigned char *)s + i, len - i);
    cp++;
  }
  return cp;
}

json_t *utf8_json(const char *s, size_t len) {
  char *tmp = malloc(len * 3 + 1);
  if (!tmp) return NULL;
  size_t n = utf8_clean(s, len, 1, tmp, NULL);
  json_t *j = json_stringn(tmp, n);
  free(tmp);
  return j;
}
