/*
 * timings.c -- %timings: the table (and chart) of every stage timed in this
 * session, labelled runs, JSON run records, and side-by-side comparisons,
 * including the whitepaper's four published runs as built-in references
 * (docs/workflow.md).
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <png.h>
#include <zlib.h>

#include "lib/chart.h"
#include "lib/fileio.h"
#include "lib/limits.h"
#include "lib/session.h"
#include "lib/table.h"
#include "timings.h"
#include "lib/version.h"

const st_option timings_opts[] = {
    {"chart", 0, NULL, "also draw a horizontal bar chart (SVG with a PNG fallback)"},
    {"json", 1, "PATH", "write the run record (stages, args, seconds, bytes, hashes, host, tools)"},
    {"label", 1, "NAME", "name the current run and keep it for --compare"},
    {"compare", 2, "A B", "two runs side by side: labels, record files, or paper:<run>"},
    {"clear", 0, NULL, "forget the current run's records"},
    {NULL, 0, NULL, NULL}};

/* The whitepaper's stage order (docs/workflow.md); other stages sort after these. */
static const char *const stage_order[] = {"download", "integrity", "extract", "verify",
                                          "pickled",  "meta",      "upload",  "preview",
                                          "train"};
#define N_ORDER (sizeof stage_order / sizeof stage_order[0])

/* libarchive 3.6's archive_version_details() re-initialises its static
 * string on every call, leaking the previous one (128 bytes a %timings
 * --json): ask once. */
static char g_archive_version[256];
static pthread_once_t g_archive_version_once = PTHREAD_ONCE_INIT;

static void archive_version_once(void) {
  snprintf(g_archive_version, sizeof g_archive_version, "%s", archive_version_details());
}

static int order_of(const char *stage) {
  for (size_t i = 0; i < N_ORDER; i++)
    if (strcmp(stage, stage_order[i]) == 0) return (int)i;
  return (int)N_ORDER;
}

/* The whitepaper's published runs (docs/workflow.md), seconds. */
typedef struct {
  const char *label;
  const char *title;
  double s[9]; /* in stage_order; extract has no row (0) */
} paper_run;

static const paper_run paper[] = {
    {"paper:test1-weka", "whitepaper Test 1, WEKA",
     {275.55, 71.76, 0, 214.04, 28.08, 0.01, 5.12, 4.59, 120.47}},
    {"paper:test1-s3nvme", "whitepaper Test 1, S3 + local NVMe",
     {275.55, 82.93, 0, 872.40, 77.93, 0.00, 5.33, 6.82, 123.50}},
    {"paper:test2-weka", "whitepaper Test 2, WEKA",
     {0, 77.98, 0, 206.48, 23.89, 0.01, 5.44, 4.11, 117.45}},
    {"paper:test2-s3nvme", "whitepaper Test 2, S3 + local NVMe",
     {275.55, 81.01, 0, 858.26, 23.09, 0.02, 5.33, 4.46, 117.42}},
};
#define N_PAPER (sizeof paper / sizeof paper[0])

/* A run: records plus where it came from. */
typedef struct {
  char label[256];
  st_timing *t;
  size_t n;
  int owned; /* t is malloc'd by us */
} run_view;

static void view_free(run_view *v) {
  if (v->owned) free(v->t);
  v->t = NULL;
  v->n = 0;
}

/* The nine stages in the workflow's order (docs/workflow.md), whatever
 * order they ran in; a record of any other stage (mkdata, a second load)
 * stays behind the stage that ran before it, or first when none did, so
 * %mkdata run before the download is listed first. Stable (insertion
 * sort: runs are short). */
static void sort_records(st_timing *t, size_t n) {
  double *key = malloc((n ? n : 1) * sizeof *key);
  if (!key) return; /* left in the order they ran */
  double prev = -1;
  for (size_t i = 0; i < n; i++) {
    int k = order_of(t[i].stage);
    key[i] = k < (int)N_ORDER ? (prev = k) : prev + 0.5;
  }
  for (size_t i = 1; i < n; i++) {
    st_timing x = t[i];
    double kx = key[i];
    size_t j = i;
    while (j > 0 && key[j - 1] > kx) {
      t[j] = t[j - 1];
      key[j] = key[j - 1];
      j--;
    }
    t[j] = x;
    key[j] = kx;
  }
  free(key);
}

static void fmt_secs(char *buf, size_t cap, double s) {
  if (s < 10) snprintf(buf, cap, "%.3f", s);
  else snprintf(buf, cap, "%.2f", s);
}

/* ---- table of one run ---------------------------------------------------- */

static int show_run(st_ctx *c, const st_timing *t, size_t n, const char *caption) {
  st_timing *sorted = malloc((n ? n : 1) * sizeof *sorted);
  if (!sorted) return ST_ENOMEM;
  memcpy(sorted, t, n * sizeof *sorted);
  sort_records(sorted, n);
  const char *h[] = {"stage", "magic", "seconds", "bytes", "MB/s", "cache", "file system", "backend"};
  int right[] = {0, 0, 1, 1, 1, 0, 0, 0};
  tbl *tab = tbl_new(8, h, right);
  if (!tab) {
    free(sorted);
    return ST_ENOMEM;
  }
  double total = 0;
  uint64_t total_bytes = 0;
  for (size_t i = 0; i < n; i++) {
    char secs[32], bytes[32] = "", rate[32] = "";
    fmt_secs(secs, sizeof secs, sorted[i].seconds);
    if (sorted[i].bytes) {
      st_fmt_bytes(bytes, sizeof bytes, sorted[i].bytes);
      if (sorted[i].seconds >= 0.0005) /* below the table's resolution a rate means nothing */
        snprintf(rate, sizeof rate, "%.1f", (double)sorted[i].bytes / sorted[i].seconds / 1e6);
    }
    const char *row[] = {sorted[i].stage, sorted[i].magic, secs, bytes, rate,
                         sorted[i].cache[0] ? sorted[i].cache : "-",
                         sorted[i].fs[0] ? sorted[i].fs : "-", sorted[i].backend};
    tbl_add(tab, row, 0);
    total += sorted[i].seconds;
    total_bytes += sorted[i].bytes;
  }
  char secs[32], bytes[32] = "";
  fmt_secs(secs, sizeof secs, total);
  if (total_bytes) st_fmt_bytes(bytes, sizeof bytes, total_bytes);
  const char *trow[] = {"total", "", secs, bytes, "", "", "", ""};
  tbl_add(tab, trow, 1);
  int rc = tbl_display(c, tab, caption, NULL, 0);
  tbl_free(tab);
  free(sorted);
  return rc;
}

/* Per-stage sums of a run, in stage_order (+1 slot for "other"). */
static void stage_sums(const st_timing *t, size_t n, double sums[N_ORDER + 1], int seen[N_ORDER + 1]) {
  for (size_t i = 0; i <= N_ORDER; i++) {
    sums[i] = 0;
    seen[i] = 0;
  }
  for (size_t i = 0; i < n; i++) {
    int k = order_of(t[i].stage);
    sums[k] += t[i].seconds;
    seen[k] = 1;
  }
}

/* Where stage slot k of a run read from, "cold ext4 /dev/vda": the cache
 * and file system of its records ("mixed" when they differ, "-" when none
 * read files). */
static void stage_where(const st_timing *t, size_t n, size_t k, char *out, size_t cap) {
  const st_timing *first = NULL;
  int mixed = 0;
  for (size_t i = 0; i < n; i++) {
    if ((size_t)order_of(t[i].stage) != k || !t[i].cache[0]) continue;
    if (!first) first = &t[i];
    else if (strcmp(first->cache, t[i].cache) != 0 || strcmp(first->fs, t[i].fs) != 0) mixed = 1;
  }
  if (!first) snprintf(out, cap, "-");
  else if (mixed) snprintf(out, cap, "mixed");
  else snprintf(out, cap, "%s %s", first->cache, first->fs[0] ? first->fs : "?");
}

/* The label of the "other" bar: the stage's own name when there is one. */
static const char *other_name(const st_timing *ta, size_t na, const st_timing *tb, size_t nb) {
  const char *name = NULL;
  for (int r = 0; r < 2; r++) {
    const st_timing *t = r ? tb : ta;
    size_t n = r ? nb : na;
    for (size_t i = 0; t && i < n; i++) {
      if (order_of(t[i].stage) < (int)N_ORDER) continue;
      if (name && strcmp(name, t[i].stage) != 0) return "other";
      name = t[i].stage;
    }
  }
  return name ? name : "other";
}

static int chart_runs(st_ctx *c, const char *title, const char *la, const st_timing *ta,
                      size_t na, const char *lb, const st_timing *tb, size_t nb,
                      st_error *err) {
  double sa[N_ORDER + 1], sb[N_ORDER + 1];
  int ea[N_ORDER + 1], eb[N_ORDER + 1];
  stage_sums(ta, na, sa, ea);
  if (tb) stage_sums(tb, nb, sb, eb);
  const char *labels[N_ORDER + 1];
  double va[N_ORDER + 1], vb[N_ORDER + 1];
  int m = 0;
  for (size_t i = 0; i <= N_ORDER; i++) {
    if (!ea[i] && !(tb && eb[i])) continue;
    labels[m] = i < N_ORDER ? stage_order[i] : other_name(ta, na, tb, nb);
    va[m] = sa[i];
    vb[m] = tb ? sb[i] : 0;
    m++;
  }
  if (m == 0) return 0;
  chart_spec ch;
  memset(&ch, 0, sizeof ch);
  ch.title = title;
  ch.axis_label = "seconds";
  ch.horizontal = 1;
  ch.n = m;
  ch.labels = labels;
  ch.values[0] = va;
  ch.series[0] = la;
  if (tb) {
    ch.values[1] = vb;
    ch.series[1] = lb;
  }
  ch.decimals = 2;
  ch.unit = " s";
  return chart_display(c, &ch, err);
}

/* ---- labelled runs --------------------------------------------------------- */

static ss_runrec *find_run(ss_session *s, const char *label) {
  for (ss_runrec *r = s->runs; r; r = r->next)
    if (strcmp(r->label, label) == 0) return r;
  return NULL;
}

static int save_run(ss_session *s, const char *label) {
  ss_runrec *r = find_run(s, label);
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r) return ST_ENOMEM;
    snprintf(r->label, sizeof r->label, "%s", label);
    r->next = s->runs;
    s->runs = r;
  }
  st_timing *copy = malloc((s->n_timings ? s->n_timings : 1) * sizeof *copy);
  if (!copy) return ST_ENOMEM;
  memcpy(copy, s->timings, s->n_timings * sizeof *copy);
  free(r->timings);
  r->timings = copy;
  r->n = s->n_timings;
  snprintf(s->run_label, sizeof s->run_label, "%s", label);
  return 0;
}

/* ---- JSON records ------------------------------------------------------------ */

static long long mem_total(void) {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? (long long)pages * size : 0;
}

static void cpu_model(char *buf, size_t cap) {
  snprintf(buf, cap, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) == 0) {
      char *colon = strchr(line, ':');
      if (colon) {
        colon++;
        while (*colon == ' ') colon++;
        colon[strcspn(colon, "\n")] = 0;
        snprintf(buf, cap, "%s", colon);
      }
      break;
    }
  }
  fclose(f);
}

static json_t *record_json(const char *label, const st_timing *t, size_t n) {
  json_t *root = json_object();
  json_object_set_new(root, "pipekernel_record", json_integer(1));
  json_object_set_new(root, "label", json_string(label ? label : ""));
  char when[64];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_object_set_new(root, "created", json_string(when));

  json_t *host = json_object();
  char cpu[256];
  cpu_model(cpu, sizeof cpu);
  struct utsname u;
  json_object_set_new(host, "cores", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
  json_object_set_new(host, "memory_bytes", json_integer(mem_total()));
  json_object_set_new(host, "cpu", json_string(cpu));
  if (uname(&u) == 0) {
    char os[300];
    snprintf(os, sizeof os, "%s %s %s", u.sysname, u.release, u.machine);
    json_object_set_new(host, "os", json_string(os));
  }
  json_object_set_new(root, "host", host);

  pthread_once(&g_archive_version_once, archive_version_once);
  json_t *tools = json_object();
  json_object_set_new(tools, "pipekernel", json_string(PK_VERSION));
  json_object_set_new(tools, "openssl", json_string(OpenSSL_version(OPENSSL_VERSION)));
  json_object_set_new(tools, "libcurl", json_string(curl_version_info(CURLVERSION_NOW)->version));
  json_object_set_new(tools, "libarchive", json_string(g_archive_version));
  json_object_set_new(tools, "zlib", json_string(zlibVersion()));
  json_object_set_new(tools, "libpng", json_string(png_get_libpng_ver(NULL)));
  json_object_set_new(tools, "jansson", json_string(JANSSON_VERSION));
#ifdef __VERSION__
  json_object_set_new(tools, "compiler", json_string(__VERSION__));
#endif
  json_object_set_new(root, "tools", tools);

  json_t *stages = json_array();
  double total = 0;
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_object();
    json_object_set_new(s, "stage", json_string(t[i].stage));
    json_object_set_new(s, "magic", json_string(t[i].magic));
    json_object_set_new(s, "args", json_string(t[i].args));
    json_object_set_new(s, "seconds", json_real(t[i].seconds));
    json_object_set_new(s, "bytes", json_integer((json_int_t)t[i].bytes));
    json_object_set_new(s, "items", json_integer((json_int_t)t[i].items));
    json_object_set_new(s, "backend", json_string(t[i].backend));
    json_object_set_new(s, "hash", json_string(t[i].hash));
    json_object_set_new(s, "finished", json_real(t[i].wall));
    json_object_set_new(s, "cache", t[i].cache[0] ? json_string(t[i].cache) : json_null());
    json_object_set_new(s, "fs", t[i].fs[0] ? json_string(t[i].fs) : json_null());
    json_object_set_new(s, "resident", t[i].cache[0] && t[i].resident >= 0 ? json_real(t[i].resident)
                                                                           : json_null());
    json_array_append_new(stages, s);
    total += t[i].seconds;
  }
  json_object_set_new(root, "stages", stages);
  json_object_set_new(root, "total_seconds", json_real(total));
  return root;
}

static int write_record(const char *path, const char *label, const st_timing *t, size_t n,
                        st_error *err) {
  json_t *root = record_json(label, t, n);
  if (!root) return st_error_set(err, ST_ENOMEM, path, -1, NULL);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fio_fopen_write(tmp, "the run record", err);
  if (!f) {
    json_decref(root);
    return err->code;
  }
  errno = 0;
  int rc = json_dumpf(root, f, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
  if (fclose(f) != 0 && !rc) rc = -1;
  json_decref(root);
  if (rc != 0) {
    int e = errno;
    unlink(tmp);
    return st_error_errno(err, e ? e : EIO, path, "cannot write the run record");
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return st_error_errno(err, e, path, "cannot rename the run record into place");
  }
  return 0;
}

/* Copy a JSON string field into a fixed buffer. */
static void jcopy(char *dst, size_t cap, json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  snprintf(dst, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static int read_record(const char *path, run_view *v, st_error *err) {
  json_error_t je;
  char *text;
  size_t len;
  int frc = fio_read_all(path, PK_LIMIT_TIMINGS_RECORD_BYTES, "PK_LIMIT_TIMINGS_RECORD_BYTES",
                         "the run record", &text, &len, err); /* never blocks on a FIFO */
  if (frc) return frc;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  free(text);
  if (!root)
    return st_error_set(err, errno == ENOENT ? ST_ENOENT : ST_EFORMAT, path, je.position,
                        "not a run record: %s (line %d)", je.text, je.line);
  json_t *stages = json_object_get(root, "stages");
  if (!json_is_integer(json_object_get(root, "pipekernel_record")) || !json_is_array(stages)) {
    json_decref(root);
    return st_error_set(err, ST_EFORMAT, path, -1,
                        "expected a %%timings --json record (pipekernel_record, stages)");
  }
  size_t n = json_array_size(stages);
  if (n > 100000) {
    json_decref(root);
    return st_error_set(err, ST_E2BIG, path, -1, "%zu stages is too many", n);
  }
  v->t = calloc(n ? n : 1, sizeof *v->t);
  if (!v->t) {
    json_decref(root);
    return st_error_set(err, ST_ENOMEM, path, -1, NULL);
  }
  v->owned = 1;
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_array_get(stages, i);
    json_t *secs = json_object_get(s, "seconds");
    if (!json_is_object(s) || !json_is_number(secs) || !json_is_string(json_object_get(s, "stage"))) {
      json_decref(root);
      view_free(v);
      return st_error_set(err, ST_EFORMAT, path, -1,
                          "stage %zu: expected an object with \"stage\" and \"seconds\"", i);
    }
    st_timing *t = &v->t[i];
    jcopy(t->stage, sizeof t->stage, s, "stage");
    jcopy(t->magic, sizeof t->magic, s, "magic");
    jcopy(t->args, sizeof t->args, s, "args");
    jcopy(t->backend, sizeof t->backend, s, "backend");
    jcopy(t->hash, sizeof t->hash, s, "hash");
    jcopy(t->cache, sizeof t->cache, s, "cache");
    jcopy(t->fs, sizeof t->fs, s, "fs");
    json_t *res = json_object_get(s, "resident");
    t->resident = json_is_number(res) ? json_number_value(res) : -1;
    t->seconds = json_number_value(secs);
    json_t *b = json_object_get(s, "bytes");
    t->bytes = json_is_integer(b) && json_integer_value(b) > 0 ? (uint64_t)json_integer_value(b) : 0;
  }
  v->n = n;
  const char *label = json_string_value(json_object_get(root, "label"));
  snprintf(v->label, sizeof v->label, "%s", label && *label ? label : path);
  json_decref(root);
  return 0;
}

/* A run named by label, paper reference, "current", or record file. */
static int resolve_run(ss_session *s, const char *name, run_view *v, st_error *err) {
  memset(v, 0, sizeof *v);
  for (size_t i = 0; i < N_PAPER; i++) {
    if (strcmp(name, paper[i].label) == 0) {
      v->t = calloc(N_ORDER, sizeof *v->t);
      if (!v->t) return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
      v->owned = 1;
      for (size_t k = 0; k < N_ORDER; k++) {
        if (k == 2) continue; /* no extract row in the paper */
        st_timing *t = &v->t[v->n++];
        snprintf(t->stage, sizeof t->stage, "%s", stage_order[k]);
        t->seconds = paper[i].s[k];
        snprintf(t->backend, sizeof t->backend, "whitepaper");
      }
      snprintf(v->label, sizeof v->label, "%s", paper[i].label);
      return 0;
    }
  }
  if (strcmp(name, "current") == 0) {
    v->t = s->timings;
    v->n = s->n_timings;
    snprintf(v->label, sizeof v->label, "%s", s->run_label[0] ? s->run_label : "current");
    return 0;
  }
  ss_runrec *r = find_run(s, name);
  if (r) {
    v->t = r->timings;
    v->n = r->n;
    snprintf(v->label, sizeof v->label, "%s", r->label);
    return 0;
  }
  if (access(name, F_OK) == 0) return read_record(name, v, err);
  char known[1024] = "";
  size_t len = 0;
  for (ss_runrec *q = s->runs; q && len < sizeof known - 80; q = q->next)
    len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", q->label);
  return st_error_set(err, ST_ENOENT, name, -1,
                      "no run with this label and no such record file; labels: %s; "
                      "references: paper:test1-weka, paper:test1-s3nvme, paper:test2-weka, "
                      "paper:test2-s3nvme; and current",
                      len ? known : "(none yet: %%timings --label NAME keeps one)");
}

static int compare(st_ctx *c, const char *a, const char *b, int chart, st_error *err) {
  run_view va, vb;
  int rc = resolve_run(c->session, a, &va, err);
  if (rc) return rc;
  rc = resolve_run(c->session, b, &vb, err);
  if (rc) {
    view_free(&va);
    return rc;
  }
  double sa[N_ORDER + 1], sb[N_ORDER + 1];
  int ea[N_ORDER + 1], eb[N_ORDER + 1];
  stage_sums(va.t, va.n, sa, ea);
  stage_sums(vb.t, vb.n, sb, eb);
  char wa[300], wb[300];
  snprintf(wa, sizeof wa, "%.250s read from", va.label);
  snprintf(wb, sizeof wb, "%.250s read from", vb.label);
  const char *h[] = {"stage", va.label, vb.label, "speed-up", wa, wb};
  int right[] = {0, 1, 1, 1, 0, 0};
  tbl *tab = tbl_new(6, h, right);
  if (!tab) {
    view_free(&va);
    view_free(&vb);
    return st_error_set(err, ST_ENOMEM, NULL, -1, NULL);
  }
  double ta = 0, tb = 0;
  for (size_t k = 0; k <= N_ORDER; k++) {
    if (!ea[k] && !eb[k]) continue;
    char x[32] = "-", y[32] = "-", r[32] = "";
    if (ea[k]) fmt_secs(x, sizeof x, sa[k]);
    if (eb[k]) fmt_secs(y, sizeof y, sb[k]);
    if (ea[k] && eb[k] && sb[k] > 0) snprintf(r, sizeof r, "%.2fx", sa[k] / sb[k]);
    char fa[200] = "", fb[200] = "";
    if (ea[k]) stage_where(va.t, va.n, k, fa, sizeof fa);
    if (eb[k]) stage_where(vb.t, vb.n, k, fb, sizeof fb);
    const char *row[] = {k < N_ORDER ? stage_order[k] : "other", x, y, r, fa, fb};
    tbl_add(tab, row, 0);
    ta += sa[k];
    tb += sb[k];
  }
  char x[32], y[32], r[32] = "";
  fmt_secs(x, sizeof x, ta);
  fmt_secs(y, sizeof y, tb);
  if (tb > 0) snprintf(r, sizeof r, "%.2fx", ta / tb);
  const char *trow[] = {"total", x, y, r, "", ""};
  tbl_add(tab, trow, 1);
  char caption[600];
  snprintf(caption, sizeof caption, "%s vs %s (speed-up = first / second)", va.label, vb.label);
  rc = tbl_display(c, tab, caption, NULL, 0);
  tbl_free(tab);
  if (!rc && chart)
    rc = chart_runs(c, "stage timings (seconds)", va.label, va.t, va.n, vb.label, vb.t, vb.n,
                    err);
  view_free(&va);
  view_free(&vb);
  return rc ? st_error_set(err, rc, "timings", -1, NULL) : 0;
}

int tm_timings(st_ctx *c, const st_args *a, st_error *err) {
  ss_session *s = c->session;
  if (!s) return st_error_set(err, ST_ESTATE, "timings", -1, "no session");
  const char *label = st_arg_str(a, "label", NULL);
  const char *json = st_arg_str(a, "json", NULL);
  int chart = st_arg_has(a, "chart");
  int rc = 0;
  if (label) {
    if (strlen(label) >= 64 || !label[0] || strncmp(label, "paper:", 6) == 0 ||
        strcmp(label, "current") == 0)
      return st_error_set(err, ST_EINVAL, "--label", -1,
                          "'%s': a label is 1-63 characters, not 'current' or 'paper:...'", label);
    rc = save_run(s, label);
    if (rc) return st_error_set(err, rc, "timings", -1, NULL);
  }
  if (st_arg_has(a, "compare")) {
    rc = compare(c, st_arg_str2(a, "compare", 0), st_arg_str2(a, "compare", 1), chart, err);
    if (rc) return rc;
  } else if (!st_arg_has(a, "clear") || label || json) {
    char caption[128];
    snprintf(caption, sizeof caption, "stage timings%s%s", s->run_label[0] ? ": " : "",
             s->run_label);
    if (s->n_timings == 0)
      st_printf(c, "no stage has been timed in this session yet\n");
    else {
      rc = show_run(c, s->timings, s->n_timings, caption);
      if (!rc && chart)
        rc = chart_runs(c, caption, s->run_label[0] ? s->run_label : "this run", s->timings,
                        s->n_timings, NULL, NULL, 0, err);
      if (rc) return st_error_set(err, rc, "timings", -1, NULL);
    }
  }
  if (json) {
    rc = write_record(json, s->run_label, s->timings, s->n_timings, err);
    if (rc) return rc;
    st_printf(c, "timings: wrote %zu stage records to %s\n", s->n_timings, json);
  }
  if (st_arg_has(a, "clear")) {
    ss_session_clear_timings(s);
    s->run_label[0] = 0;
  }
  return 0;
}
