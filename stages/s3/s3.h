/*
 * s3.h -- stage 7: %upload (SigV4, parallel multipart, end-to-end ETag
 * checks) and %s3ls (ListObjectsV2), over libcurl with XML read by expat.
 */
#ifndef PK_S3_H
#define PK_S3_H

#include "lib/stage.h"

int s3_upload(st_ctx *c, const st_args *a, st_error *err);
int s3_ls(st_ctx *c, const st_args *a, st_error *err);

extern const st_option s3_upload_opts[];
extern const st_option s3_ls_opts[];

/* s3://BUCKET[/KEY] -> bucket and key (key may be ""); checks the bucket
 * name (3-63 of a-z 0-9 . -) and the key length. */
int s3_parse_url(const char *url, char *bucket, size_t bcap, char *key, size_t kcap,
                 st_error *err);

/* For fuzzing and tests: every S3 response parser of stages/s3/ on one body, as
 * the answer to each request (<Error>, ListObjectsV2 twice as two pages,
 * ListMultipartUploads, InitiateMultipartUpload, CompleteMultipartUpload).
 * No network. Returns how many accepted it, or -1 when a parser broke its
 * own contract (a failure without an error, an entry without a key). */
int s3__parse_responses(const char *body, size_t len);

#define S3_ROWS                                                                 \
  {"upload", s3_upload, 2, 2, ST_F_SLOW, "s3",                                  \
   "%upload PATH s3://BUCKET/PREFIX [--endpoint URL] [--region R] [--profile P] " \
   "[--part-size MiB] [--threshold MiB] [--jobs N] [--create-bucket] [--path-style] " \
   "[--skip-existing] "                                                         \
   "[--cacert FILE]",                                                           \
   "Upload a file or a directory tree to S3 (SigV4, parallel multipart, ETags checked).", \
   "A directory uploads every regular file below it as PREFIX/relative/path; a file\n" \
   "goes to the key the URL names, or to PREFIX/NAME when the URL ends with '/'.\n" \
   "Files up to --threshold (32 MiB) go up in one PUT, larger ones as a multipart\n" \
   "upload in --part-size (8 MiB) parts;\n"                                       \
   "requests run in parallel (--jobs), each with Content-MD5 and a signed SHA-256\n" \
   "payload hash, retried with backoff on 5xx and connection errors. Every object's\n" \
   "ETag is checked after upload. On failure or interrupt, unfinished multipart\n" \
   "uploads are aborted. Credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,\n" \
   "AWS_PROFILE or --profile, ~/.aws/credentials and ~/.aws/config. An explicit\n" \
   "endpoint (--endpoint, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL) uses path-style\n" \
   "addressing unless --virtual-hosted; AWS itself uses virtual-hosted style.",   \
   s3_upload_opts},                                                             \
  {"s3ls", s3_ls, 1, 1, 0, "s3",                                                \
   "%s3ls s3://BUCKET[/PREFIX] [--endpoint URL] [--region R] [--profile P] [--max N]", \
   "List objects under a prefix (ListObjectsV2) as a table.",                   \
   "Connection options and credentials as for %upload.", s3_ls_opts},

#endif
