/*
 * stage.h -- the stage contract.
 *
 * A stage is one %magic: a C function that receives a context (how to talk
 * to whoever runs it), its parsed arguments, and an error struct to fill.
 * Front ends (the Jupyter kernel in kernel/, the shell front end in cli/,
 * the C tests) implement the context callbacks; stages never include ZeroMQ
 * or kernel/ headers, and talk to the front end only through the context:
 * what they show is bytes in MIME bundles, never JSON objects. Of the
 * libraries a stage includes only those its own work needs (OpenSSL,
 * libcurl, libarchive, ISA-L, expat, libpng, zlib, uuid, xxHash); jansson only where
 * the stage itself reads or writes a JSON file: the run record of
 * %timings --json and --compare (report/timings.c) and the safetensors
 * header %train --init reads (train/train.c).
 *
 * Conventions (docs/architecture.md):
 *  - 0 is success, a negative ST_E* code is failure. A failing stage fills
 *    `err` with st_error_set() (first error wins) and returns the code.
 *  - Context callbacks are called only from the thread that runs the stage
 *    function ("the stage thread"). Worker threads aggregate counters and
 *    the stage thread reports them; st_cancelled() is safe from any thread.
 *  - A stage polls st_cancelled() at chunk boundaries, removes what is
 *    partial, and returns ST_ECANCELED.
 *  - Files are written to a temporary name and renamed when complete.
 */
#ifndef PK_STAGE_H
#define PK_STAGE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ */
/* Error codes: XX(code, ename, message). ename becomes the Jupyter    */
/* error reply's `ename`.                                              */
/* ------------------------------------------------------------------ */
#define ST_ERRNO_MAP(XX)                                                   \
  XX(EINVAL,    "UsageError",          "invalid argument")                 \
  XX(ENOENT,    "FileNotFoundError",   "no such file or directory")        \
  XX(EEXIST,    "FileExistsError",     "file exists")                      \
  XX(EACCES,    "PermissionError",     "permission denied")                \
  XX(EIO,       "IOError",             "input/output error")               \
  XX(ENOSPC,    "NoSpaceError",        "no space left on device")          \
  XX(ENOMEM,    "MemoryError",         "out of memory")                    \
  XX(E2BIG,     "LimitError",          "limit exceeded")                   \
  XX(ECANCELED, "KeyboardInterrupt",   "interrupted")                      \
  XX(EFORMAT,   "FormatError",         "malformed input")                  \
  XX(EUNSAFE,   "UnsafeInputError",    "unsafe input refused")             \
  XX(ECHECKSUM, "ChecksumError",       "checksum mismatch")                \
  XX(ENET,      "NetworkError",        "network error")                    \
  XX(ETIMEDOUT, "TimeoutError",        "operation timed out")              \
  XX(ETLS,      "TLSError",            "TLS verification failed")          \
  XX(EHTTP,     "HTTPError",           "HTTP error")                       \
  XX(ES3,       "S3Error",             "S3 error")                         \
  XX(EAUTH,     "CredentialsError",    "credentials not found")            \
  XX(ESTATE,    "StateError",          "required state missing")           \
  XX(ENOTSUP,   "NotSupportedError",   "not supported")                    \
  XX(ENODEV,    "DeviceError",         "device not available")             \
  XX(EUNKNOWN,  "UnknownMagicError",   "unknown magic")                    \
  XX(ESTDIN,    "StdinNotImplementedError", "input not allowed here")      \
  XX(EINTERNAL, "InternalError",       "internal error")

enum st__index {
#define ST__XX(c, e, m) ST__IDX_##c,
  ST_ERRNO_MAP(ST__XX)
#undef ST__XX
  ST__IDX_COUNT
};

enum st_code {
  ST_OK = 0,
#define ST__XX(c, e, m) ST_##c = -1 - ST__IDX_##c,
  ST_ERRNO_MAP(ST__XX)
#undef ST__XX
};

const char *st_strerror(int code); /* "checksum mismatch" */
const char *st_errname(int code);  /* "ChecksumError" */
int st_from_errno(int e);          /* errno -> ST_E* (ENOSPC -> ST_ENOSPC ...) */

/* An error with context. `where` names the file, member, URL or bucket/key;
 * `offset` is a byte offset into it (-1 when meaningless); `text` says what
 * happened and what was expected. Never put credentials in any field. */
typedef struct st_error {
  int code;            /* 0: no error */
  long long offset;    /* -1: none */
  char where[1024];
  char text[1536];
} st_error;

/* Sets err (may be NULL) unless it already holds an error; returns code. */
int st_error_set(st_error *err, int code, const char *where, long long offset,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* As st_error_set with text = "<what>: strerror(errno)". */
int st_error_errno(st_error *err, int errnum, const char *where, const char *what);
void st_error_clear(st_error *err);
/* "where: text (at byte N)"; returns length written (truncated to cap). */
size_t st_error_format(const st_error *err, char *buf, size_t cap);

/* ------------------------------------------------------------------ */
/* Display bundles                                                     */
/* ------------------------------------------------------------------ */
/* One representation. Text types (text/..., image/svg+xml, application/json)
 * carry UTF-8 in data/len; binary types (image/png ...) carry raw bytes,
 * which the front end base64-encodes. width/height > 0 become per-MIME
 * metadata. Every bundle must include text/plain. */
typedef struct st_mime {
  const char *type;
  const void *data;
  size_t len;
  int width, height;
} st_mime;

#define ST_DISPLAY_ID_MAX 48

/* ------------------------------------------------------------------ */
/* Progress                                                            */
/* ------------------------------------------------------------------ */
enum st_progress_state {
  ST_PROGRESS_RUNNING = 0,
  ST_PROGRESS_DONE,
  ST_PROGRESS_FAILED,
  ST_PROGRESS_CANCELLED
};

typedef struct st_ctx st_ctx;

typedef struct st_progress {
  st_ctx *ctx;
  char label[128];     /* "download cifar-10-python.tar.gz" */
  char unit[16];       /* "B": bytes (shown as MB, MB/s); else an item name */
  uint64_t done;
  uint64_t total;      /* 0: unknown */
  double start;        /* st_now() at begin */
  double elapsed;      /* seconds since begin, at the last report */
  double last_emit;    /* st_now() at the last report (throttle) */
  int state;           /* enum st_progress_state */
  char id[ST_DISPLAY_ID_MAX]; /* display id the front end may use */
} st_progress;

/* ------------------------------------------------------------------ */
/* The context: what a front end gives a running stage                 */
/* ------------------------------------------------------------------ */
struct ss_session;

struct st_ctx {
  struct ss_session *session; /* state kept between cells */
  void *fe;                   /* the front end's own data */

  /* stream = 1 (stdout) or 2 (stderr); bytes, any UTF-8 splitting is the
   * front end's problem. */
  void (*write)(st_ctx *c, int stream, const char *buf, size_t len);
  /* update = 0: display_data (display_id may be NULL); 1: update it. */
  void (*display)(st_ctx *c, const st_mime *items, int n,
                  const char *display_id, int update);
  /* Called at begin, at most ~10 times a second, and at end. */
  void (*progress)(st_ctx *c, const st_progress *p);
  /* Nonzero once the user interrupted. Safe from any thread. */
  int (*cancelled)(st_ctx *c);
  /* Optional (NULL allowed) front-end services: */
  void (*clear)(st_ctx *c, int wait);                      /* clear_output */
  int (*input)(st_ctx *c, const char *prompt, int password, char **out,
               st_error *err);                             /* stdin */
  void (*result)(st_ctx *c, const char *text);             /* line value */
  void (*page)(st_ctx *c, const char *text);               /* pager */
  /* Runs one magic line through the front end's dispatcher (%time,
   * %pipeline); returns 0 or ST_E*. */
  int (*run_line)(st_ctx *c, const char *line, st_error *err);

  /* Set by st_run for the line being run (timing records copy them). */
  const char *cur_magic;
  const char *cur_args;
};

/* Helpers over the callbacks (stages/lib/context.c). */
void st_write(st_ctx *c, int stream, const char *buf, size_t len);
void st_printf(st_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void st_eprintf(st_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void st_vprintf(st_ctx *c, int stream, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void st_display(st_ctx *c, const st_mime *items, int n, const char *display_id);
void st_display_update(st_ctx *c, const st_mime *items, int n, const char *display_id);
void st_new_display_id(char out[ST_DISPLAY_ID_MAX]); /* unique across restarts */
int st_cancelled(st_ctx *c);
void st_result(st_ctx *c, const char *text);

void st_progress_begin(st_ctx *c, st_progress *p, const char *label,
                       const char *unit, uint64_t total);
void st_progress_update(st_progress *p, uint64_t done); /* throttled */
void st_progress_set_total(st_progress *p, uint64_t total);
void st_progress_end(st_progress *p, int rc); /* rc: 0, ST_ECANCELED, other */

double st_now(void); /* monotonic seconds */

/* What a front end shows of a progress report, the same in every front end:
 * the label, the amount ("12.0 MB / 180.0 MB", or a count and its unit), the rate for
 * bytes ("" otherwise), the fraction done in [0, 1] (1 once an open-ended
 * report is done) and a 30-character bar of '#' and '.'. */
#define ST_PROGRESS_LABEL_SHOWN 48 /* code points of the label a front end shows */
typedef struct st_progress_view {
  /* the label, at most ST_PROGRESS_LABEL_SHOWN code points: a longer one
   * keeps its first word (the stage) and the end of the rest (a path's file
   * name), with "\u2026" between, so a long path never pushes the figures
   * onto the next line */
  char label[ST_PROGRESS_LABEL_SHOWN * 4 + 4];
  char amount[96];
  char rate[32];
  char bar[31];
  double frac;
} st_progress_view;
void st_progress_view_of(const st_progress *p, st_progress_view *v);

/* A timing record. `stage` is the row of the whitepaper's table
 * (docs/workflow.md: "download", "integrity",
 * "extract", "verify", "pickled", "meta", "upload", "preview", "train") or
 * the magic's name; copied into the session. */
typedef struct st_timing {
  char stage[32];
  char magic[32];
  char args[512];      /* the line's arguments (never credentials) */
  double seconds;
  uint64_t bytes;
  uint64_t items;
  char backend[64];    /* "openssl-evp", "isa-l", "cuda", "cpu-avx2" ... */
  char hash[80];       /* md5 or other digest the stage produced, if any */
  double wall;         /* unix time at the end */
  /* Where the input was read from (stages/lib/cache.h): "cold" when under
   * half of the bytes read were in the page cache when their read began,
   * "warm" otherwise, "" for a stage that read no files (a download, the
   * session's memory); the file system as "TYPE SOURCE" ("ext4 /dev/vda");
   * the fraction resident (-1: not measured). */
  char cache[8];
  char fs[160];
  double resident;
} st_timing;

void st_record_timing(st_ctx *c, const st_timing *t);
/* Convenience: fill and record (no cache or file-system fields; a stage
 * that reads files records through pc_timing_add, stages/lib/cache.h). */
void st_timing_add(st_ctx *c, const char *stage, const char *magic,
                   double seconds, uint64_t bytes, uint64_t items,
                   const char *backend, const char *hash);

/* "1241.2 MB", "537 MB/s": format with decimal MB as the issues do. */
void st_fmt_bytes(char *buf, size_t cap, uint64_t bytes);
void st_fmt_rate(char *buf, size_t cap, uint64_t bytes, double seconds);

/* ------------------------------------------------------------------ */
/* Arguments                                                           */
/* ------------------------------------------------------------------ */
#define ST_MAX_OPTS 24
#define ST_MAX_POS 16

/* One --option of a stage. nargs 0: a flag; 1 or 2: takes that many
 * values (--to PATH, --compare A B). `--name=value` works for nargs 1. */
typedef struct st_option {
  const char *name;    /* without the leading "--" */
  int nargs;
  const char *metavar; /* "PATH" */
  const char *help;
} st_option;

typedef struct st_stage st_stage;

typedef struct st_args {
  const st_stage *stage;
  int npos;
  char *pos[ST_MAX_POS];            /* borrowed from argv */
  const char *val[ST_MAX_OPTS][2];  /* per option: values; "" for a flag */
  int set[ST_MAX_OPTS];             /* option given */
  const char *raw;   /* the unsplit rest of the line (ST_F_RAW stages) */
  const char *body;  /* rest of the cell (ST_F_CELL stages), else NULL */
} st_args;

int st_arg_has(const st_args *a, const char *name);
const char *st_arg_str(const st_args *a, const char *name, const char *dflt);
const char *st_arg_str2(const st_args *a, const char *name, int i); /* i-th value */
/* Parse an integer/double option in [min, max]; absent -> dflt. */
int st_arg_int(const st_args *a, const char *name, long long dflt, long long min,
               long long max, long long *out, st_error *err);
int st_arg_double(const st_args *a, const char *name, double dflt, double min,
                  double max, double *out, st_error *err);
/* Same checks for a positional or any string. */
int st_parse_int(const char *s, const char *what, long long min, long long max,
                 long long *out, st_error *err);
int st_parse_double(const char *s, const char *what, double min, double max,
                    double *out, st_error *err);

/* ------------------------------------------------------------------ */
/* The registry                                                        */
/* ------------------------------------------------------------------ */
typedef int (*st_fn)(st_ctx *c, const st_args *a, st_error *err);

enum st_flags {
  ST_F_BUILTIN = 1 << 0, /* language built-in (listed first by %lsmagic) */
  ST_F_VALUE = 1 << 1,   /* may produce a value (st_result) */
  ST_F_RAW = 1 << 2,     /* gets the unsplit rest of the line in a->raw */
  ST_F_CELL = 1 << 3,    /* alone on its line: takes the rest of the cell */
  ST_F_SLOW = 1 << 4,    /* long-running pipeline stage */
};

struct st_stage {
  const char *name;       /* without '%' */
  st_fn fn;
  int arity_min;          /* positional arguments: at least ... */
  int arity_max;          /* ... at most (-1: no limit) */
  unsigned flags;
  const char *group;      /* "built-in", "data", "load", "s3", "train", "report" */
  const char *usage;      /* "%md5 FILE [--expect HEX]" */
  const char *summary;    /* one line */
  const char *help;       /* paragraphs after usage and options */
  const st_option *opts;  /* terminated by {NULL} or NULL for none */
};

size_t st_registry_count(void);
const st_stage *st_registry_at(size_t i);
const st_stage *st_registry_find(const char *name);
/* Closest name by edit distance, or NULL when nothing is close. */
const char *st_registry_suggest(const char *name);
/* Levenshtein distance of two short strings (99 when either is > 64). */
size_t st__edit_distance(const char *a, const char *b);
/* Full help text (usage, summary, options, help) into a malloc'd string. */
char *st_registry_help(const st_stage *s);

/* Parse argv (argv[0] is the magic name) against s, check arity, call it.
 * raw/body as in st_args. Unknown options get a "did you mean" error. */
int st_run(st_ctx *c, const st_stage *s, int argc, char **argv,
           const char *raw, const char *body, st_error *err);
int st_args_parse(const st_stage *s, int argc, char **argv, st_args *a,
                  st_error *err);

#endif
