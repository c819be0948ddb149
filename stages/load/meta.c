/*
 * meta.c -- %meta (stage 6): the class names of batches.meta and the images
 * per class of the loaded dataset, as a table and a chart.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/chart.h"
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
/* %meta                                                               */
/* ------------------------------------------------------------------ */
int ld_meta(st_ctx *c, const st_args *a, st_error *err) {
  const char *name = st_arg_str(a, "name", NULL);
  ss_dataset *d = ss_session_dataset(c->session, name);
  if (name && !d) return st_error_set(err, ST_ESTATE, "meta", -1, "no dataset named %s", name);
  const char *dir = a->npos ? a->pos[0] : d ? d->root : NULL;
  if (!dir) return st_error_set(err, ST_EINVAL, "meta", -1, "usage: %%meta DIR (nothing loaded yet)");
  double t0 = st_now();
  char root[4096];
  int rc = ld_resolve_root(dir, root, sizeof root, err);
  if (rc) return rc;
  char **names = NULL;
  int nn = 0;
  rc = ld_read_meta(root, &names, &nn, err);
  if (rc) return rc;
  if (d && a->npos && strcmp(d->root, root) != 0)
    st_eprintf(c, "meta: note: dataset %s was loaded from %s\n", d->name, d->root);

  int loaded = d && (d->train.n || d->test.n);
  size_t rows = (size_t)nn;
  if (loaded) {
    for (size_t i = 0; i < d->train.n; i++) if (d->train.labels[i] >= rows) rows = d->train.labels[i] + 1u;
    for (size_t i = 0; i < d->test.n; i++) if (d->test.labels[i] >= rows) rows = d->test.labels[i] + 1u;
  }
  double *ctrain = calloc(rows, sizeof *ctrain), *ctest = calloc(rows, sizeof *ctest);
  char **lab = calloc(rows, sizeof *lab);
  tbl *t = NULL;
  if (!ctrain || !ctest || !lab) {
    rc = st_error_set(err, ST_ENOMEM, "meta", -1, "out of memory");
    goto done;
  }
  if (loaded) {
    for (size_t i = 0; i < d->train.n; i++) ctrain[d->train.labels[i]]++;
    for (size_t i = 0; i < d->test.n; i++) ctest[d->test.labels[i]]++;
  }
  static const char *const hdr_full[] = {"label", "name", "train", "test", "total"};
  static const int right_full[] = {1, 0, 1, 1, 1};
  int ncols = loaded ? 5 : 2;
  t = tbl_new(ncols, hdr_full, right_full);
  if (!t) {
    rc = st_error_set(err, ST_ENOMEM, "meta", -1, "out of memory");
    goto done;
  }
  double sum_tr = 0, sum_te = 0;
  for (size_t i = 0; i < rows; i++) {
    char num[24], tr[24], te[24], tot[24], unnamed[32];
    snprintf(num, sizeof num, "%zu", i);
    snprintf(unnamed, sizeof unnamed, "(label %zu)", i);
    lab[i] = i < (size_t)nn ? names[i] : NULL;
    if (!lab[i]) lab[i] = strdup(unnamed);
    snprintf(tr, sizeof tr, "%.0f", ctrain[i]);
    snprintf(te, sizeof te, "%.0f", ctest[i]);
    snprintf(tot, sizeof tot, "%.0f", ctrain[i] + ctest[i]);
    sum_tr += ctrain[i];
    sum_te += ctest[i];
    const char *cells[5] = {num, lab[i] ? lab[i] : unnamed, tr, te, tot};
    tbl_add(t, cells, 0);
  }
  if (loaded) {
    char tr[24], te[24], tot[24];
    snprintf(tr, sizeof tr, "%.0f", sum_tr);
    snprintf(te, sizeof te, "%.0f", sum_te);
    snprintf(tot, sizeof tot, "%.0f", sum_tr + sum_te);
    const char *cells[5] = {"", "all", tr, te, tot};
    tbl_add(t, cells, 1);
  }
  char caption[4300];
  snprintf(caption, sizeof caption, "%s/batches.meta: %d classes%s%s", root, nn,
           loaded ? "; images per class of dataset " : "", loaded ? d->name : "");
  tbl_display(c, t, caption, NULL, 0);
  if (loaded) {
    chart_spec ch = {0};
    ch.title = "Images per class";
    ch.axis_label = "images";
    ch.n = (int)rows;
    ch.labels = (const char *const *)lab;
    int k = 0;
    if (d->train.n) { ch.values[k] = ctrain; ch.series[k++] = "train"; }
    if (d->test.n) { ch.values[k] = ctest; ch.series[k++] = "test"; }
    rc = chart_display(c, &ch, err);
    if (rc) goto done;
  } else {
    st_printf(c, "no images loaded: run %%load DIR to count the images per class\n");
  }
  if (d) { /* keep the names for %preview */
    ld_names_free(d->label_names, d->n_classes);
    d->label_names = names;
    d->n_classes = nn;
    names = NULL;
  }
  st_timing_add(c, "meta", "meta", st_now() - t0, 0, (uint64_t)nn, "pickle-reader", NULL);
done:
  if (lab)
    for (size_t i = 0; i < rows; i++)
      if (i >= (size_t)nn) free(lab[i]);
  free(lab);
  free(ctrain);
  free(ctest);
  tbl_free(t);
  ld_names_free(names, nn);
  return rc;
}
