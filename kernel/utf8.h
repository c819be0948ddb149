/*
 * utf8.h -- UTF-8 at the protocol boundary: turn stage bytes into valid
 * UTF-8 without splitting a code point, and convert code-point cursor
 * positions (protocol 5.2+) to byte offsets and back.
 */
#ifndef PK_UTF8_H
#define PK_UTF8_H

#include <stddef.h>

#include <jansson.h>

/* Copies [in, in+len) to out as valid UTF-8: each invalid byte becomes
 * U+FFFD. An incomplete sequence at the very end is left unconsumed when
 * final is 0 (it may complete with the next chunk) and replaced when final
 * is 1. out must hold 3 * len bytes. Returns the bytes written; *consumed
 * gets the input bytes used. */
size_t utf8_clean(const char *in, size_t len, int final, char *out, size_t *consumed);

/* A new JSON string of arbitrary bytes: utf8_clean(final 1) of them.
 * NULL when out of memory. */
json_t *utf8_json(const char *s, size_t len);

/* Byte offset of code point cp in s (clamped to len). Invalid bytes count as
 * one code point each, as utf8_clean would replace them. */
size_t utf8_cp_to_byte(const char *s, size_t len, size_t cp);
/* Code points in the first `byte` bytes of s. */
size_t utf8_byte_to_cp(const char *s, size_t len, size_t byte);

/* Length of the valid sequence at s (1..4), 0 when invalid, or -(needed)
 * when s[0..len) is a valid but incomplete prefix. */
int utf8_seq(const unsigned char *s, size_t len);

#endif
