/*
 * meta.c -- %meta (stage 6): the class names of batches.meta and the images
 * per class of the loaded dataset, as a table and a chart.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/chart.h"
#include "lib/escape.h"
#include "lib/limits.h"
#include "lib/session.h"
#include "lib/table.h"
#include "load.h"

const st_option ld_meta_opts[] = {
    {"name", 1, "NAME", "dataset to count (default: the last loaded)"},
    {NULL, 0, NULL, NULL}};

void ld_names_free(char **names, int n) {
  for (int i = 0; names && i < n; i++) free(names[i]);
  free(names);
}

int ld_meta_names(const pkl_value *root, const char *where, char ***names, int *n,
                  st_error *err) {
  *names = NULL;
  *n = 0;
  if (!root || root->type != PKL_DICT)
    return st_error_set(err, ST_EFORMAT, where, -1, "expected a dict at the top, got %s",
                        pkl_type_name(root));
  const pkl_value *l = pkl_dict_get(root, "label_names");
  if (!l) return st_error_set(err, ST_EFORMAT, where, -1, "key 'label_names' is missing");
  if (l->type != PKL_LIST && l->type != PKL_TUPLE)
    return st_error_set(err, ST_EFORMAT, where, (long long)l->offset,
                        "key 'label_names' holds a %s, expected a list of strings", pkl_type_name(l));
  size_t cnt = l->u.seq.n;
  if (cnt == 0 || cnt > PK_LIMIT_LOAD_CLASSES)
    return st_error_set(err, cnt ? ST_E2BIG : ST_EFORMAT, where, (long long)l->offset,
                        "%zu label names; expected 1 to %d", cnt, PK_LIMIT_LOAD_CLASSES);
  char **out = calloc(cnt, sizeof *out);
  if (!out) return st_error_set(err, ST_ENOMEM, where, -1, "out of memory");
  for (size_t i = 0; i < cnt; i++) {
    const pkl_value *s = l->u.seq.items[i];
    if ((s->type != PKL_STR && s->type != PKL_BYTES) || s->u.s.len > 256) {
      ld_names_free(out, (int)cnt);
      return st_error_set(err, ST_EFORMAT, where, (long long)s->offset,
                          "label_names[%zu] is a %s, expected a short string", i, pkl_type_name(s));
    }
    out[i] = malloc(s->u.s.len + 1);
    if (!out[i]) {
      ld_names_free(out, (int)cnt);
      return st_error_set(err, ST_ENOMEM, where, -1, "out of memory");
    }
    pkl_bytes_copy(s, (uint8_t *)out[i], s->u.s.len);
    out[i][s->u.s.len] = 0;
    if (strlen(out[i]) != s->u.s.len) {
      ld_names_free(out, (int)cnt);
      return st_error_set(err, ST_EFORMAT, where, (long long)s->offset,
                          "label_names[%zu] contains a NUL byte", i);
    }
  }
  *names = out;
  *n = (int)cnt;
  return 0;
}

/* ------------------------------------------------------------------ */
/* %meta: options, a job, a chain of steps, one cleanup                */
/* ------------------------------------------------------------------ */
/* Everything one %meta holds; meta_cleanup releases it whatever step
 * failed. */
typedef struct meta_job {
  st_ctx *c;
  st_error *err;
  const st_args *a;
  ss_dataset *d;         /* --name's dataset, or the last loaded (may be NULL) */
  const char *dir;       /* DIR, or the dataset's folder */
  char root[4096];       /* where batches.meta is */
  char **names;          /* its class names (owned until given to d) */
  int nn;
  int loaded;            /* d holds images to count */
  size_t rows;           /* classes, and labels beyond them */
  double *ctrain, *ctest;
  char **lab;            /* row names: names[i], or an owned "(label i)" */
  tbl *t;
  double t0;
} meta_job;

/* The dataset (--name, or the last loaded) and the folder to read: DIR, or
 * the dataset's. */
static int meta_find(meta_job *j) {
  const char *name = st_arg_str(j->a, "name", NULL);
  j->d = ss_session_dataset(j->c->session, name);
  if (name && !j->d) return st_error_set(j->err, ST_ESTATE, "meta", -1, "no dataset named %s", name);
  j->dir = j->a->npos ? j->a->pos[0] : j->d ? j->d->root : NULL;
  if (!j->dir) return st_error_set(j->err, ST_EINVAL, "meta", -1, "usage: %%meta DIR (nothing loaded yet)");
  return 0;
}

/* The class names of batches.meta (saying when DIR is not the folder the
 * dataset was loaded from). */
static int meta_read(meta_job *j) {
  j->t0 = st_now();
  int rc = ld_resolve_root(j->dir, j->root, sizeof j->root, j->err);
  if (!rc) rc = ld_read_meta(j->root, &j->names, &j->nn, j->err);
  if (rc) return rc;
  esc_buf en, er;
  if (j->d && j->a->npos && strcmp(j->d->root, j->root) != 0)
    st_eprintf(j->c, "meta: note: dataset %s was loaded from %s\n", esc_name(&en, j->d->name),
               esc_name(&er, j->d->root));
  return 0;
}

/* Images per label of each split of the loaded dataset (a row for every
 * class, and for labels beyond them). */
static int meta_count(meta_job *j) {
  const ss_dataset *d = j->d;
  j->loaded = d && (d->train.n || d->test.n);
  j->rows = (size_t)j->nn;
  if (j->loaded) {
    for (size_t i = 0; i < d->train.n; i++) if (d->train.labels[i] >= j->rows) j->rows = d->train.labels[i] + 1u;
    for (size_t i = 0; i < d->test.n; i++) if (d->test.labels[i] >= j->rows) j->rows = d->test.labels[i] + 1u;
  }
  j->ctrain = calloc(j->rows, sizeof *j->ctrain);
  j->ctest = calloc(j->rows, sizeof *j->ctest);
  j->lab = calloc(j->rows, sizeof *j->lab);
  if (!j->ctrain || !j->ctest || !j->lab) return st_error_set(j->err, ST_ENOMEM, "meta", -1, "out of memory");
  if (j->loaded) {
    for (size_t i = 0; i < d->train.n; i++) j->ctrain[d->train.labels[i]]++;
    for (size_t i = 0; i < d->test.n; i++) j->ctest[d->test.labels[i]]++;
  }
  return 0;
}

/* The table: label and name, with the counts (and a total row) when a
 * dataset is loaded. */
static int meta_table(meta_job *j) {
  static const char *const hdr_full[] = {"label", "name", "train", "test", "total"};
  static const int right_full[] = {1, 0, 1, 1, 1};
  j->t = tbl_new(j->loaded ? 5 : 2, hdr_full, right_full);
  if (!j->t) return st_error_set(j->err, ST_ENOMEM, "meta", -1, "out of memory");
  double sum_tr = 0, sum_te = 0;
  for (size_t i = 0; i < j->rows; i++) {
    char num[24], tr[24], te[24], tot[24], unnamed[32];
    snprintf(num, sizeof num, "%zu", i);
    snprintf(unnamed, sizeof unnamed, "(label %zu)", i);
    j->lab[i] = i < (size_t)j->nn ? j->names[i] : NULL;
    if (!j->lab[i]) j->lab[i] = strdup(unnamed);
    snprintf(tr, sizeof tr, "%.0f", j->ctrain[i]);
    snprintf(te, sizeof te, "%.0f", j->ctest[i]);
    snprintf(tot, sizeof tot, "%.0f", j->ctrain[i] + j->ctest[i]);
    sum_tr += j->ctrain[i];
    sum_te += j->ctest[i];
    const char *cells[5] = {num, j->lab[i] ? j->lab[i] : unnamed, tr, te, tot};
    tbl_add(j->t, cells, 0);
  }
  if (j->loaded) {
    char tr[24], te[24], tot[24];
    snprintf(tr, sizeof tr, "%.0f", sum_tr);
    snprintf(te, sizeof te, "%.0f", sum_te);
    snprintf(tot, sizeof tot, "%.0f", sum_tr + sum_te);
    const char *cells[5] = {"", "all", tr, te, tot};
    tbl_add(j->t, cells, 1);
  }
  char caption[4300];
  snprintf(caption, sizeof caption, "%s/batches.meta: %d classes%s%s", j->root, j->nn,
           j->loaded ? "; images per class of dataset " : "", j->loaded ? j->d->name : "");
  tbl_display(j->c, j->t, caption, NULL, 0);
  return 0;
}

/* The chart of images per class (or how to get one). */
static int meta_chart(meta_job *j) {
  if (!j->loaded) {
    st_printf(j->c, "no images loaded: run %%load DIR to count the images per class\n");
    return 0;
  }
  chart_spec ch = {0};
  ch.title = "Images per class";
  ch.axis_label = "images";
  ch.n = (int)j->rows;
  ch.labels = (const char *const *)j->lab;
  int k = 0;
  if (j->d->train.n) { ch.values[k] = j->ctrain; ch.series[k++] = "train"; }
  if (j->d->test.n) { ch.values[k] = j->ctest; ch.series[k++] = "test"; }
  return chart_display(j->c, &ch, j->err);
}

/* The names go to the dataset (for %preview); the "meta" timing record. */
static int meta_keep(meta_job *j) {
  if (j->d) {
    ld_names_free(j->d->label_names, j->d->n_classes);
    j->d->label_names = j->names;
    j->d->n_classes = j->nn;
    j->names = NULL;
  }
  st_timing_add(j->c, "meta", "meta", st_now() - j->t0, 0, (uint64_t)j->nn, "pickle-reader", NULL);
  return 0;
}

/* Releases everything the job holds whatever step failed; returns rc. */
static int meta_cleanup(meta_job *j, int rc) {
  if (j->lab)
    for (size_t i = 0; i < j->rows; i++)
      if (i >= (size_t)j->nn) free(j->lab[i]);
  free(j->lab);
  free(j->ctrain);
  free(j->ctest);
  tbl_free(j->t);
  ld_names_free(j->names, j->nn);
  return rc;
}

int ld_meta(st_ctx *c, const st_args *a, st_error *err) {
  meta_job j;
  memset(&j, 0, sizeof j);
  j.c = c;
  j.err = err;
  j.a = a;
  int rc = meta_find(&j);
  if (!rc) rc = meta_read(&j);
  if (!rc) rc = meta_count(&j);
  if (!rc) rc = meta_table(&j);
  if (!rc) rc = meta_chart(&j);
  if (!rc) rc = meta_keep(&j);
  return meta_cleanup(&j, rc);
}
