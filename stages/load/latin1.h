/*
 * latin1.h -- UTF-8 text whose code points all fit in one byte.
 *
 * Python 3 writes bytes at pickle protocol 2 as _codecs.encode(str,
 * 'latin1'): the str is the bytes as code points 0..255, so in UTF-8 a byte
 * below 0x80 stays as it is and one above becomes C2 or C3 and a
 * continuation byte. Pixel blocks written that way are half two-byte
 * sequences at random places, which a byte-at-a-time loop reads at about
 * 100 MB/s; these two functions read them 16 bytes at a time where the CPU
 * has SSE2 (scan) and SSSE3 (narrow), with the plain loop elsewhere.
 */
#ifndef PK_LATIN1_H
#define PK_LATIN1_H

#include <stddef.h>
#include <stdint.h>

/* Length of the longest prefix of p[0..n) that is well-formed UTF-8 with
 * every code point <= 255 and ends at a character boundary; *ncp gets the
 * number of code points in it. The caller reads on from there with a
 * general decoder (which then names any error exactly). */
size_t pkl_latin1_prefix(const uint8_t *p, size_t n, size_t *ncp);

/* Narrow src[0..src_len) -- all of it accepted by pkl_latin1_prefix -- into
 * dst[0..dst_len), dst_len being its number of code points. */
void pkl_latin1_narrow(const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_len);

#endif
