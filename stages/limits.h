/*
 * limits.h -- every hard limit on untrusted input, in one place.
 *
 * Each limit can be changed at build time: make CFLAGS_EXTRA=-DPK_LIMIT_X=...
 * The README's "Limits" section lists them; keep the two in step.
 */
#ifndef PK_LIMITS_H
#define PK_LIMITS_H

/* ---- the magic language --------------------------------------------- */
#ifndef PK_LIMIT_CELL_BYTES
#define PK_LIMIT_CELL_BYTES (1u << 20)      /* code of one execute_request */
#endif
#ifndef PK_LIMIT_LINE_ARGS
#define PK_LIMIT_LINE_ARGS 256              /* words on one magic line */
#endif
#ifndef PK_LIMIT_VAR_DEPTH
#define PK_LIMIT_VAR_DEPTH 8                /* nested ${A} expansions */
#endif
#ifndef PK_LIMIT_VARS
#define PK_LIMIT_VARS 4096                  /* %set variables */
#endif

/* ---- the wire --------------------------------------------------------- */
#ifndef PK_LIMIT_MSG_BYTES
#define PK_LIMIT_MSG_BYTES (64u << 20)      /* one message, all frames */
#endif
#ifndef PK_LIMIT_MSG_FRAMES
#define PK_LIMIT_MSG_FRAMES 64              /* frames in one message */
#endif

/* ---- pickles (stages/pickle.c) ------------------------------------- */
/* (the pickle reader adds its limits here) */

/* ---- archives (stages/extract.c) ------------------------------------ */
/* (the extractor adds its limits here) */

/* ---- downloads (stages/download.c) ---------------------------------- */
/* (the downloader adds its limits here) */

/* ---- S3 (stages/s3.c) ------------------------------------------------ */
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
#ifndef PK_LIMIT_S3_LIST_KEYS
#define PK_LIMIT_S3_LIST_KEYS 10000000        /* keys read by one listing */
#endif

/* ---- images (stages/png.c, stages/preview.c) ------------------------- */
/* (the preview adds its limits here) */

#endif
