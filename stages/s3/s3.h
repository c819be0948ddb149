/*
 * s3.h -- stage 7: %upload (SigV4, parallel multipart, end-to-end ETag
 * checks) and %s3ls (ListObjectsV2), over libcurl with XML read by expat.
 */
#ifndef PK_S3_H
#define PK_S3_H

#include <stdint.h>

#include "lib/stage.h"

int s3_upload(st_ctx *c, const st_args *a, st_error *err);
int s3_ls(st_ctx *c, const st_args *a, st_error *err);

extern const st_option s3_upload_opts[];
extern const st_option s3_ls_opts[];

/* s3://BUCKET[/KEY] -> bucket and key (key may be ""); checks the bucket
 * name (3-63 of a-z 0-9 . -) and the key length. */
int s3_parse_url(const char *url, char *bucket, size_t bcap, char *key, size_t kcap,
                 st_error *err);

/* One object read by s3_get: where its bytes go, and what was found. */
typedef struct s3_get_obj {
  const char *key;        /* set by s3_get while it runs */
  const char *path;       /* the file fd is, for messages (may be NULL) */
  int fd;                 /* written with pwrite, each range at its offset; -1: not written */
  /* gets every byte in order (the bytes of `resume` first), from one thread
   * that is not the stage thread; nonzero stops the read with that code */
  int (*sink)(void *ud, const uint8_t *p, size_t n);
  void *sink_ud;
  int want_md5;           /* compute the whole object's md5 (a single PUT's always is) */
  const char *md5_given;  /* the md5 the user expects, or NULL */
  uint64_t resume;        /* bytes already in fd from an earlier run */
  /* what was found */
  uint64_t size;
  char etag[80];          /* unquoted */
  int nparts;             /* of a multipart upload's ETag; 0: one PUT */
  char md5[33];           /* "" when not computed */
  char check[96];         /* what the ETag check was: "ETag = md5", ... */
  uint64_t done;          /* bytes from 0 whose answers were checked (resumed ones included):
                             after a failure, what fd holds and a resume may keep */
} s3_get_obj;

/* Reads s3://BUCKET/KEY with the line's connection options (those of
 * %upload) and --jobs --part-size --retries --timeout: HEAD, then ranged
 * GETs in parallel, the bytes written to p->fd and given to p->sink in
 * order, each answer checked, and the ETag checked at the end (the md5 of
 * the bytes, or of the part md5s of a multipart upload): ST_ECHECKSUM when
 * it does not match. pr (may be NULL) is begun by the caller, in bytes. */
int s3_get(st_ctx *c, const st_args *a, const char *url, s3_get_obj *p, st_progress *pr,
           st_error *err);

/* The objects below the prefix of url (s3://BUCKET/PREFIX/), in key order,
 * with the line's connection options (those of %upload): their keys (whole,
 * the prefix included) into keys and their sizes into a malloc'd *sizes.
 * Folder markers (a key ending in '/' with no bytes) are left out. */
struct strv;
int s3_list_prefix(st_ctx *c, const st_args *a, const char *url, struct strv *keys,
                   uint64_t **sizes, st_error *err);

/* Every object below the prefix of url (s3://BUCKET/PREFIX/) to
 * dir/relative/key, options as s3_get; keys that would lead out of dir
 * refuse the whole download (ST_EUNSAFE) before anything is written. An
 * object that fails is reported in a table and the others go on; the
 * first failure's code is returned at the end. */
int s3_get_tree(st_ctx *c, const st_args *a, const char *url, const char *dir, st_error *err);

/* For fuzzing and tests: every S3 response parser of stages/s3/ on one body, as
 * the answer to each request (<Error>, ListObjectsV2 twice as two pages,
 * ListMultipartUploads, InitiateMultipartUpload, CompleteMultipartUpload).
 * No network. Returns how many accepted it, or -1 when a parser broke its
 * own contract (a failure without an error, an entry without a key). */
int s3__parse_responses(const char *body, size_t len);
/* For tests: the parser of one request's answer ("ListObjectsV2",
 * "ListMultipartUploads", "CreateMultipartUpload", "CompleteMultipartUpload")
 * on body, as the request would read it. Returns 0, or the ST_E* code of the
 * refusal with err naming `where`; 1 for a CompleteMultipartUpload answered
 * with an <Error> document. */
int s3__parse_response(const char *request, const char *body, size_t len, const char *where,
                       st_error *err);

#define S3_ROWS                                                                 \
  {"upload", s3_upload, 2, 2, ST_F_SLOW, "s3",                                  \
   "%upload PATH s3://BUCKET/PREFIX [--endpoint URL] [--region R] [--profile P] " \
   "[--part-size MiB] [--threshold MiB] [--jobs N] [--create-bucket] [--path-style] " \
   "[--skip-existing] [--cold] "                                                \
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
