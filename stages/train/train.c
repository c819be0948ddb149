/*
 * train.c -- %train (stage 9): the tutorial CNN on the session's data.
 *
 * The math lives in the trainer core (cnn.h); this file is the stage: the
 * options, picking a backend, the epoch loop with the original log lines, a
 * live loss chart, progress, interrupts, test accuracy, the per-class
 * table, and safetensors in (jansson, strict) and out. The model stays in
 * the session (session->trainer) between cells.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cnn.h"
#include "lib/cache.h"
#include "lib/dynbuf.h"
#include "lib/fileio.h"
#include "lib/limits.h"
#include "lib/session.h"
#include "lib/table.h"
#include "load/load.h"
#include "stream.h"
#include "train.h"

const st_option tr_train_opts[] = {
    {"epochs", 1, "N", "passes over the train split (default 2; 0: no training)"},
    {"batch-size", 1, "B", "images per step (default 4)"},
    {"lr", 1, "LR", "learning rate (default 0.001)"},
    {"momentum", 1, "M", "SGD momentum (default 0.9)"},
    {"device", 1, "DEV", "auto, cpu or cuda (default auto: cuda when a device answers)"},
    {"seed", 1, "S", "seed of the initial weights and the shuffles (default: new, printed)"},
    {"log-every", 1, "K", "print the mean loss every K batches (default 2000)"},
    {"init", 1, "FILE", "start from these weights (safetensors)"},
    {"save", 1, "FILE", "write the weights at the end (safetensors)"},
    {"threads", 1, "N", "CPU threads (default: all cores)"},
    {"name", 1, "NAME", "dataset (default: the last loaded)"},
    {"losses", 1, "FILE", "also write every step's loss to FILE, one per line (%.9g)"},
    {"new", 0, NULL, "start from fresh weights even if the session holds a model"},
    {"from", 1, "DIR", "train straight from DIR's batch files, read ahead on a thread (no %load)"},
    {"window", 1, "W", "--from: files whose images are shuffled together (default 2)"},
    {"prefetch", 1, "N", "--from: files read ahead of the window being trained (default 2)"},
    {"order", 1, "FILE", "write the images in the order trained: epoch, file, index in the file"},
    {"endpoint", 1, "URL", "--from s3://: the S3 endpoint (default: as %upload finds it)"},
    PC_COLD_OPTION,
    {NULL, 0, NULL, NULL}};

static const char *const cifar_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                            "dog", "frog", "horse", "ship", "truck"};

/* The model kept in the session. */
typedef struct tr_model {
  float params[CNN_NPARAM];
  int have;
} tr_model;

static void model_free(void *p) { free(p); }

static tr_model *session_model(ss_session *s) {
  if (!s->trainer) {
    tr_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    s->trainer = m;
    s->trainer_free = model_free;
  }
  return s->trainer;
}

/* ------------------------------------------------------------------ */
/* safetensors in                                                      */
/* ------------------------------------------------------------------ */
/* A file being read: its bytes, the parsed header and what was taken. */
typedef struct sft_read {
  const char *path;
  st_error *err;
  float *params;        /* out: CNN_NPARAM floats */
  uint8_t *buf;         /* the whole file */
  size_t size;
  size_t data0, dlen;   /* where the data bytes start, and how many there are */
  json_t *root;         /* the header */
  int seen[CNN_NTENSORS];
} sft_read;

/* Reads the whole file (a regular file, no larger than these weights can
 * be) into r->buf. */
static int sft_read_file(sft_read *r) {
  struct stat sb; /* a FIFO or a device is refused, never waited on */
  int fd = fio_open(r->path, O_RDONLY, FIO_FILE, "the --init file", &sb, r->err);
  if (fd < 0) return fd;
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    close(fd);
    return st_error_errno(r->err, errno, r->path, "cannot open");
  }
  size_t max = 8 + PK_LIMIT_SAFETENSORS_HEADER + (size_t)CNN_NPARAM * 4 + 4096;
  int rc = 0;
  r->size = (size_t)sb.st_size;
  if (r->size > max)
    rc = st_error_set(r->err, ST_E2BIG, r->path, -1,
                      "%zu bytes: larger than this network's weights can be (%zu)", r->size, max);
  if (!rc) r->buf = malloc(r->size ? r->size : 1);
  if (!rc && !r->buf) rc = st_error_set(r->err, ST_ENOMEM, r->path, -1, "out of memory");
  size_t got = rc ? 0 : fread(r->buf, 1, r->size, f);
  fclose(f);
  if (!rc && got != r->size) rc = st_error_set(r->err, ST_EIO, r->path, (long long)got, "short read");
  return rc;
}

/* The 8-byte little-endian header length and the JSON object it covers
 * (duplicate keys refused). */
static int sft_parse_header(sft_read *r) {
  if (r->size < 8)
    return st_error_set(r->err, ST_EFORMAT, r->path, 0,
                        "truncated: %zu bytes, expected an 8-byte header length", r->size);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)r->buf[i] << (8 * i);
  if (hlen > PK_LIMIT_SAFETENSORS_HEADER || hlen > r->size - 8)
    return st_error_set(r->err, ST_EFORMAT, r->path, 0,
                        "header length %llu does not fit the file (%zu bytes; limit %u)",
                        (unsigned long long)hlen, r->size, (unsigned)PK_LIMIT_SAFETENSORS_HEADER);
  json_error_t je;
  r->root = json_loadb((const char *)r->buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
  if (!r->root || !json_is_object(r->root))
    return st_error_set(r->err, ST_EFORMAT, r->path, r->root ? 8 : 8 + je.position,
                        "header is not a JSON object%s%s", r->root ? "" : ": ", r->root ? "" : je.text);
  r->data0 = 8 + (size_t)hlen;
  r->dlen = r->size - r->data0;
  return 0;
}

/* A tensor's "shape" is exactly T's; else the error shows both. */
static int sft_check_shape(sft_read *r, const char *where, const cnn_tensor *T, json_t *sh) {
  int shape_ok = (int)json_array_size(sh) == T->ndim;
  for (int d = 0; shape_ok && d < T->ndim; d++)
    shape_ok = json_is_integer(json_array_get(sh, (size_t)d)) &&
               json_integer_value(json_array_get(sh, (size_t)d)) == T->shape[d];
  if (shape_ok) return 0;
  char got_s[128] = "", want[64] = "";
  char *dump = json_dumps(sh, JSON_COMPACT);
  snprintf(got_s, sizeof got_s, "%s", dump ? dump : "?");
  free(dump);
  size_t o = 0;
  for (int d = 0; d < T->ndim; d++)
    o += (size_t)snprintf(want + o, sizeof want - o, "%s%d", d ? "," : "[", T->shape[d]);
  snprintf(want + o, sizeof want - o, "]");
  return st_error_set(r->err, ST_EFORMAT, where, 8, "shape %s, expected %s", got_s, want);
}

/* One header entry {dtype F32, shape, data_offsets} of tensor T: checks it
 * and copies its finite little-endian floats into params. */
static int sft_take_tensor(sft_read *r, const char *where, const cnn_tensor *T, json_t *val) {
  json_t *dt = json_object_get(val, "dtype"), *sh = json_object_get(val, "shape"),
         *of = json_object_get(val, "data_offsets");
  if (!json_is_object(val) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(of))
    return st_error_set(r->err, ST_EFORMAT, where, 8, "expected {dtype, shape, data_offsets}");
  if (strcmp(json_string_value(dt), "F32") != 0)
    return st_error_set(r->err, ST_EFORMAT, where, 8, "dtype %s, expected F32", json_string_value(dt));
  int rc = sft_check_shape(r, where, T, sh);
  if (rc) return rc;
  json_t *b = json_array_get(of, 0), *e = json_array_get(of, 1);
  if (json_array_size(of) != 2 || !json_is_integer(b) || !json_is_integer(e))
    return st_error_set(r->err, ST_EFORMAT, where, 8, "data_offsets must be [begin, end]");
  json_int_t bi = json_integer_value(b), ei = json_integer_value(e);
  size_t data0 = r->data0;
  if (bi < 0 || ei < bi || (uint64_t)ei > r->dlen)
    return st_error_set(r->err, ST_EFORMAT, where, (long long)data0,
                        "data_offsets [%lld, %lld] outside the %zu data bytes (file truncated?)",
                        (long long)bi, (long long)ei, r->dlen);
  if ((uint64_t)(ei - bi) != T->count * 4)
    return st_error_set(r->err, ST_EFORMAT, where, (long long)data0 + bi,
                        "%lld data bytes, expected %zu", (long long)(ei - bi), T->count * 4);
  const uint8_t *src = r->buf + data0 + bi;
  for (size_t i = 0; i < T->count; i++) {
    uint32_t u = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                 (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
    float v;
    memcpy(&v, &u, 4);
    if (!isfinite(v))
      return st_error_set(r->err, ST_EFORMAT, where, (long long)(data0 + bi + 4 * i),
                          "element %zu is not finite", i);
    r->params[T->offset + i] = v;
  }
  return 0;
}

/* Every key of the header: __metadata__ (an object) or one of the
 * network's tensors, each taken by sft_take_tensor. */
static int sft_take_tensors(sft_read *r) {
  const char *key;
  json_t *val;
  json_object_foreach(r->root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      if (!json_is_object(val))
        return st_error_set(r->err, ST_EFORMAT, r->path, 8, "__metadata__ is not an object");
      continue;
    }
    int t = -1;
    for (int i = 0; i < CNN_NTENSORS; i++)
      if (strcmp(cnn_tensors[i].name, key) == 0) t = i;
    char where[1100];
    snprintf(where, sizeof where, "%s: tensor %s", r->path, key);
    if (t < 0)
      return st_error_set(r->err, ST_EFORMAT, where, 8,
                          "unexpected tensor; expected only conv1.weight ... fc3.bias");
    r->seen[t] = 1;
    int rc = sft_take_tensor(r, where, &cnn_tensors[t], val);
    if (rc) return rc;
  }
  return 0;
}

/* No tensor of the network is missing. */
static int sft_check_complete(sft_read *r) {
  for (int i = 0; i < CNN_NTENSORS; i++)
    if (!r->seen[i])
      return st_error_set(r->err, ST_EFORMAT, r->path, 8, "tensor %s is missing", cnn_tensors[i].name);
  return 0;
}

int tr_safetensors_read(const char *path, float *params, st_error *err) {
  sft_read r;
  memset(&r, 0, sizeof r);
  r.path = path;
  r.err = err;
  r.params = params;
  int rc = sft_read_file(&r);
  if (!rc) rc = sft_parse_header(&r);
  if (!rc) rc = sft_take_tensors(&r);
  if (!rc) rc = sft_check_complete(&r);
  json_decref(r.root);
  free(r.buf);
  return rc;
}

/* ------------------------------------------------------------------ */
/* The live loss chart                                                 */
/* ------------------------------------------------------------------ */
typedef struct loss_chart {
  double x[PK_LIMIT_LOSS_POINTS], y[PK_LIMIT_LOSS_POINTS];
  int n;
  double total_x;     /* batches in the whole run (x axis) */
  char id[ST_DISPLAY_ID_MAX];
  int shown;
  double last;
} loss_chart;

static void chart_add(loss_chart *ch, double x, double y) {
  if (ch->n == PK_LIMIT_LOSS_POINTS) { /* keep every other point */
    for (int i = 0; i < ch->n / 2; i++) {
      ch->x[i] = ch->x[2 * i + 1];
      ch->y[i] = ch->y[2 * i + 1];
    }
    ch->n /= 2;
  }
  ch->x[ch->n] = x;
  ch->y[ch->n] = y;
  ch->n++;
}

/* Shows the chart (a new display the first time, then updates of it, at
 * most every 0.3 s unless force): an SVG line of the points and a text
 * summary. Nothing is shown when the SVG cannot be built. */
static void chart_show(st_ctx *c, loss_chart *ch, int force) {
  double now = st_now();
  if (ch->shown && !force && now - ch->last < 0.3) return;
  ch->last = now;
  const int W = 560, H = 260, L = 56, R = 16, T = 28, B = 40;
  double ymax = 0.1, xmax = ch->total_x > 0 ? ch->total_x : 1;
  for (int i = 0; i < ch->n; i++) ymax = ch->y[i] > ymax ? ch->y[i] : ymax;
  ymax = ceil(ymax * 2) / 2;
  dynbuf svg = DYN_INIT(4096 + (size_t)ch->n * 40); /* a point takes at most 40 bytes */
  dyn_printf(&svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
             "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">", W, H, W, H);
  dyn_printf(&svg, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>", W, H);
  dyn_printf(&svg, "<text x=\"%d\" y=\"16\" font-size=\"13\">training loss (mean over each logged "
             "interval)</text>", L);
  dyn_printf(&svg, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", L, H - B, W - R, H - B);
  dyn_printf(&svg, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", L, T, L, H - B);
  for (int k = 0; k <= 4; k++) {
    double v = ymax * k / 4, py = (H - B) - (H - B - T) * (double)k / 4;
    dyn_printf(&svg, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>", L, py, W - R, py);
    dyn_printf(&svg, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>", L - 4, py + 4, v);
    double xv = xmax * k / 4, px = L + (W - L - R) * (double)k / 4;
    dyn_printf(&svg, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f</text>", px, H - B + 14, xv);
  }
  dyn_printf(&svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">mini-batches</text>", (W + L) / 2, H - 6);
  dyn_puts(&svg, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"");
  for (int i = 0; i < ch->n; i++)
    dyn_printf(&svg, "%.1f,%.1f ", L + (W - L - R) * ch->x[i] / xmax,
               (H - B) - (H - B - T) * ch->y[i] / ymax);
  if (dyn_puts(&svg, "\"/></svg>")) {
    dyn_free(&svg);
    return;
  }
  char txt[320];
  int t = snprintf(txt, sizeof txt, "loss chart: %d point%s", ch->n, ch->n == 1 ? "" : "s");
  if (ch->n)
    snprintf(txt + t, sizeof txt - (size_t)t, ", latest %.3f at batch %.0f", ch->y[ch->n - 1],
             ch->x[ch->n - 1]);
  st_mime m[2] = {{"image/svg+xml", svg.p, svg.len, 0, 0}, {"text/plain", txt, strlen(txt), 0, 0}};
  if (!ch->shown) {
    st_new_display_id(ch->id);
    st_display(c, m, 2, ch->id);
    ch->shown = 1;
  } else {
    st_display_update(c, m, 2, ch->id);
  }
  dyn_free(&svg);
}

/* ------------------------------------------------------------------ */
/* The stage: options, a job, a chain of steps, one cleanup            */
/* ------------------------------------------------------------------ */
static uint64_t fresh_seed(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  cnn_rng r = {(uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid() << 40};
  return cnn_rng_next(&r) & 0xFFFFFFFFull; /* short enough to retype */
}

static int pick_backend(const char *dev, const cnn_backend **out, char *why, size_t cap,
                        st_error *err) {
  const cnn_backend *cu = cnn_cuda_backend();
  char cw[256] = "built without CUDA";
  int cu_ok = cu && cu->available(cw, sizeof cw);
  if (strcmp(dev, "cpu") == 0) {
    *out = &cnn_cpu_backend;
    snprintf(why, cap, "requested with --device cpu");
    return 0;
  }
  if (strcmp(dev, "cuda") == 0) {
    if (!cu_ok) return st_error_set(err, ST_ENODEV, "--device cuda", -1, "%s", cw);
    *out = cu;
    snprintf(why, cap, "%s", cw);
    return 0;
  }
  if (strcmp(dev, "auto") != 0)
    return st_error_set(err, ST_EINVAL, "--device", -1, "'%s': expected auto, cpu or cuda", dev);
  if (cu_ok) {
    *out = cu;
    snprintf(why, cap, "%s", cw);
  } else {
    *out = &cnn_cpu_backend;
    snprintf(why, cap, "%s", cw);
  }
  return 0;
}

/* The options, parsed and checked once. */
typedef struct tr_opts {
  long long epochs, bs, seed, log_every, threads;
  long long window, prefetch; /* --from */
  double lr, mom;
  int seeded;            /* --seed given (else seed was drawn) */
  int fresh;             /* --new */
  int cold;              /* --cold (with --from) */
  const char *dev, *init, *save, *dsname, *losses_path, *from, *order_path;
} tr_opts;

/* Everything a run holds; tr_cleanup releases it whatever step failed. */
typedef struct tr_job {
  st_ctx *c;
  const st_args *a;
  st_error *err;
  const tr_opts *o;
  ss_dataset *ds;
  const char *const *names;  /* class names for the table */
  const cnn_backend *be;
  char why[300];             /* why this backend */
  tr_model *model;           /* the session's model */
  const ss_split *train, *test; /* what is trained on and evaluated (NULL: none) */
  /* --from: the folder, its class names, the stream and its figures */
  char root[4096];
  char **from_names;
  int n_classes;
  tr_stream *stream;
  ss_split from_test;        /* DIR/test_batch, read for the evaluation */
  uint64_t in_bytes;         /* of the windows trained */
  double stall, compute;     /* seconds waiting for input, seconds in steps */
  size_t windows;
  double running;            /* loss summed since the last log line */
  FILE *orderf;              /* --order */
  void *st;                  /* the backend's state, NULL until it started */
  char bdesc[400];           /* "cpu (2 threads, avx2): ..." */
  FILE *lossf;               /* --losses */
  uint32_t *perm;            /* the shuffled order of the train split */
  loss_chart *chart;
  double t0, train_s;
  uint64_t images;           /* images trained on */
  int cancelled;
  long long ep, bi;          /* where training stopped */
} tr_job;

/* Parses and checks the options (a seed is drawn when none is given). */
static int tr_opts_parse(const st_args *a, tr_opts *o, st_error *err) {
  memset(o, 0, sizeof *o);
  int rc = st_arg_int(a, "epochs", 2, 0, PK_LIMIT_TRAIN_EPOCHS, &o->epochs, err);
  if (!rc) rc = st_arg_int(a, "batch-size", 4, 1, PK_LIMIT_TRAIN_BATCH, &o->bs, err);
  if (!rc) rc = st_arg_double(a, "lr", 0.001, 0, 100, &o->lr, err);
  if (!rc) rc = st_arg_double(a, "momentum", 0.9, 0, 1, &o->mom, err);
  if (!rc) rc = st_arg_int(a, "log-every", 2000, 1, 1000000000, &o->log_every, err);
  if (!rc) rc = st_arg_int(a, "threads", 0, 0, PK_LIMIT_TRAIN_THREADS, &o->threads, err);
  if (!rc && st_arg_has(a, "seed")) rc = st_arg_int(a, "seed", 0, 0, INT64_MAX, &o->seed, err);
  if (rc) return rc;
  o->seeded = st_arg_has(a, "seed");
  if (!o->seeded) o->seed = (long long)fresh_seed();
  o->fresh = st_arg_has(a, "new");
  o->dev = st_arg_str(a, "device", "auto");
  o->init = st_arg_str(a, "init", NULL);
  o->save = st_arg_str(a, "save", NULL);
  o->dsname = st_arg_str(a, "name", NULL);
  o->losses_path = st_arg_str(a, "losses", NULL);
  o->from = st_arg_str(a, "from", NULL);
  o->order_path = st_arg_str(a, "order", NULL);
  o->cold = st_arg_has(a, "cold");
  rc = st_arg_int(a, "window", 2, 1, PK_LIMIT_TRAIN_WINDOW, &o->window, err);
  if (!rc) rc = st_arg_int(a, "prefetch", 2, 0, PK_LIMIT_TRAIN_WINDOW, &o->prefetch, err);
  if (rc) return rc;
  if (!o->from && (st_arg_has(a, "window") || st_arg_has(a, "prefetch") || o->cold))
    return st_error_set(err, ST_EINVAL, "%train", -1,
                        "--window, --prefetch and --cold go with --from DIR (the loaded data is in memory)");
  if (o->from && o->dsname)
    return st_error_set(err, ST_EINVAL, "%train", -1, "--from DIR and --name NAME exclude each other");
  if (o->cold && o->from && strncmp(o->from, "s3://", 5) == 0)
    return st_error_set(err, ST_EINVAL, "--cold", -1,
                        "--cold drops a file system's pages; objects read from S3 are not cached here");
  return 0;
}

/* --from DIR: the folder of the batch files (DIR/cifar-10-batches-py when
 * there is one), its class names from batches.meta when present, and its
 * test_batch read for the evaluation. */
/* --from s3://BUCKET/PREFIX/: batches.meta and test_batch below the
 * prefix, when they are there, read whole (a read that fails is said, and
 * training goes on without them). */
static int tr_find_objects(tr_job *j) {
  const char *from = j->o->from;
  size_t n = strlen(from);
  snprintf(j->root, sizeof j->root, "%s%s", from, n && from[n - 1] == '/' ? "" : "/");
  j->names = cifar_names;
  char url[4200];
  uint8_t *buf = NULL;
  size_t len = 0;
  st_error e;
  st_error_clear(&e);
  snprintf(url, sizeof url, "%sbatches.meta", j->root);
  int rc = tr_s3_fetch(j->c, j->a, url, &buf, &len, &e);
  pkl_doc *doc = rc ? NULL : pkl_parse(buf, len, url, &e);
  if (!rc && !doc) rc = e.code ? e.code : ST_EFORMAT;
  if (!rc) rc = ld_meta_names(pkl_root(doc), url, &j->from_names, &j->n_classes, &e);
  pkl_free(doc);
  free(buf);
  if (!rc && j->from_names && j->n_classes == CNN_CLASSES) j->names = (const char *const *)j->from_names;
  if (rc == ST_ECANCELED) return st_error_set(j->err, rc, "%train", -1, "interrupted");
  char msg[1200];
  if (rc) {
    st_error_format(&e, msg, sizeof msg);
    st_printf(j->c, "train: no class names from %s (%s)\n", url, msg);
  }
  st_error_clear(&e);
  buf = NULL;
  snprintf(url, sizeof url, "%stest_batch", j->root);
  rc = tr_s3_fetch(j->c, j->a, url, &buf, &len, &e);
  ld_file f;
  memset(&f, 0, sizeof f);
  f.path = url;
  if (!rc) rc = ld_file_open_mem(&f, buf, len, j->n_classes, &e);
  ss_split *t = &j->from_test;
  if (!rc) {
    t->n = f.b.n;
    t->files = 1;
    t->pixels = malloc(f.b.n * SS_IMAGE_BYTES + 1);
    t->labels = malloc(f.b.n + 1);
    if (!t->pixels || !t->labels) rc = st_error_set(&e, ST_ENOMEM, url, -1, "out of memory");
  }
  if (!rc) rc = ld_file_copy(&f, t->pixels, &e);
  if (!rc) memcpy(t->labels, f.b.labels, f.b.n);
  ld_file_release(&f);
  free(buf);
  if (rc == ST_ECANCELED) return st_error_set(j->err, rc, "%train", -1, "interrupted");
  if (rc) {
    st_error_format(&e, msg, sizeof msg);
    st_printf(j->c, "train: no test split from %s (%s)\n", url, msg);
    t->n = 0;
  } else {
    j->test = t;
  }
  return 0;
}

static int tr_find_files(tr_job *j) {
  if (strncmp(j->o->from, "s3://", 5) == 0) return tr_find_objects(j);
  int rc = ld_resolve_root(j->o->from, j->root, sizeof j->root, j->err);
  if (rc) return rc;
  char p[4200];
  struct stat st;
  snprintf(p, sizeof p, "%s/batches.meta", j->root);
  if (stat(p, &st) == 0) rc = ld_read_meta(j->root, &j->from_names, &j->n_classes, j->err);
  if (rc) return rc;
  j->names = cifar_names;
  if (j->from_names && j->n_classes == CNN_CLASSES) j->names = (const char *const *)j->from_names;
  snprintf(p, sizeof p, "%s/test_batch", j->root);
  if (stat(p, &st) == 0) {
    ld_file f;
    memset(&f, 0, sizeof f);
    f.path = p;
    rc = ld_file_open(&f, j->n_classes, NULL, j->err);
    ss_split *t = &j->from_test;
    if (!rc) {
      t->n = f.b.n;
      t->files = 1;
      t->pixels = malloc(f.b.n * SS_IMAGE_BYTES + 1);
      t->labels = malloc(f.b.n + 1);
      if (!t->pixels || !t->labels) rc = st_error_set(j->err, ST_ENOMEM, p, -1, "out of memory");
    }
    if (!rc) rc = ld_file_copy(&f, t->pixels, j->err);
    if (!rc) memcpy(t->labels, f.b.labels, f.b.n);
    ld_file_release(&f);
    if (rc) return rc;
    j->test = t;
  }
  return 0;
}

/* The dataset to train on (--name, or the last loaded), with a train split
 * when there are epochs to run, and its class names; with --from, the
 * files instead. */
static int tr_find_data(tr_job *j) {
  if (j->o->from) return tr_find_files(j);
  const char *dsname = j->o->dsname;
  ss_session *ss = j->c->session;
  ss_dataset *ds = j->ds = ss ? ss_session_dataset(ss, dsname) : NULL;
  j->names = cifar_names;
  if (!ds && j->o->epochs == 0 && !dsname) return 0; /* the model alone: --save, --init */
  if (!ds)
    return st_error_set(j->err, ST_ESTATE, dsname ? dsname : "%train", -1,
                        dsname ? "no dataset of that name: run %%load DIR --name %s first"
                               : "no data loaded: run %%load DIR first",
                        dsname ? dsname : "");
  if (j->o->epochs > 0 && ds->train.n == 0)
    return st_error_set(j->err, ST_ESTATE, ds->name, -1,
                        "no train split loaded: run %%load DIR (--split train or all) first");
  if (ds->train.n > UINT32_MAX) return st_error_set(j->err, ST_E2BIG, ds->name, -1, "too many images");
  if (ds->label_names && ds->n_classes == CNN_CLASSES) j->names = (const char *const *)ds->label_names;
  j->train = &ds->train;
  j->test = &ds->test;
  return 0;
}

/* Picks the backend of --device. */
static int tr_pick_backend(tr_job *j) {
  return pick_backend(j->o->dev, &j->be, j->why, sizeof j->why, j->err);
}

/* The starting weights (--init, the session's model, or fresh from the
 * seed), said in the first line, and the backend started on them. */
static int tr_start(tr_job *j) {
  const tr_opts *o = j->o;
  j->model = session_model(j->c->session);
  if (!j->model)
    return st_error_set(j->err, ST_ENOMEM, "%train", -1, "out of memory");
  float *start = malloc(sizeof(float) * CNN_NPARAM);
  if (!start) return st_error_set(j->err, ST_ENOMEM, "%train", -1, "out of memory");
  const char *from;
  if (o->init) {
    int rc = tr_safetensors_read(o->init, start, j->err);
    if (rc) {
      free(start);
      return rc;
    }
    from = "weights from --init";
  } else if (j->model->have && !o->fresh) {
    memcpy(start, j->model->params, sizeof(float) * CNN_NPARAM);
    from = "the session's model (--new for fresh weights)";
  } else {
    cnn_init_params(start, (uint64_t)o->seed);
    from = "fresh weights";
  }
  st_printf(j->c, "train: %s, seed %lld%s, %lld epoch%s, batch size %lld, lr %g, momentum %g\n",
            from, o->seed, o->seeded ? "" : " (drawn)", o->epochs, o->epochs == 1 ? "" : "s", o->bs,
            o->lr, o->mom);
  cnn_config cfg = {(int)o->bs, (float)o->lr, (float)o->mom, (int)o->threads};
  char msg[512] = "";
  j->st = j->be->init(&cfg, start, msg, sizeof msg);
  free(start);
  if (!j->st) return st_error_set(j->err, ST_ENODEV, j->be->name, -1, "backend failed to start: %s", msg);
  snprintf(j->bdesc, sizeof j->bdesc, "%s (%s): %s", j->be->name, j->be->describe(j->st), j->why);
  st_printf(j->c, "backend: %s\n", j->bdesc);
  j->t0 = st_now();
  return 0;
}

/* The --losses and --order files (never waiting on a FIFO). */
static int tr_open_outputs(tr_job *j) {
  const char *lp = j->o->losses_path, *op = j->o->order_path;
  if (lp) j->lossf = fio_fopen_write(lp, "the --losses file", j->err);
  if (lp && !j->lossf) return j->err->code;
  if (op) j->orderf = fio_fopen_write(op, "the --order file", j->err);
  if (op && !j->orderf) return j->err->code;
  return 0;
}

/* One SGD step on the bound images idx[0..cnt), timed as compute; then its
 * loss to --losses, its images to --order (w: the window they came from,
 * NULL for the loaded split), and the mean loss every --log-every batches
 * of the epoch (line and chart point, at x = the run's batch count). */
static int tr_step(tr_job *j, const uint32_t *idx, int cnt, const tr_window *w, double x) {
  const tr_opts *o = j->o;
  float loss;
  double t0 = st_now();
  int bad = j->be->step(j->st, idx, cnt, &loss) != 0;
  j->compute += st_now() - t0;
  if (bad)
    return st_error_set(j->err, ST_EINTERNAL, j->be->name, -1, "training step %lld failed", j->bi + 1);
  j->images += (uint64_t)cnt;
  j->running += loss;
  if (j->lossf) fprintf(j->lossf, "%.9g\n", loss);
  for (int i = 0; j->orderf && i < cnt; i++) {
    if (!w) {
      fprintf(j->orderf, "%lld - %u\n", j->ep + 1, idx[i]);
      continue;
    }
    size_t f = 0;
    while (f + 1 < w->nfiles && w->files[f + 1].first <= idx[i]) f++;
    fprintf(j->orderf, "%lld %s %zu\n", j->ep + 1, tr_stream_file_name(j->stream, w->files[f].file),
            (size_t)idx[i] - w->files[f].first);
  }
  if (j->bi % o->log_every == o->log_every - 1) {
    double mean = j->running / (double)o->log_every;
    st_printf(j->c, "[%d, %5d] loss: %.3f\n", (int)j->ep + 1, (int)j->bi + 1, mean);
    chart_add(j->chart, x, mean);
    chart_show(j->c, j->chart, 0);
    j->running = 0;
  }
  return 0;
}

/* What training from memory needs: the order, the chart and the split
 * bound to the backend. */
static int tr_fit_prepare(tr_job *j) {
  size_t n = j->train->n;
  j->perm = malloc(sizeof(uint32_t) * (n ? n : 1));
  j->chart = calloc(1, sizeof *j->chart);
  if (!j->perm || !j->chart) return st_error_set(j->err, ST_ENOMEM, "%train", -1, "out of memory");
  if (j->be->bind(j->st, j->train->pixels, j->train->labels, n) != 0)
    return st_error_set(j->err, ST_ENODEV, j->be->name, -1, "could not take the train split");
  return tr_open_outputs(j);
}

/* One epoch over the order in j->perm: a step per batch, progress; stops
 * at an interrupt (j->cancelled) or a failed step (its error). */
static int tr_epoch(tr_job *j, st_progress *p, size_t per_epoch) {
  size_t n = j->train->n, bs = (size_t)j->o->bs;
  j->running = 0;
  for (j->bi = 0; (size_t)j->bi < per_epoch; j->bi++) {
    if (st_cancelled(j->c)) {
      j->cancelled = 1;
      return 0;
    }
    size_t lo = (size_t)j->bi * bs;
    int cnt = (int)((n - lo) < bs ? (n - lo) : bs);
    int rc = tr_step(j, j->perm + lo, cnt, NULL, (double)j->ep * (double)per_epoch + (double)j->bi + 1);
    if (rc) return rc;
    st_progress_update(p, (uint64_t)j->ep * per_epoch + (uint64_t)j->bi + 1);
  }
  return 0;
}

/* --epochs passes over the loaded split, each shuffled from the seed,
 * under one progress bar. */
static int tr_fit_memory(tr_job *j) {
  const tr_opts *o = j->o;
  int rc = tr_fit_prepare(j);
  if (rc) return rc;
  size_t n = j->train->n;
  size_t per_epoch = (n + (size_t)o->bs - 1) / (size_t)o->bs;
  j->chart->total_x = (double)per_epoch * (double)o->epochs;
  st_progress p;
  st_progress_begin(j->c, &p, "train", "batches", (uint64_t)per_epoch * (uint64_t)o->epochs);
  cnn_rng rng = {cnn_shuffle_seed((uint64_t)o->seed)};
  for (j->ep = 0; j->ep < o->epochs; j->ep++) {
    cnn_shuffle(&rng, j->perm, n);
    rc = tr_epoch(j, &p, per_epoch);
    if (rc || j->cancelled) break;
  }
  j->train_s = st_now() - j->t0;
  st_progress_end(&p, j->cancelled ? ST_ECANCELED : rc);
  return rc;
}

/* The steps of one window: its images bound to the backend, shuffled
 * (the images' generator, in window order), a step per batch (the last
 * one of a window may be smaller); progress counts the window's input
 * bytes in proportion to its steps. */
static int tr_window_train(tr_job *j, const tr_window *w, st_progress *p, cnn_rng *rng,
                           double per_epoch) {
  if (w->epoch != j->ep) { /* a new epoch: its batches count from 1 */
    j->ep = w->epoch;
    j->bi = 0;
    j->running = 0;
  }
  if (w->n == 0) return 0;
  if (w->n > UINT32_MAX) return st_error_set(j->err, ST_E2BIG, j->root, -1, "too many images in a window");
  uint32_t *perm = malloc(sizeof(uint32_t) * w->n);
  if (!perm) return st_error_set(j->err, ST_ENOMEM, "%train", -1, "out of memory");
  int rc = 0;
  if (j->be->bind(j->st, w->pixels, w->labels, w->n) != 0)
    rc = st_error_set(j->err, ST_ENODEV, j->be->name, -1, "could not take the window's images");
  if (!rc) cnn_shuffle(rng, perm, w->n);
  size_t bs = (size_t)j->o->bs;
  for (size_t lo = 0; !rc && lo < w->n; lo += bs, j->bi++) {
    if (st_cancelled(j->c)) {
      j->cancelled = 1;
      break;
    }
    int cnt = (int)(w->n - lo < bs ? w->n - lo : bs);
    rc = tr_step(j, perm + lo, cnt, w, (double)j->ep * per_epoch + (double)j->bi + 1);
    uint64_t part = (uint64_t)((double)w->file_bytes * (double)(lo + (size_t)cnt) / (double)w->n);
    char label[128];
    snprintf(label, sizeof label, "train --from, epoch %lld, stall %.2f s", j->ep + 1, j->stall);
    memcpy(p->label, label, sizeof label);
    st_progress_update(p, j->in_bytes + part);
  }
  free(perm);
  return rc;
}

/* --epochs passes over the files of --from: windows from the reader
 * thread, trained as they come; the time spent waiting for them is the
 * data stall. */
static int tr_fit_stream(tr_job *j) {
  const tr_opts *o = j->o;
  tr_stream_opts so = {j->root,          o->epochs,    (int)o->window, (int)o->prefetch,
                       (uint64_t)o->seed, j->n_classes, o->cold,        j->c,
                       j->a};
  int rc = tr_stream_open(&j->stream, &so, j->err);
  j->chart = rc ? NULL : calloc(1, sizeof *j->chart);
  if (!rc && !j->chart) rc = st_error_set(j->err, ST_ENOMEM, "%train", -1, "out of memory");
  if (!rc) rc = tr_open_outputs(j);
  if (rc) return rc;
  uint64_t set = tr_stream_set_bytes(j->stream);
  /* batches per epoch as the files' sizes tell (the x axis of the chart) */
  double per_epoch = ceil((double)set / (SS_IMAGE_BYTES + 1) / (double)o->bs);
  j->chart->total_x = per_epoch * (double)o->epochs;
  st_progress p;
  st_progress_begin(j->c, &p, "train --from", "B", set * (uint64_t)o->epochs);
  cnn_rng rng = {cnn_shuffle_seed((uint64_t)o->seed)};
  j->ep = -1;
  for (;;) {
    tr_window *w = NULL;
    rc = tr_stream_next(j->stream, j->c, &w, &j->stall, j->err);
    if (rc == 1 || rc == ST_ECANCELED) {
      j->cancelled = rc == ST_ECANCELED;
      rc = 0;
      break;
    }
    if (rc) break;
    tr_stream_flush(j->stream, j->c);
    rc = tr_window_train(j, w, &p, &rng, per_epoch);
    j->in_bytes += w->file_bytes;
    j->windows++;
    tr_stream_release(j->stream, w);
    if (rc || j->cancelled) break;
  }
  if (j->ep < 0) j->ep = 0;
  tr_stream_flush(j->stream, j->c);
  j->train_s = st_now() - j->t0;
  st_progress_end(&p, j->cancelled ? ST_ECANCELED : rc);
  return rc;
}

/* Trains from memory or from the files; whatever happens, the weights
 * after the last finished step go to the session's model. */
static int tr_fit(tr_job *j) {
  int rc = 0;
  if (j->o->epochs > 0) {
    rc = j->o->from ? tr_fit_stream(j) : tr_fit_memory(j);
    if (j->chart && j->chart->n) chart_show(j->c, j->chart, 1);
  }
  /* the weights as of the last finished step stay in the session */
  if (j->be->get(j->st, j->model->params) == 0) j->model->have = 1;
  return rc;
}

/* An interrupt is an error that says how to save what was trained;
 * otherwise "Finished Training" (when there were epochs). */
static int tr_check_finished(tr_job *j) {
  if (j->cancelled) {
    st_printf(j->c, "interrupted in epoch %lld before batch %lld; the weights after the last finished "
                    "step are kept: `%%train --epochs 0 --save FILE` saves them\n", j->ep + 1, j->bi + 1);
    return st_error_set(j->err, ST_ECANCELED, "%train", -1, "interrupted at epoch %lld, batch %lld",
                        j->ep + 1, j->bi + 1);
  }
  if (j->o->epochs > 0) st_printf(j->c, "Finished Training\n");
  return 0;
}

/* The accuracy line and the per-class table of predictions pred. */
static void tr_report_accuracy(tr_job *j, const uint8_t *pred) {
  const ss_split *test = j->test;
  size_t tn = test->n, correct = 0, cc[CNN_CLASSES] = {0}, ct[CNN_CLASSES] = {0};
  for (size_t i = 0; i < tn; i++) {
    uint8_t l = test->labels[i];
    if (l >= CNN_CLASSES) continue;
    ct[l]++;
    if (pred[i] == l) {
      correct++;
      cc[l]++;
    }
  }
  st_printf(j->c, "Accuracy of the network on the %zu test images: %.1f %%\n", tn,
            100.0 * (double)correct / (double)tn);
  static const char *const hdr[] = {"class", "correct", "images", "accuracy"};
  static const int right[] = {0, 1, 1, 1};
  tbl *t = tbl_new(4, hdr, right);
  for (int k = 0; t && k < CNN_CLASSES; k++) {
    char a1[32], a2[32], a3[32];
    snprintf(a1, sizeof a1, "%zu", cc[k]);
    snprintf(a2, sizeof a2, "%zu", ct[k]);
    snprintf(a3, sizeof a3, ct[k] ? "%.1f %%" : "-", ct[k] ? 100.0 * (double)cc[k] / (double)ct[k] : 0.0);
    const char *row[] = {j->names[k], a1, a2, a3};
    tbl_add(t, row, 0);
  }
  if (t) {
    char a1[32], a2[32], a3[32];
    snprintf(a1, sizeof a1, "%zu", correct);
    snprintf(a2, sizeof a2, "%zu", tn);
    snprintf(a3, sizeof a3, "%.1f %%", 100.0 * (double)correct / (double)tn);
    const char *row[] = {"all", a1, a2, a3};
    tbl_add(t, row, 1);
    tbl_display(j->c, t, "Test accuracy per class", NULL, 0);
    tbl_free(t);
  }
}

/* Predicts the test split 2000 images at a time and reports the accuracy
 * (or says there is no test split). */
static int tr_evaluate(tr_job *j) {
  const ss_split *test = j->test;
  size_t tn = test ? test->n : 0;
  if (tn == 0) {
    if (j->o->from) st_printf(j->c, "no test_batch in %s: accuracy not measured\n", j->root);
    else st_printf(j->c, "no test split loaded: accuracy not measured\n");
    return 0;
  }
  uint8_t *pred = malloc(tn);
  if (!pred) return st_error_set(j->err, ST_ENOMEM, "%train", -1, "out of memory");
  int rc = 0;
  for (size_t lo = 0; lo < tn && !rc; lo += 2000) {
    if (st_cancelled(j->c)) {
      rc = st_error_set(j->err, ST_ECANCELED, "%train", -1,
                        "interrupted during evaluation (the trained weights are kept)");
      break;
    }
    size_t k = tn - lo < 2000 ? tn - lo : 2000;
    if (j->be->eval(j->st, test->pixels + lo * CNN_IMAGE, k, pred + lo) != 0)
      rc = st_error_set(j->err, ST_EINTERNAL, j->be->name, -1, "evaluation failed");
  }
  if (!rc) tr_report_accuracy(j, pred);
  free(pred);
  return rc;
}

/* --save: the session's model as safetensors. */
static int tr_save(tr_job *j) {
  const char *save = j->o->save;
  if (!save) return 0;
  char msg[512] = "";
  if (cnn_safetensors_write(save, j->model->params, msg, sizeof msg) != 0)
    return st_error_set(j->err, ST_EIO, save, -1, "%s", msg);
  st_printf(j->c, "saved %s (safetensors, 10 tensors, %d parameters)\n", save, CNN_NPARAM);
  return 0;
}

/* --from: what the input cost: bytes and rate, the data stall (the time
 * the trainer waited for input) against the compute, what the reader was
 * busy with, the most files held at once, and the cache line. */
static void tr_input_summary(tr_job *j) {
  uint64_t rb = 0;
  double busy = 0;
  size_t peak = 0;
  tr_stream_stats(j->stream, &rb, &busy, &peak);
  char b[32], r[32], rr[32];
  st_fmt_bytes(b, sizeof b, j->in_bytes);
  st_fmt_rate(r, sizeof r, j->in_bytes, j->train_s);
  st_fmt_rate(rr, sizeof rr, rb, busy);
  double util = j->compute + j->stall > 0 ? 100.0 * j->compute / (j->compute + j->stall) : 0;
  st_printf(j->c, "input: %s from %zu window%s of %lld file%s (%zu files in the set) in %.2f s, %s; "
                  "data stall %.3f s (%.1f %% of the run), compute %.2f s: utilization %.1f %%; "
                  "reader busy %.2f s (%s), at most %zu files held\n",
            b, j->windows, j->windows == 1 ? "" : "s", j->o->window, j->o->window == 1 ? "" : "s",
            tr_stream_files(j->stream), j->train_s, r, j->stall,
            j->train_s > 0 ? 100.0 * j->stall / j->train_s : 0.0, j->compute, util, busy, rr, peak);
  pc_report(j->c, "train", tr_stream_cache(j->stream));
}

/* The images/s line and the "train" timing record. */
static int tr_summary(tr_job *j) {
  const tr_opts *o = j->o;
  if (o->epochs > 0)
    st_printf(j->c, "train: %lld epoch%s, %llu images in %.2f s (%.0f images/s); %s\n", o->epochs,
              o->epochs == 1 ? "" : "s", (unsigned long long)j->images, j->train_s,
              j->train_s > 0 ? (double)j->images / j->train_s : 0.0, j->bdesc);
  if (j->stream) tr_input_summary(j);
  char tb[64];
  snprintf(tb, sizeof tb, "%s (%s)", j->be->name, j->be->describe(j->st)); /* cpu (2 threads, avx512) */
  double secs = o->epochs > 0 ? j->train_s : st_now() - j->t0;
  if (j->stream)
    pc_timing_add(j->c, tr_stream_cache(j->stream), "train", "train", secs, j->in_bytes, j->images,
                  tb, NULL);
  else
    st_timing_add(j->c, "train", "train", secs, 0, j->images, tb, NULL);
  return 0;
}

/* Releases everything the job holds whatever step failed; a --losses file
 * that cannot be written completely makes the run fail. Returns rc. */
static int tr_cleanup(tr_job *j, int rc) {
  const char *lp = j->o->losses_path;
  if (j->lossf && fclose(j->lossf) != 0 && !rc) rc = st_error_errno(j->err, errno, lp, "write failed");
  if (j->orderf && fclose(j->orderf) != 0 && !rc)
    rc = st_error_errno(j->err, errno, j->o->order_path, "write failed");
  tr_stream_close(j->stream);
  if (j->st) j->be->free(j->st);
  free(j->perm);
  free(j->chart);
  free(j->from_test.pixels);
  free(j->from_test.labels);
  ld_names_free(j->from_names, j->n_classes);
  return rc;
}

int tr_train(st_ctx *c, const st_args *a, st_error *err) {
  tr_opts o;
  int rc = tr_opts_parse(a, &o, err);
  if (rc) return rc;
  tr_job j;
  memset(&j, 0, sizeof j);
  j.c = c;
  j.a = a;
  j.err = err;
  j.o = &o;
  if (!rc) rc = tr_find_data(&j);
  if (!rc) rc = tr_pick_backend(&j);
  if (!rc) rc = tr_start(&j);
  if (!rc) rc = tr_fit(&j);
  if (!rc) rc = tr_check_finished(&j);
  if (!rc) rc = tr_evaluate(&j);
  if (!rc) rc = tr_save(&j);
  if (!rc) rc = tr_summary(&j);
  return tr_cleanup(&j, rc);
}
