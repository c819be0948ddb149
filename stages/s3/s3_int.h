/*
 * s3_int.h -- what the files of stages/s3/ share; nothing outside the room
 * includes it (the stages' entry points are in s3.h).
 *
 *   http.c       the connection (endpoint, addressing, credentials), one
 *                signed request (SigV4, sigv4.c) on a libcurl handle,
 *                retries with backoff, errors with S3's Code and Message
 *   xml.c        the expat walker every response parser uses; <Error>
 *   list.c       ListObjectsV2 and %s3ls
 *   multipart.c  Create/Complete/Abort/ListMultipartUploads, the ETags
 *   upload.c     %upload: the tree walk, hashing threads, the transfer loop
 *   get.c        reading objects: ranged GETs in parallel, taken in order by
 *                one thread that writes, hashes and checks the ETag
 *   tree.c       %download s3://BUCKET/PREFIX/: every object below a prefix
 *
 * Secrets never leave aws_config (awsconfig.c): errors carry the HTTP
 * status, S3's Code and Message, bucket and key.
 */
#ifndef PK_S3_INT_H
#define PK_S3_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "awsconfig.h"
#include "lib/blockw.h"
#include "lib/dynbuf.h"
#include "lib/limits.h"
#include "lib/stage.h"
#include "s3.h"
#include "sigv4.h"

#define MiB (1024ULL * 1024ULL)
#define S3_MIN_PART (5 * MiB)    /* S3's smallest part (but the last) */
#define S3_MAX_PART (5120 * MiB) /* and largest */
#define S3_MAX_PARTS 10000       /* parts of one multipart upload */

/* Called at the end of every element with its parent's and its own name
 * and its text. */
typedef void (*s3__xml_end_fn)(void *ud, const char *parent, const char *name, const char *text);

/* What an <Error> document says. */
typedef struct {
  char code[128], message[512], request_id[128];
} s3_err_xml;

/* Where requests go and how they are signed; cn->ctx may be NULL (no
 * cancellation, no retry lines). */
typedef struct s3_conn {
  aws_config cfg;
  char scheme[8];
  char authority[300]; /* host[:port] of the endpoint */
  char base[512];      /* path prefix of the endpoint ("" or "/x") */
  char bucket[64];
  int path_style;
  const char *cacert;
  char *ca;            /* --cacert's bundle, read once (never blocking on a FIFO) */
  size_t calen;
  CURL *easy; /* control requests */
  st_ctx *ctx;
  long deadline_s; /* nonzero: whole-request time limit (aborts while cleaning up) */
  int retries_shown; /* retry lines printed so far (bounded) */
  int max_attempts;  /* tries of one data request (0: PK_LIMIT_S3_ATTEMPTS) */
  long stall_s;      /* connect timeout and longest stall of a request (0: 10 s, 60 s) */
  /* set: retry lines go to say(say_ud, line), not to the context (threads
   * other than the stage thread queue them so) */
  void (*say)(void *ud, const char *line);
  void *say_ud;
} s3_conn;

/* One request, before signing. */
typedef struct s3_req {
  const char *method; /* GET PUT POST HEAD DELETE */
  const char *key;    /* NULL or "": the bucket itself */
  sigv4_kv query[4];
  size_t nquery;
  const char *payload_sha256; /* hex */
  const char *content_md5;    /* base64, or NULL */
  const char *body;           /* PUT/POST body */
  size_t body_len;
  const char *range;          /* GET: "bytes=A-B", or NULL (unsigned header) */
  const char *if_match;       /* an ETag, quoted, the object must still have */
} s3_req;

/* The md5 of each psize-byte part of a stream of bytes, into out[0],
 * out[1], ... (at most max of them; `done` counts every part ended). */
typedef struct s3_pmd5 {
  EVP_MD_CTX *md;
  uint64_t psize;   /* 0: not hashing */
  uint64_t in_part; /* bytes of the current part hashed */
  uint8_t (*out)[16];
  size_t done, max;
} s3_pmd5;

/* Starts hashing parts of psize bytes (md made on first use); -1: no memory. */
int s3__pmd5_start(s3_pmd5 *h, uint64_t psize, uint8_t (*out)[16], size_t max);
void s3__pmd5_update(s3_pmd5 *h, const uint8_t *p, size_t n);
/* Ends the current part if it holds any byte (a last, shorter part). */
void s3__pmd5_end(s3_pmd5 *h);
void s3__pmd5_free(s3_pmd5 *h);

/* One response (and the state of the request body being sent); made with
 * s3__resp_init, reused across attempts, freed with s3__resp_free. */
typedef struct s3_resp {
  long status;
  CURLcode cc;
  char curl_err[CURL_ERROR_SIZE];
  dynbuf body;        /* the response body, capped at PK_LIMIT_S3_XML_BYTES */
  char etag[128];
  /* the request body reader */
  const char *src;
  size_t src_len, src_off;
  /* progress of the current attempt */
  _Atomic uint64_t sent;
  struct curl_slist *hdrs;
  char *url;
  /* what the headers of the last answer said (-1: absent) */
  long hstatus;               /* its status line */
  long long clen;             /* Content-Length */
  long long cr_start, cr_end, cr_total; /* Content-Range: bytes START-END/TOTAL */
  int parts_count;            /* x-amz-mp-parts-count, 0: absent */
  /* GET into memory: a 2xx body goes to dst (at most dst_cap bytes; more
   * aborts the transfer and sets overrun), any other body to `body` */
  uint8_t *dst;
  size_t dst_cap, dst_len;
  int overrun;
  /* or, with `direct`, written with pwrite to dst_fd at dst_off (+ dst_len),
   * straight from curl's buffer; a failed write sets write_errno and aborts */
  int direct, dst_fd, write_errno;
  uint64_t dst_off;
  /* and, with bw and dio_fd >= 0 (the same file opened with O_DIRECT) and
   * dst_off aligned, gathered in `stage` (a block of bw) and queued to bw's
   * threads in blocks of S3_DIO_BYTES, to be written through dio_fd past the
   * page cache; s3__resp_flush writes the rest and waits for them */
  blockw *bw;
  blockw_stream bws;
  int dio_fd, dio;
  uint8_t *stage;
  size_t stage_len;
  uint64_t stage_off;         /* the file offset of stage[0] */
  /* and, once s3__resp_hash is called, the md5 of each part of the answer
   * as its bytes arrive */
  s3_pmd5 hash;
} s3_resp;

/* One object of a listing. */
typedef struct s3_obj_info {
  char *key;
  uint64_t size;
  char etag[80];
  char modified[32];
} s3_obj_info;

/* A listing being read (ListObjectsV2 pages), sorted by key when done. */
typedef struct {
  s3_obj_info cur;
  s3_obj_info *items;
  size_t n, cap;
  int truncated, oom;
  int url_encoded; /* this page said <EncodingType>url</EncodingType> */
  char token[1024];
} s3_listing;

/* ListMultipartUploads pages: (key, upload id) pairs. */
typedef struct {
  char key[PK_LIMIT_S3_KEY_BYTES + 1], id[1024];
  char next_key[PK_LIMIT_S3_KEY_BYTES + 1], next_id[1024];
  int truncated;
  char **keys, **ids;
  size_t n, cap;
  int oom;
} s3_mpu_list;

/* %upload: one object (a file) and the whole upload. */
enum { OBJ_PENDING, OBJ_SKIPPED, OBJ_UPLOADED };

typedef struct up_obj {
  char *path, *key;
  uint64_t size, psize;
  int nparts;           /* 0: one PUT */
  int parts_left;
  char *upload_id;      /* an open multipart upload */
  uint8_t (*pmd5)[16];  /* per part (multipart) */
  uint8_t md5[16];      /* single PUT */
  char expect[80];      /* expected ETag, unquoted */
  char etag[80];        /* ETag found, unquoted */
  int state;
} up_obj;

typedef struct upload {
  st_ctx *c;
  s3_conn cn;
  up_obj *objs;
  size_t nobj, cap;
  int jobs;
  uint64_t psize;
  uint64_t threshold; /* objects larger than this go up as multipart uploads */
  int unsigned_payload; /* --integrity md5: UNSIGNED-PAYLOAD, the signed Content-MD5 checks the bytes */
  /* the work cursor and the ready queue (shared with the workers) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t cur_obj;
  int cur_part;
  int buffers, max_buffers;
  struct up_task *ready_head, *ready_tail;
  int stop;
  int werr_code;
  char werr_where[1024], werr_text[512];
  CURLM *multi;
  _Atomic uint64_t hashed;
  /* part buffers are reused: fresh pages cost a fault each */
  uint64_t pool_size; /* bytes of each pooled buffer (the largest part) */
  uint8_t **pool;
  int npool;
} upload;

/* ---- xml.c ---- */
/* Parses body, calling fn at the end of each element; root (may be NULL)
 * receives the document element's name. 0 or ST_EFORMAT naming `where`
 * and the byte offset. */
int s3__xml_parse(const char *body, size_t len, s3__xml_end_fn fn, void *ud, char *root,
                  size_t rootcap, const char *where, st_error *err);
/* An <Error> body: Code, Message and RequestId (empty when absent or when
 * the body is not XML). */
void s3__err_doc(const char *body, size_t len, s3_err_xml *e);

/* ---- http.c ---- */
/* The connection of a stage's line: credentials and region (the chain of
 * awsconfig.c), --endpoint, addressing, --cacert. s3__conn_close always. */
int s3__conn_open(s3_conn *cn, st_ctx *c, const st_args *a, const char *bucket, st_error *err);
void s3__conn_close(s3_conn *cn);
/* The magic being run ("upload", "download"), for messages; and the tries
 * of one data request. */
const char *s3__stage_name(const s3_conn *cn);
int s3__attempts(const s3_conn *cn);
/* "s3://BUCKET/KEY" into out. */
void s3__where(const s3_conn *cn, const char *key, char *out, size_t cap);
void s3__resp_init(s3_resp *r);
/* Ready for another attempt (the body buffer is kept). */
void s3__resp_clear(s3_resp *r);
void s3__resp_free(s3_resp *r);
/* Signs rq and sets up easy to send it; r receives the response. */
int s3__req_setup(s3_conn *cn, CURL *easy, const s3_req *rq, s3_resp *r, st_error *err);
/* After a transfer: 0 when 2xx, 1 when worth retrying, -1 when not. */
int s3__classify(const s3_resp *r);
/* The error of a failed exchange: status, S3 Code and Message, bucket, key. */
int s3__resp_error(const s3_conn *cn, const char *key, const char *what, const s3_resp *r,
                   int attempts, st_error *err);
/* Seconds to wait before attempt + 1 (exponential, jittered, at most 8). */
double s3__backoff(int attempt);
/* One line on stderr per retry (the first S3_RETRY_LINES of a stage), so a
 * slow transfer says why: on the stage thread, or through cn->say from any
 * thread; silent without a context. */
#define S3_RETRY_LINES 20 /* retry lines a stage shows */
#define S3_SAY_BYTES 1600 /* one retry line */
#define S3_DIO_ALIGN 4096u /* O_DIRECT: offsets, lengths and memory */
#define S3_DIO_BYTES (1024u * 1024u) /* one O_DIRECT write */
/* One line of retries shown (at most 20, then "more retries"), or handed
 * to cn->say where that is set. */
void s3__say(s3_conn *cn, const char *line);
/* Hash the answer's bytes as they arrive: the md5 of each ps bytes into
 * out[0], out[1], ... at most max (after s3__req_setup, each attempt; -1:
 * no memory); _end makes the md5 of a last, shorter part once the answer
 * is whole. */
int s3__resp_hash(s3_resp *r, uint64_t ps, uint8_t (*out)[16], size_t max);
void s3__resp_hash_end(s3_resp *r);
/* The end of a direct answer that was checked: what `stage` still holds is
 * written (the aligned blocks through dio_fd, the tail through dst_fd) and
 * every block of the answer is on the file. -1 with write_errno set when
 * one cannot be. */
int s3__resp_flush(s3_resp *r);
/* Waits until no write of the answer is left in bw's queue (each attempt's
 * end, whatever its outcome: a retry must not be overwritten by the bytes
 * of the attempt before; and before its file is cut or closed). */
void s3__resp_settle(s3_resp *r);
void s3__say_retry(s3_conn *cn, const char *key, const char *what, const s3_resp *r,
                   int attempt, double delay);
/* Sleeps up to secs; 1 when interrupted. */
int s3__nap(st_ctx *c, double secs);
/* A control request on cn->easy, retried. 0: 2xx; else the error. With
 * ok404 set, 404 returns 1 without an error. */
int s3__call(s3_conn *cn, const s3_req *rq, s3_resp *r, const char *what, int max_attempts,
             int ok404, st_error *err);
/* The bucket exists (GetBucketLocation); with create, made when missing. */
int s3__bucket_ready(s3_conn *cn, int create, st_error *err);
/* Content-MD5 (base64), lower-case hex, and an ETag without its quotes. */
void s3__md5_b64(const uint8_t md5[16], char out[32]);
void s3__hex16(const uint8_t d[16], char out[33]);
void s3__unquote(const char *in, char *out, size_t cap);

/* ---- list.c ---- */
/* All objects under prefix, sorted by key (S3 lists in binary order). */
int s3__list(s3_conn *cn, const char *prefix, s3_listing *out, st_error *err);
/* One ListObjectsV2 page: its objects are added to out, out->truncated and
 * out->token say whether and where it continues. */
int s3__list_page(const char *body, size_t len, s3_listing *out, const char *where,
                  st_error *err);
void s3__list_free(s3_listing *s);

/* ---- multipart.c ---- */
/* The multipart ETag: md5 of the concatenated part md5s, "-N". */
void s3__multipart_etag(const up_obj *o, char *out, size_t cap);
/* The UploadId of an InitiateMultipartUploadResult (id: 1024 bytes). */
int s3__upload_id_doc(const char *body, size_t len, char *id, const char *where,
                      st_error *err);
/* One ListMultipartUploads page: its (key, upload id) pairs are added to m;
 * m->truncated and the next markers say whether and where it continues. */
int s3__mpu_page(const char *body, size_t len, s3_mpu_list *m, const char *where,
                 st_error *err);
void s3__mpu_free(s3_mpu_list *m);
/* A CompleteMultipartUpload answer: its ETag (etag: 128 bytes, "" when
 * absent); 1 when it is an <Error> document (S3 may answer 200 with one). */
int s3__complete_doc(const char *body, size_t len, char *etag, const char *where,
                     st_error *err);
/* A re-run (--skip-existing) first aborts the unfinished multipart uploads
 * an interrupted earlier run left on the keys it is about to upload. */
int s3__abort_stale(upload *u, const char *prefix, st_error *err);
/* CreateMultipartUpload for o: its upload id and room for its part md5s. */
int s3__create_mpu(upload *u, up_obj *o, st_error *err);
/* HEAD key -> ETag (unquoted). */
int s3__head_etag(upload *u, const char *key, char *out, size_t cap, st_error *err);
/* CompleteMultipartUpload for o, then its ETag checked against the md5 of
 * its part md5s (ST_ECHECKSUM when they differ). */
int s3__complete_mpu(upload *u, up_obj *o, st_error *err);
/* Aborts every multipart upload still open (after an error or an
 * interrupt); what could not be aborted is added to err's text. */
void s3__abort_open(upload *u, st_error *err);

/* ---- get.c ---- */
enum { CH_FLIGHT = 0, CH_DONE, CH_HASHING, CH_HASHED };

/* One object being read: what the caller gave and wants back (pub), its
 * part layout, and the taker's verdict. */
typedef struct gobj {
  s3_get_obj *pub;
  int skip;               /* nothing to read (tree.c: refused or empty) */
  int nparts;             /* of its ETag "HEX-N"; 0: a single PUT */
  uint64_t layouts[8];    /* part sizes to try (GET_MAX_LAYOUTS) */
  int nlayouts;
  int server_said;        /* layouts[0] is what HEAD ?partNumber=1 said */
  int parallel;           /* one layout, each range whole parts: hashed out of order */
  int direct;             /* into a file, no sink, and either nothing to hash (--integrity
                             headers) or streamed: each answer is written by its lane as it
                             arrives, from curl's buffer, with no range buffer */
  int streamed;           /* parallel (no whole md5) or one_range, and direct: each part's
                             md5 is made by its lane as the bytes arrive (s3__resp_hash) */
  uint64_t in_order;      /* bytes from 0 the taker has passed (all checked answers) */
  int guessed;            /* parallel on layouts[0], the likeliest of several candidates:
                             the others are tried on the file's bytes if it does not match */
  uint8_t (*pdig)[16];    /* parallel: the md5 of each part, made by the hashers */
  int one_range;          /* a single PUT read in one range: a hasher makes its md5 */
  uint8_t md5[16];        /* one_range: that md5 */
  uint64_t chunk;         /* bytes of its ranges (whole parts when parallel) */
  int headers_only;       /* its bytes are not hashed (--integrity headers) */
  int has_dio, dio_fd;    /* direct and large: its file opened again with O_DIRECT, for the
                             lanes to write past the page cache (s3_resp.dio_fd) */
  int reserved;           /* its file's space was taken before its first GET (get.c) */
  int began;              /* on_begin was called */
  int dropped;            /* on_begin refused it: nothing is read */
  st_error err;           /* the verdict: 0, or ST_ECHECKSUM */
} gobj;

/* One range of one object, from its GET to the taker. */
typedef struct gchunk {
  gobj *o;
  uint64_t off, len;
  uint8_t *buf;           /* len bytes of room; the answer once CH_DONE */
  int state;              /* CH_FLIGHT: asked for (or to be retried), CH_DONE: here,
                             CH_HASHING: a hasher hashes it, CH_HASHED: the md5s of its
                             parts made (a parallel object), for the taker */
  int attempts;
  double not_before;      /* a retry waits until then */
  struct glane *lane;     /* the lane that reads it while in flight */
  int slot;               /* its easy handle there while in flight, else -1 */
  struct gchunk *pnext;   /* pending (not started) list */
  struct gchunk *qnext;   /* every live range, in order: the taker's queue */
} gchunk;

/* One reading thread: a curl multi handle with its share of the --jobs
 * GETs, taking ranges from the job's pending list. */
typedef struct glane {
  struct gjob *j;
  CURLM *multi;
  CURL **easies;
  s3_resp *resps;
  gchunk **inflight;
  int jobs, active;
  double next_due;        /* the earliest retry waiting, 0: none */
  uint64_t done_bytes;    /* of the ranges this lane finished */
  _Atomic uint64_t shown; /* those and the bytes in flight: for the progress bar */
  pthread_t th;
  int started;
} glane;

/* The reading of a list of objects, in order. */
typedef struct gjob {
  st_ctx *c;
  s3_conn cn;
  gobj *objs;
  size_t nobj;
  int jobs;               /* GETs in flight */
  uint64_t chunk;         /* bytes of one range (--part-size) */
  int window;             /* ranges held at once (in flight or waiting to be taken) */
  uint64_t bufsize;       /* bytes of each range buffer: the largest range */
  int headers_only;       /* --integrity headers: the answers are checked, the bytes not hashed */
  int rereadable;         /* every object's fd can be read back (pread) once written */
  int page_cache;         /* --page-cache: no O_DIRECT writes */
  blockw bw;              /* the O_DIRECT writes' threads and blocks, once bw_open */
  int bw_open;
  int no_layout_heads;    /* HEAD ?partNumber=1 gave no part count once: not asked again */
  st_progress *pr;        /* NULL: none */
  uint64_t total, resumed; /* bytes of the progress bar, and those resumed */
  /* called on the stage thread before an object's first range is asked
   * for (nonzero: the object's verdict is already in o->err and nothing of
   * it is read), and by the taker after the object (its verdict in o->err) */
  int (*on_begin)(void *ud, gobj *o);
  void (*on_object)(void *ud, gobj *o);
  void *ud;
  /* stage thread */
  size_t next_obj;        /* the next range to make */
  uint64_t next_off;
  size_t said_shown;      /* retry lines of the lanes shown */
  struct glane *lanes;    /* the threads that read the ranges */
  int nlanes;
  /* shared with the lanes, the hashers and the taker (mu) */
  pthread_mutex_t mu;
  pthread_cond_t cv;      /* any change: a range here, hashed or taken, an object taken, stop */
  int locks;              /* mu and cv were made */
  gchunk *pend;           /* ranges to start (or retry), newest first */
  int lerr_set;           /* a lane stopped the job with lerr */
  st_error lerr;
  char (*said)[S3_SAY_BYTES]; /* retry lines of the lanes, for the stage thread to show */
  size_t nsaid;
  gchunk *q_head, *q_tail;
  int live;               /* ranges made and not yet taken */
  uint8_t **pool;
  int npool;
  int stop;
  size_t taken;           /* objects the taker finished */
  int terr_code;
  char terr_where[1024], terr_text[512];
  pthread_t taker;
  int taker_started;
  pthread_t hashers[4];   /* hash the parts of a parallel object's ranges, out of order */
  int nhashers;
} gjob;

/* N of an ETag "HEX-N" (1..10000), 0 for a single PUT's "HEX", -1 when it
 * is neither. */
int s3__etag_parts(const char *etag);
/* Part sizes that cut size bytes into n parts, the ones tools use first
 * (8 MiB, 5 MiB, 16 MiB, ...), at most max; how many. */
int s3__layout_candidates(uint64_t size, int n, uint64_t *out, int max);
/* --jobs, --part-size, --retries and --timeout of the line into j (after
 * s3__conn_open, whose connection they tune). */
int s3__get_options(st_ctx *c, const st_args *a, gjob *j, st_error *err);
/* The ETag's part count and the layouts to hash for o. */
int s3__gobj_plan(gjob *j, gobj *o, st_error *err);
void s3__gobj_verdict(gjob *j, gobj *o, uint64_t psize);
int s3__gjob_open(gjob *j, st_error *err);
/* Reads every object of j not skipped; 0 once each was judged (its verdict
 * in o->err), else the first error that stopped the job. */
int s3__gjob_run(gjob *j, st_error *err);
void s3__gjob_close(gjob *j);

#endif
