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

/* ---- archives (stages/extract.c) ------------------------------------ */
/* (the extractor adds its limits here) */

/* ---- downloads (stages/download.c) ---------------------------------- */
/* (the downloader adds its limits here) */

/* ---- S3 (stages/s3.c) ------------------------------------------------ */
/* (the uploader adds its limits here) */

/* ---- images (stages/png.c, stages/preview.c) ------------------------- */
#ifndef PK_LIMIT_PREVIEW_IMAGES
#define PK_LIMIT_PREVIEW_IMAGES 256         /* %preview --n */
#endif
#ifndef PK_LIMIT_PREVIEW_SCALE
#define PK_LIMIT_PREVIEW_SCALE 16           /* %preview --scale */
#endif
#ifndef PK_LIMIT_PNG_PIXELS
#define PK_LIMIT_PNG_PIXELS (64u << 20)     /* one encoded PNG, width x height */
#endif

/* ---- training (stages/train.c, stages/cnn*.c) ------------------------ */
#ifndef PK_LIMIT_TRAIN_EPOCHS
#define PK_LIMIT_TRAIN_EPOCHS 10000         /* %train --epochs */
#endif
#ifndef PK_LIMIT_TRAIN_BATCH
#define PK_LIMIT_TRAIN_BATCH 4096           /* %train --batch-size */
#endif
#ifndef PK_LIMIT_TRAIN_THREADS
#define PK_LIMIT_TRAIN_THREADS 64           /* %train --threads */
#endif
#ifndef PK_LIMIT_SAFETENSORS_HEADER
#define PK_LIMIT_SAFETENSORS_HEADER (1u << 20) /* JSON header of --init FILE */
#endif
#ifndef PK_LIMIT_LOSS_POINTS
#define PK_LIMIT_LOSS_POINTS 4096           /* points kept for the loss chart */
#endif

#endif
