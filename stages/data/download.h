/*
 * download.h -- %download (stage 1, "download"): libcurl, with md5 while
 * streaming, extraction while downloading and per-member verification, so
 * the whole copy phase is one pass over the bytes.
 */
#ifndef PK_DOWNLOAD_H
#define PK_DOWNLOAD_H

#include "lib/stage.h"

int dl_download(st_ctx *c, const st_args *a, st_error *err);
extern const st_option dl_download_opts[];

/* ---- the checks of a resumed answer (download.c; tests call them) ---- */
#define DL_TAG_MAX 256

/* What the first answer said the resource is: every later answer must be
 * the rest of the same one. */
typedef struct dl_resource {
  long long total;              /* its length, -1: not known */
  char etag[DL_TAG_MAX];        /* its ETag as sent ("" none) */
  char lastmod[DL_TAG_MAX];     /* its Last-Modified ("" none) */
} dl_resource;

/* The headers of one answer, as far as the checks need them. */
typedef struct dl_answer {
  int code;                     /* HTTP status */
  int has_range;                /* a Content-Range header came */
  long long cr_start, cr_end;   /* "bytes A-B/T"; -1 when it did not parse */
  long long cr_total;           /* T; -1 for "*" or unparsed */
  long long clen;               /* Content-Length, -1 none */
  char etag[DL_TAG_MAX];
  char lastmod[DL_TAG_MAX];
} dl_answer;

enum dl_verdict {
  DL_TAKE = 0,  /* the body is what was asked for: take it all */
  DL_WHOLE,     /* a 200 to a Range request: the whole resource again, from byte 0 */
  DL_RESTART,   /* not the rest of the same resource: start again from byte 0 */
  DL_FAIL       /* cannot be used at all */
};

/* Reads one header line data[0..n) of an answer (as curl hands them over,
 * with its line end; not NUL-terminated) into a: the status line starts a
 * new answer, Content-Range, Content-Length, ETag and Last-Modified are
 * kept. Returns 1 for the empty line that ends the headers, else 0. */
int dl__answer_line(dl_answer *a, const char *data, size_t n);
/* The validator a Range request sends as If-Range: the first answer's
 * strong ETag, else its Last-Modified, else NULL (no If-Range). */
const char *dl__if_range(const dl_resource *r);
/* Decides about answer a to a request for bytes from `from` on (0: the
 * whole resource, no Range) of resource r: a 206 must carry exactly
 * "bytes FROM-(T-1)/T" with T the first answer's length (when known), a
 * Content-Length of exactly T - FROM when it has one, and the first
 * answer's ETag (or Last-Modified) when both have one. Anything else is
 * DL_RESTART (a 206 to a request without Range: DL_FAIL), with why saying
 * what did not match. */
int dl__check_answer(const dl_answer *a, unsigned long long from, const dl_resource *r, char *why,
                     size_t cap);

#define DL_DOWNLOAD_ROWS                                                                 \
  {"download", dl_download, 1, 1, ST_F_SLOW, "data",                                     \
   "%download URL [--to PATH] [--md5 HEX] [--extract DIR] [--verify MANIFEST] [--resume] " \
   "[--retries N] [--timeout S] [--cacert FILE] [--max-ratio N] [--endpoint URL] [--region R] [--profile P] " \
   "[--path-style|--virtual-hosted] [--jobs N] [--part-size MiB]",                        \
   "Download a file (http, https, file, s3 URLs) with md5, extraction and verification in one pass.", \
   "The body is written to PATH.part and renamed to PATH once complete and (with\n"    \
   "--md5) correct; a wrong md5 is a ChecksumError showing both digests, and the\n"    \
   "file is removed. With --md5, --extract's work stands only once the md5 is\n"     \
   "right: a wrong md5, an error or an interrupt undoes it (files it replaced in\n"   \
   "DIR come back). The md5 is computed while the bytes arrive. --extract DIR\n"      \
   "feeds the same bytes to the safe extractor of %extract while downloading;\n"      \
   "--verify MANIFEST then checks the manifest (paths relative to DIR, or to the\n"    \
   "manifest's folder without --extract) using the md5 of each member as it was\n"    \
   "written, so nothing is read twice. Connection errors and 5xx answers are retried\n"\
   "(--retries, default 3) with exponential backoff, continuing from the bytes\n"      \
   "already received with a Range request and If-Range (the first answer's ETag or\n" \
   "Last-Modified): a 206 must be exactly the rest of the same file (the range\n"     \
   "asked for, the first answer's length and ETag, no byte more); a server that\n"   \
   "sends the whole file again, or another one, has it taken from byte 0 (with\n"    \
   "--extract, whose members took the first bytes: an error). --resume continues\n" \
   "an earlier PATH.part, which keeps the first answer's length and ETag.\n"        \
   "--max-ratio N bounds how much --extract's archive may expand (as %extract).\n" \
   "TLS is verified (--cacert FILE adds a CA bundle). --timeout S bounds\n"          \
   "the connect time and any stall (default 60). Default PATH: the URL's file name\n"  \
   "in the working folder. Credentials in the URL are never printed.\n"               \
   "s3://BUCKET/KEY reads an object with --jobs (8) ranged GETs of --part-size (32 MiB)\n" \
   "in parallel, each answer checked (206, its exact Content-Range, length and ETag),\n" \
   "and the object's ETag checked end to end (the md5 of a single PUT, the md5 of the\n" \
   "part md5s of a multipart upload); connection options and credentials as for\n"    \
   "%upload. s3://BUCKET/PREFIX/ (or s3://BUCKET) --to DIR copies every object below\n" \
   "the prefix to DIR/relative/key; keys that would lead out of DIR refuse it all.\n"  \
   "Example: %download http://127.0.0.1:8080/cifar-10-python.tar.gz --to data/c.tgz\n"\
   "         --md5 c58f30108f718f92721af3b95e74349a --extract work --verify data/MANIFEST.md5", \
   dl_download_opts},

#endif
