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
#ifndef PK_LIMIT_HISTORY
#define PK_LIMIT_HISTORY 10000              /* cells kept for history_request */
#endif

/* ---- pickles (stages/pickle.c) ------------------------------------- */
/* (the pickle reader adds its limits here) */

/* ---- archives (stages/extract.c) ------------------------------------ */
/* (the extractor adds its limits here) */

/* ---- downloads (stages/download.c) ---------------------------------- */
/* (the downloader adds its limits here) */

/* ---- S3 (stages/s3.c) ------------------------------------------------ */
/* (the uploader adds its limits here) */

/* ---- images (stages/png.c, stages/preview.c) ------------------------- */
/* (the preview adds its limits here) */

#endif
