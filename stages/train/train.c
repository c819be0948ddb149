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
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cnn.h"
#include "lib/dynbuf.h"
#include "lib/limits.h"
#include "lib/session.h"
#include "lib/table.h"
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
  FILE *f = fopen(r->path, "rb");
  if (!f) return st_error_errno(r->err, errno, r->path, "cannot open");
  struct stat sb;
  int rc = 0;
  size_t max = 8 + PK_LIMIT_SAFETENSORS_HEADER + (size_t)CNN_NPARAM * 4 + 4096;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
    rc = st_error_set(r->err, ST_EFORMAT, r->path, -1, "not a regular file");
  else if ((r->size = (size_t)sb.st_size) > max)
    rc = st_error_set(r->err, ST_E2BIG, r->path, -1,
                      "%zu bytes: larger than this network's weights can be (%zu)", r->size, max);
  else if (!(r->buf = malloc(r->size ? r->size : 1)))
    rc = st_error_set(r->err, ST_ENOMEM, r->path, -1, "out of memory");
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
/* The stage                                                           */
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

int tr_train(st_ctx *c, const st_args *a, st_error *err) {
  long long epochs, bs, seed = 0, log_every, threads = 0;
  double lr, mom;
  int rc = st_arg_int(a, "epochs", 2, 0, PK_LIMIT_TRAIN_EPOCHS, &epochs, err);
  if (!rc) rc = st_arg_int(a, "batch-size", 4, 1, PK_LIMIT_TRAIN_BATCH, &bs, err);
  if (!rc) rc = st_arg_double(a, "lr", 0.001, 0, 100, &lr, err);
  if (!rc) rc = st_arg_double(a, "momentum", 0.9, 0, 1, &mom, err);
  if (!rc) rc = st_arg_int(a, "log-every", 2000, 1, 1000000000, &log_every, err);
  if (!rc) rc = st_arg_int(a, "threads", 0, 0, PK_LIMIT_TRAIN_THREADS, &threads, err);
  if (!rc && st_arg_has(a, "seed")) rc = st_arg_int(a, "seed", 0, 0, INT64_MAX, &seed, err);
  if (rc) return rc;
  int seeded = st_arg_has(a, "seed");
  if (!seeded) seed = (long long)fresh_seed();
  const char *dev = st_arg_str(a, "device", "auto");
  const char *init = st_arg_str(a, "init", NULL), *save = st_arg_str(a, "save", NULL);
  const char *dsname = st_arg_str(a, "name", NULL);
  const char *losses_path = st_arg_str(a, "losses", NULL);
  FILE *lossf = NULL;

  ss_session *ss = c->session;
  ss_dataset *ds = ss ? ss_session_dataset(ss, dsname) : NULL;
  if (!ds)
    return st_error_set(err, ST_ESTATE, dsname ? dsname : "%train", -1,
                        dsname ? "no dataset of that name: run %%load DIR --name %s first"
                               : "no data loaded: run %%load DIR first",
                        dsname ? dsname : "");
  if (epochs > 0 && ds->train.n == 0)
    return st_error_set(err, ST_ESTATE, ds->name, -1,
                        "no train split loaded: run %%load DIR (--split train or all) first");
  if (ds->train.n > UINT32_MAX) return st_error_set(err, ST_E2BIG, ds->name, -1, "too many images");
  const char *const *names = cifar_names;
  if (ds->label_names && ds->n_classes == CNN_CLASSES) names = (const char *const *)ds->label_names;

  const cnn_backend *be = NULL;
  char why[300];
  if ((rc = pick_backend(dev, &be, why, sizeof why, err))) return rc;

  tr_model *model = session_model(ss);
  if (!model) return st_error_set(err, ST_ENOMEM, "%train", -1, "out of memory");
  float *start = malloc(sizeof(float) * CNN_NPARAM);
  if (!start) return st_error_set(err, ST_ENOMEM, "%train", -1, "out of memory");
  const char *from;
  if (init) {
    if ((rc = tr_safetensors_read(init, start, err))) {
      free(start);
      return rc;
    }
    from = "weights from --init";
  } else if (model->have && !st_arg_has(a, "new")) {
    memcpy(start, model->params, sizeof(float) * CNN_NPARAM);
    from = "the session's model (--new for fresh weights)";
  } else {
    cnn_init_params(start, (uint64_t)seed);
    from = "fresh weights";
  }
  st_printf(c, "train: %s, seed %lld%s, %lld epoch%s, batch size %lld, lr %g, momentum %g\n",
            from, seed, seeded ? "" : " (drawn)", epochs, epochs == 1 ? "" : "s", bs, lr, mom);

  cnn_config cfg = {(int)bs, (float)lr, (float)mom, (int)threads};
  char msg[512] = "";
  void *st = be->init(&cfg, start, msg, sizeof msg);
  free(start);
  if (!st) return st_error_set(err, ST_ENODEV, be->name, -1, "backend failed to start: %s", msg);
  char bdesc[400];
  snprintf(bdesc, sizeof bdesc, "%s (%s): %s", be->name, be->describe(st), why);
  st_printf(c, "backend: %s\n", bdesc);

  size_t n = ds->train.n;
  uint32_t *perm = NULL;
  loss_chart *chart = NULL;
  double t0 = st_now(), train_s = 0;
  uint64_t images = 0;
  int cancelled = 0;
  long long ep = 0, bi = 0;
  if (epochs > 0) {
    perm = malloc(sizeof(uint32_t) * n);
    chart = calloc(1, sizeof *chart);
    if (!perm || !chart) {
      rc = st_error_set(err, ST_ENOMEM, "%train", -1, "out of memory");
      goto done;
    }
    if (be->bind(st, ds->train.pixels, ds->train.labels, n) != 0) {
      rc = st_error_set(err, ST_ENODEV, be->name, -1, "could not take the train split");
      goto done;
    }
    if (losses_path && !(lossf = fopen(losses_path, "w"))) {
      rc = st_error_errno(err, errno, losses_path, "cannot create");
      goto done;
    }
    size_t per_epoch = (n + (size_t)bs - 1) / (size_t)bs;
    chart->total_x = (double)per_epoch * (double)epochs;
    st_progress p;
    st_progress_begin(c, &p, "train", "batches", (uint64_t)per_epoch * (uint64_t)epochs);
    cnn_rng rng = {cnn_shuffle_seed((uint64_t)seed)};
    for (ep = 0; ep < epochs && !cancelled && !rc; ep++) {
      cnn_shuffle(&rng, perm, n);
      double running = 0;
      for (bi = 0; (size_t)bi < per_epoch; bi++) {
        if (st_cancelled(c)) {
          cancelled = 1;
          break;
        }
        size_t lo = (size_t)bi * (size_t)bs;
        int cnt = (int)((n - lo) < (size_t)bs ? (n - lo) : (size_t)bs);
        float loss;
        if (be->step(st, perm + lo, cnt, &loss) != 0) {
          rc = st_error_set(err, ST_EINTERNAL, be->name, -1, "training step %lld failed", bi + 1);
          break;
        }
        images += (uint64_t)cnt;
        running += loss;
        if (lossf) fprintf(lossf, "%.9g\n", loss);
        if (bi % log_every == log_every - 1) {
          st_printf(c, "[%d, %5d] loss: %.3f\n", (int)ep + 1, (int)bi + 1, running / (double)log_every);
          chart_add(chart, (double)ep * (double)per_epoch + (double)bi + 1, running / (double)log_every);
          chart_show(c, chart, 0);
          running = 0;
        }
        st_progress_update(&p, (uint64_t)ep * per_epoch + (uint64_t)bi + 1);
      }
      if (cancelled || rc) break;
    }
    train_s = st_now() - t0;
    st_progress_end(&p, cancelled ? ST_ECANCELED : rc);
    if (chart->n) chart_show(c, chart, 1);
  }
  /* the weights as of the last finished step stay in the session */
  if (be->get(st, model->params) == 0) model->have = 1;
  if (rc) goto done;
  if (cancelled) {
    st_printf(c, "interrupted in epoch %lld before batch %lld; the weights after the last finished "
                 "step are kept: `%%train --epochs 0 --save FILE` saves them\n", ep + 1, bi + 1);
    rc = st_error_set(err, ST_ECANCELED, "%train", -1, "interrupted at epoch %lld, batch %lld",
                      ep + 1, bi + 1);
    goto done;
  }
  if (epochs > 0) st_printf(c, "Finished Training\n");

  if (ds->test.n > 0) {
    size_t tn = ds->test.n;
    uint8_t *pred = malloc(tn);
    if (!pred) {
      rc = st_error_set(err, ST_ENOMEM, "%train", -1, "out of memory");
      goto done;
    }
    for (size_t lo = 0; lo < tn && !rc; lo += 2000) {
      if (st_cancelled(c)) {
        rc = st_error_set(err, ST_ECANCELED, "%train", -1,
                          "interrupted during evaluation (the trained weights are kept)");
        break;
      }
      size_t k = tn - lo < 2000 ? tn - lo : 2000;
      if (be->eval(st, ds->test.pixels + lo * CNN_IMAGE, k, pred + lo) != 0)
        rc = st_error_set(err, ST_EINTERNAL, be->name, -1, "evaluation failed");
    }
    if (!rc) {
      size_t correct = 0, cc[CNN_CLASSES] = {0}, ct[CNN_CLASSES] = {0};
      for (size_t i = 0; i < tn; i++) {
        uint8_t l = ds->test.labels[i];
        if (l >= CNN_CLASSES) continue;
        ct[l]++;
        if (pred[i] == l) {
          correct++;
          cc[l]++;
        }
      }
      st_printf(c, "Accuracy of the network on the %zu test images: %.1f %%\n", tn,
                100.0 * (double)correct / (double)tn);
      static const char *const hdr[] = {"class", "correct", "images", "accuracy"};
      static const int right[] = {0, 1, 1, 1};
      tbl *t = tbl_new(4, hdr, right);
      for (int k = 0; t && k < CNN_CLASSES; k++) {
        char a1[32], a2[32], a3[32];
        snprintf(a1, sizeof a1, "%zu", cc[k]);
        snprintf(a2, sizeof a2, "%zu", ct[k]);
        snprintf(a3, sizeof a3, ct[k] ? "%.1f %%" : "-", ct[k] ? 100.0 * (double)cc[k] / (double)ct[k] : 0.0);
        const char *row[] = {names[k], a1, a2, a3};
        tbl_add(t, row, 0);
      }
      if (t) {
        char a1[32], a2[32], a3[32];
        snprintf(a1, sizeof a1, "%zu", correct);
        snprintf(a2, sizeof a2, "%zu", tn);
        snprintf(a3, sizeof a3, "%.1f %%", 100.0 * (double)correct / (double)tn);
        const char *row[] = {"all", a1, a2, a3};
        tbl_add(t, row, 1);
        tbl_display(c, t, "Test accuracy per class", NULL, 0);
        tbl_free(t);
      }
    }
    free(pred);
    if (rc) goto done;
  } else {
    st_printf(c, "no test split loaded: accuracy not measured\n");
  }

  if (save) {
    if (cnn_safetensors_write(save, model->params, msg, sizeof msg) != 0) {
      rc = st_error_set(err, ST_EIO, save, -1, "%s", msg);
      goto done;
    }
    st_printf(c, "saved %s (safetensors, 10 tensors, %d parameters)\n", save, CNN_NPARAM);
  }
  if (epochs > 0)
    st_printf(c, "train: %lld epoch%s, %llu images in %.2f s (%.0f images/s); %s\n", epochs,
              epochs == 1 ? "" : "s", (unsigned long long)images, train_s,
              train_s > 0 ? (double)images / train_s : 0.0, bdesc);
  {
    char tb[64];
    snprintf(tb, sizeof tb, "%s (%s)", be->name, be->describe(st)); /* cpu (2 threads, avx512) */
    st_timing_add(c, "train", "train", epochs > 0 ? train_s : st_now() - t0, 0, images, tb, NULL);
  }
done:
  if (lossf && fclose(lossf) != 0 && !rc) rc = st_error_errno(err, errno, losses_path, "write failed");
  be->free(st);
  free(perm);
  free(chart);
  return rc;
}
