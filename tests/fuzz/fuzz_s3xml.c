/*
 * fuzz_s3xml.c -- hostile S3 response bodies through every parser of
 * stages/s3/ (error documents, ListObjectsV2 pages, ListMultipartUploads,
 * InitiateMultipartUpload and CompleteMultipartUpload results) via
 * s3__parse_responses, which also checks what each parser accepted.
 */
#include <stdint.h>
#include <stdlib.h>

#include "lib/limits.h"
#include "s3/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > PK_LIMIT_S3_XML_BYTES) return 0; /* the body reader refuses more */
  if (s3__parse_responses((const char *)data, size) < 0) abort();
  return 0;
}
