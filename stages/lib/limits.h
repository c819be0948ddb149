/*
 * limits.h -- every hard limit on untrusted input, in one place.
 *
 * Each limit can be changed at build time: make CFLAGS_EXTRA=-DPK_LIMIT_X=...
 * docs/limits.md lists them (tests/test_limits_doc.py checks the two agree).
 * The _Static_asserts at the end hold each limit inside what the code's
 * types and buffers are built for, so a value set at build time that the
 * code cannot honour fails the build instead of the run.
 */
#ifndef PK_LIMITS_H
#define PK_LIMITS_H

#include <limits.h>
#include <stdint.h>

/* ---- the magic language ------------------------------------------------- */
#ifndef PK_LIMIT_CELL_BYTES
#define PK_LIMIT_CELL_BYTES (1u << 20)      /* code of one execute_request */
#endif
#ifndef PK_LIMIT_LINE_ARGS
#define PK_LIMIT_LINE_ARGS 256              /* words on one magic line */
#endif
#ifndef PK_LIMIT_LINE_DEPTH
#define PK_LIMIT_LINE_DEPTH 16              /* lines run by lines (%time, %ifset) */
#endif
#ifndef PK_LIMIT_VARS
#define PK_LIMIT_VARS 4096                  /* %set variables */
#endif

/* ---- the wire ----------------------------------------------------------- */
#ifndef PK_LIMIT_CONN_FILE_BYTES
#define PK_LIMIT_CONN_FILE_BYTES (64u << 10) /* the connection file */
#endif
#ifndef PK_LIMIT_MSG_BYTES
#define PK_LIMIT_MSG_BYTES (64u << 20)      /* one message, all frames */
#endif
#ifndef PK_LIMIT_MSG_FRAMES
#define PK_LIMIT_MSG_FRAMES 64              /* frames in one message */
#endif
#ifndef PK_LIMIT_HISTORY
#define PK_LIMIT_HISTORY 10000              /* cells kept for history_request */
#endif
#ifndef PK_LIMIT_HISTORY_BYTES
#define PK_LIMIT_HISTORY_BYTES (64u << 20)  /* their code and output, all together */
#endif

/* ---- pickles (stages/load/pickle.c) ------------------------------------- */
#ifndef PK_LIMIT_PICKLE_FILE_BYTES
#define PK_LIMIT_PICKLE_FILE_BYTES (4ull << 30) /* one pickle file */
#endif
#ifndef PK_LIMIT_PICKLE_STACK
#define PK_LIMIT_PICKLE_STACK (1u << 20)    /* values on the stack */
#endif
#ifndef PK_LIMIT_PICKLE_MARKS
#define PK_LIMIT_PICKLE_MARKS 64            /* open MARKs (nesting depth) */
#endif
#ifndef PK_LIMIT_PICKLE_MEMO
#define PK_LIMIT_PICKLE_MEMO (1u << 22)     /* memo index; also < file size */
#endif
#ifndef PK_LIMIT_PICKLE_ITEMS
#define PK_LIMIT_PICKLE_ITEMS (1u << 24)    /* values made, all together */
#endif
#ifndef PK_LIMIT_PICKLE_NDIM
#define PK_LIMIT_PICKLE_NDIM 8              /* array dimensions */
#endif
#ifndef PK_LIMIT_PICKLE_LONG_BYTES
#define PK_LIMIT_PICKLE_LONG_BYTES 8        /* LONG1/LONG4 payload (int64) */
#endif
#ifndef PK_LIMIT_LOAD_FILES
#define PK_LIMIT_LOAD_FILES 100000          /* data_batch_* files per folder */
#endif
#ifndef PK_LIMIT_LOAD_CLASSES
#define PK_LIMIT_LOAD_CLASSES 256           /* label_names in batches.meta */
#endif
#ifndef PK_LIMIT_LOAD_THREADS
#define PK_LIMIT_LOAD_THREADS 8             /* copy threads of %load */
#endif

/* ---- archives (stages/data/extract.c) ----------------------------------- */
#ifndef PK_LIMIT_EXTRACT_ENTRIES
#define PK_LIMIT_EXTRACT_ENTRIES 1000000    /* members of one archive */
#endif
#ifndef PK_LIMIT_EXTRACT_BYTES
#define PK_LIMIT_EXTRACT_BYTES (1ull << 40) /* all members together (1 TiB) */
#endif
#ifndef PK_LIMIT_EXTRACT_PATH
#define PK_LIMIT_EXTRACT_PATH 1024          /* bytes of one member name */
#endif
#ifndef PK_LIMIT_EXTRACT_DEPTH
#define PK_LIMIT_EXTRACT_DEPTH 32           /* path components of one member */
#endif
#ifndef PK_LIMIT_EXTRACT_RATIO
#define PK_LIMIT_EXTRACT_RATIO 200          /* bytes extracted per archive byte (--max-ratio) */
#endif
#ifndef PK_LIMIT_EXTRACT_RATIO_FREE
#define PK_LIMIT_EXTRACT_RATIO_FREE (64u << 20) /* bytes extracted before the ratio counts */
#endif

/* ---- manifests and %verify (stages/data/manifest.c, stages/data/verify.c) --- */
#ifndef PK_LIMIT_MANIFEST_BYTES
#define PK_LIMIT_MANIFEST_BYTES (64u << 20) /* one md5sum manifest file */
#endif
#ifndef PK_LIMIT_MANIFEST_ENTRIES
#define PK_LIMIT_MANIFEST_ENTRIES 1000000   /* lines naming a file */
#endif
#ifndef PK_LIMIT_MANIFEST_PATH
#define PK_LIMIT_MANIFEST_PATH 1024         /* bytes of one path */
#endif
#ifndef PK_LIMIT_VERIFY_JOBS
#define PK_LIMIT_VERIFY_JOBS 64             /* %verify --jobs */
#endif

/* ---- downloads (stages/data/download.c) --------------------------------- */
#ifndef PK_LIMIT_DOWNLOAD_BYTES
#define PK_LIMIT_DOWNLOAD_BYTES (1ull << 40) /* one response body (1 TiB) */
#endif
#ifndef PK_LIMIT_DOWNLOAD_RETRIES
#define PK_LIMIT_DOWNLOAD_RETRIES 20        /* %download --retries */
#endif
#ifndef PK_LIMIT_DOWNLOAD_REDIRECTS
#define PK_LIMIT_DOWNLOAD_REDIRECTS 10      /* HTTP redirects followed */
#endif
#ifndef PK_LIMIT_CACERT_BYTES
#define PK_LIMIT_CACERT_BYTES (16u << 20)   /* a --cacert bundle (read into memory) */
#endif

/* ---- S3 (stages/s3/) ---------------------------------------------------- */
#ifndef PK_LIMIT_AWS_CONFIG_BYTES
#define PK_LIMIT_AWS_CONFIG_BYTES (1 << 20)   /* ~/.aws/credentials or config */
#endif
#ifndef PK_LIMIT_S3_XML_BYTES
#define PK_LIMIT_S3_XML_BYTES (16 << 20)      /* one S3 response body */
#endif
#ifndef PK_LIMIT_S3_FILES
#define PK_LIMIT_S3_FILES 1000000             /* files in one %upload */
#endif
#ifndef PK_LIMIT_S3_KEY_BYTES
#define PK_LIMIT_S3_KEY_BYTES 1024            /* an object key (S3's own limit) */
#endif
#ifndef PK_LIMIT_S3_BUFFER_BYTES
#define PK_LIMIT_S3_BUFFER_BYTES (1024LL << 20) /* part buffers in memory at once */
#endif
#ifndef PK_LIMIT_S3_ATTEMPTS
#define PK_LIMIT_S3_ATTEMPTS 5                /* tries per request (backoff between) */
#endif
#ifndef PK_LIMIT_S3_TABLE_ROWS
#define PK_LIMIT_S3_TABLE_ROWS 200            /* rows shown in the %upload table */
#endif
#ifndef PK_LIMIT_S3_LIST_EMPTY_PAGES
#define PK_LIMIT_S3_LIST_EMPTY_PAGES 100      /* truncated pages in a row with no key */
#endif
#ifndef PK_LIMIT_S3_LIST_KEYS
#define PK_LIMIT_S3_LIST_KEYS 10000000        /* keys read by one listing */
#endif

/* ---- images (stages/lib/png.c, stages/load/preview.c) ------------------- */
#ifndef PK_LIMIT_PREVIEW_IMAGES
#define PK_LIMIT_PREVIEW_IMAGES 256         /* %preview --n */
#endif
#ifndef PK_LIMIT_PREVIEW_SCALE
#define PK_LIMIT_PREVIEW_SCALE 16           /* %preview --scale */
#endif
#ifndef PK_LIMIT_PNG_PIXELS
#define PK_LIMIT_PNG_PIXELS (64u << 20)     /* one encoded PNG, width x height */
#endif

/* ---- training (stages/train/train.c, stages/train/cnn*.c) --------------- */
#ifndef PK_LIMIT_TRAIN_EPOCHS
#define PK_LIMIT_TRAIN_EPOCHS 10000         /* %train --epochs */
#endif
#ifndef PK_LIMIT_TRAIN_BATCH
#define PK_LIMIT_TRAIN_BATCH 4096           /* %train --batch-size */
#endif
#ifndef PK_LIMIT_TRAIN_THREADS
#define PK_LIMIT_TRAIN_THREADS 64           /* %train --threads */
#endif
#ifndef PK_LIMIT_TRAIN_WINDOW
#define PK_LIMIT_TRAIN_WINDOW 1024          /* %train --from: --window, --prefetch (files) */
#endif
#ifndef PK_LIMIT_SAFETENSORS_HEADER
#define PK_LIMIT_SAFETENSORS_HEADER (1u << 20) /* JSON header of --init FILE */
#endif
#ifndef PK_LIMIT_LOSS_POINTS
#define PK_LIMIT_LOSS_POINTS 4096           /* points kept for the loss chart */
#endif

/* ---- reports (stages/report/timings.c) ---------------------------------- */
#ifndef PK_LIMIT_TIMINGS_RECORD_BYTES
#define PK_LIMIT_TIMINGS_RECORD_BYTES (64u << 20) /* a %timings --compare record file */
#endif

/* ---- bounds the code depends on -------------------------------------- */
/* Counts and sizes that the code prints with %u or %d, keeps in an int, or
 * compares after a cast must fit those types. */
#define PK__FITS_UINT(x) ((unsigned long long)(x) <= UINT_MAX)
#define PK__FITS_INT(x) ((unsigned long long)(x) <= INT_MAX)
_Static_assert(PK__FITS_UINT(PK_LIMIT_CELL_BYTES) && PK__FITS_UINT(PK_LIMIT_MSG_BYTES),
               "cell and message sizes are printed and compared as unsigned");
_Static_assert(PK_LIMIT_CELL_BYTES <= PK_LIMIT_MSG_BYTES,
               "a cell the kernel accepts must fit in a message it accepts");
_Static_assert((unsigned long long)PK_LIMIT_HISTORY_BYTES <= SIZE_MAX && PK_LIMIT_HISTORY >= 1,
               "history bytes are counted in a size_t; at least the last cell is kept");
_Static_assert(PK__FITS_UINT(PK_LIMIT_PICKLE_STACK) && PK__FITS_UINT(PK_LIMIT_PICKLE_MEMO) &&
               PK__FITS_UINT(PK_LIMIT_PICKLE_ITEMS),
               "pickle stack, memo and value counts are printed as unsigned");
_Static_assert((unsigned long long)PK_LIMIT_PICKLE_FILE_BYTES <= SIZE_MAX,
               "a pickle file is mapped whole: its length is a size_t");
_Static_assert(PK_LIMIT_PICKLE_LONG_BYTES >= 1 && PK_LIMIT_PICKLE_LONG_BYTES <= 8,
               "LONG1/LONG4 payloads are read into an int64_t");
_Static_assert(PK_LIMIT_PICKLE_NDIM >= 2, "CIFAR data is a 2-dimensional (N, 3072) array");
_Static_assert(PK_LIMIT_LOAD_CLASSES >= 10 && PK_LIMIT_LOAD_CLASSES <= 256,
               "labels are kept as one byte each; CIFAR-10 has 10 classes");
_Static_assert(PK__FITS_UINT(PK_LIMIT_EXTRACT_ENTRIES) && PK__FITS_UINT(PK_LIMIT_MANIFEST_BYTES) &&
               PK__FITS_UINT(PK_LIMIT_MANIFEST_ENTRIES) && PK__FITS_UINT(PK_LIMIT_PNG_PIXELS),
               "printed as unsigned");
_Static_assert(PK__FITS_INT(PK_LIMIT_AWS_CONFIG_BYTES) && PK__FITS_INT(PK_LIMIT_S3_XML_BYTES) &&
               PK__FITS_INT(PK_LIMIT_S3_FILES) && PK__FITS_INT(PK_LIMIT_S3_LIST_KEYS) &&
               PK__FITS_INT(PK_LIMIT_LOAD_FILES) && PK__FITS_INT(PK_LIMIT_DOWNLOAD_RETRIES) &&
               PK__FITS_INT(PK_LIMIT_TRAIN_EPOCHS) && PK__FITS_INT(PK_LIMIT_TRAIN_BATCH) &&
               PK__FITS_INT(PK_LIMIT_TRAIN_THREADS) && PK__FITS_INT(PK_LIMIT_TRAIN_WINDOW) &&
               PK__FITS_INT(PK_LIMIT_DOWNLOAD_REDIRECTS),
               "printed with %d or kept in an int");
_Static_assert(PK_LIMIT_EXTRACT_RATIO >= 1 && PK_LIMIT_EXTRACT_RATIO <= 1000000000,
               "--max-ratio is an integer option up to 10^9; a ratio below 1 refuses plain tar");
_Static_assert((unsigned long long)PK_LIMIT_CACERT_BYTES <= SIZE_MAX &&
               (unsigned long long)PK_LIMIT_TIMINGS_RECORD_BYTES <= SIZE_MAX,
               "read into memory whole: a size_t");
_Static_assert(PK_LIMIT_S3_BUFFER_BYTES >= (5LL << 20),
               "at least one part buffer of S3's smallest part size (5 MiB) fits");
_Static_assert(PK_LIMIT_S3_ATTEMPTS >= 1 && PK_LIMIT_S3_LIST_EMPTY_PAGES >= 1,
               "every request is tried at least once, every listing page read");
_Static_assert(PK_LIMIT_S3_KEY_BYTES >= 1 && PK_LIMIT_S3_KEY_BYTES <= 65536,
               "keys are held in char arrays of PK_LIMIT_S3_KEY_BYTES + a few kB");
/* Limits that size arrays on a thread's stack (char path[PK_LIMIT_...],
 * pthread_t th[PK_LIMIT_...], the loss chart's points): at least one, and
 * small enough for a default 8 MiB stack. */
_Static_assert(PK_LIMIT_LINE_ARGS >= 1 && PK_LIMIT_LINE_ARGS <= 65536 &&
               PK_LIMIT_LINE_DEPTH >= 1 && PK_LIMIT_LINE_DEPTH <= 1024,
               "words of a line are offsets on the stack, once per nested line");
_Static_assert(PK_LIMIT_MSG_FRAMES >= 6 && PK_LIMIT_MSG_FRAMES <= 4096,
               "a message is at least delimiter, signature and four JSON frames; frames are "
               "collected in arrays on the stack");
_Static_assert(PK_LIMIT_PICKLE_MARKS >= 1 && PK_LIMIT_PICKLE_MARKS <= 4096,
               "open MARKs are an array inside the reader");
_Static_assert(PK_LIMIT_EXTRACT_PATH >= 256 && PK_LIMIT_EXTRACT_PATH <= 65536 &&
               PK_LIMIT_EXTRACT_DEPTH >= 1 && PK_LIMIT_MANIFEST_PATH >= 256 &&
               PK_LIMIT_MANIFEST_PATH <= 65536,
               "member names and manifest paths are copied into char arrays on the stack");
_Static_assert(PK_LIMIT_LOAD_THREADS >= 1 && PK_LIMIT_LOAD_THREADS <= 1024 &&
               PK_LIMIT_VERIFY_JOBS >= 1 && PK_LIMIT_VERIFY_JOBS <= 1024,
               "thread handles are arrays on the stack");
_Static_assert(PK_LIMIT_PREVIEW_IMAGES >= 1 && PK_LIMIT_PREVIEW_IMAGES <= 4096 &&
               PK_LIMIT_PREVIEW_SCALE >= 1 && PK_LIMIT_PREVIEW_SCALE <= 256,
               "image indices and the names line are on the stack; grid sizes are ints");
_Static_assert(PK_LIMIT_LOSS_POINTS >= 2 && PK_LIMIT_LOSS_POINTS <= 65536,
               "the loss chart halves a full array of points");

#endif
