/*
 * md5.h -- %md5 (the "integrity" stage) and the md5 helpers of the data
 * stages. All hashing is OpenSSL EVP.
 */
#ifndef PK_MD5_H
#define PK_MD5_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/stage.h"

int md5_stage(st_ctx *c, const st_args *a, st_error *err);
extern const st_option md5_opts[];

/* Lower-case hex of a 16-byte digest into out[33]. */
void md5_hex(const unsigned char d[16], char out[33]);
/* md5 of a memory block, as hex. */
void md5_hex_of(const void *b, size_t n, char out[33]);
/* 1 when s is 32 hex digits (either case). */
int md5_valid_hex(const char *s);

/* md5 of the first `size` bytes of an open regular file, hashed straight
 * from a read-only mapping (no copy out of the page cache), `step` bytes at
 * a time between progress (*bytes) and cancellation checks. A file cut
 * short while it is hashed is ST_EIO naming the offset of the first lost
 * byte, not a SIGBUS that ends the process (mapguard.h). Thread-safe. */
int md5_mapped(int fd, uint64_t size, const char *where, size_t step, st_ctx *c,
                  atomic_uint_fast64_t *bytes, char out[33], st_error *err);

#define MD5_ROWS                                                                      \
  {"md5", md5_stage, 1, 1, ST_F_SLOW, "data", "%md5 FILE [--expect HEX] [--cold]",                   \
   "md5 of a file, optionally checked (stage 2, \"integrity\").",                       \
   "OpenSSL EVP md5 over 1 MiB reads; a reader thread keeps the next chunks coming\n"   \
   "(with sequential read-ahead hints) while the stage thread hashes. Prints the\n"    \
   "digest and a summary line. With --expect, a different digest is a\n"               \
   "ChecksumError that shows both. Example:\n"                                          \
   "  %md5 data/cifar-10-python.tar.gz --expect c58f30108f718f92721af3b95e74349a",      \
   md5_opts},

#endif
