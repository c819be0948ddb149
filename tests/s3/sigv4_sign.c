/*
 * sigv4_sign.c -- a test tool: signs one S3 request with stages/s3/sigv4.c and
 * prints the intermediate results, so the Python tests can compare them with
 * botocore's signer. Built by tests/s3/conftest.py (cc ... stages/s3/sigv4.c
 * -lcrypto); not part of pipekernel.
 *
 *   sigv4_sign METHOD RAWPATH AMZDATE REGION ACCESS SECRET PAYLOADHASH
 *              [q NAME VALUE]... [h NAME VALUE]...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3/sigv4.h"

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: sigv4_sign METHOD RAWPATH AMZDATE REGION ACCESS SECRET PAYLOAD "
                    "[q NAME VALUE]... [h NAME VALUE]...\n");
    return 2;
  }
  sigv4_kv q[64], h[64];
  size_t nq = 0, nh = 0;
  for (int i = 8; i + 2 < argc; i += 3) {
    if (strcmp(argv[i], "q") == 0 && nq < 64) q[nq++] = (sigv4_kv){argv[i + 1], argv[i + 2]};
    else if (strcmp(argv[i], "h") == 0 && nh < 64) h[nh++] = (sigv4_kv){argv[i + 1], argv[i + 2]};
    else return 2;
  }
  sigv4_request r = {.method = argv[1], .path = argv[2], .rules = SIGV4_S3, .query = q,
                     .nquery = nq, .headers = h, .nheaders = nh, .payload_sha256 = argv[7],
                     .amz_date = argv[3], .region = argv[4], .service = "s3"};
  sigv4_result res;
  if (sigv4_sign(&r, argv[5], argv[6], &res)) return 1;
  printf("%s\n--\n%s\n--\n%s\n", res.canonical_request, res.string_to_sign, res.authorization);
  sigv4_result_free(&res);
  return 0;
}
