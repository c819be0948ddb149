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

#define DL_DOWNLOAD_ROWS                                                                 \
  {"download", dl_download, 1, 1, ST_F_SLOW, "data",                                     \
   "%download URL [--to PATH] [--md5 HEX] [--extract DIR] [--verify MANIFEST] [--resume] " \
   "[--retries N] [--timeout S] [--cacert FILE] [--endpoint URL] [--region R] [--profile P] " \
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
   "already received with a Range request (a server that ignores Range is handled\n"  \
   "by skipping what was already received). --resume continues an earlier\n"         \
   "PATH.part. TLS is verified (--cacert FILE adds a CA bundle). --timeout S bounds\n" \
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
