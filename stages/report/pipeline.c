/*
 * pipeline.c -- %pipeline: the whitepaper's stages (docs/workflow.md) in order, each run as its
 * own magic line (so each shows its normal output and records its timing),
 * then the timing table and chart.
 *
 *   copy    (Test 1): download, integrity (md5), extract, verify, load, meta,
 *                     upload, preview, train
 *   inplace (Test 2): verify, load, meta, upload, preview, train
 *
 * --cold passes --cold to every stage that reads files (md5, extract,
 * verify, load, upload, train --from); --stream (inplace) trains with
 * %train --from DIR, out of core, and loads only the test split (what %meta
 * and %preview show).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline.h"
#include "lib/dynbuf.h"
#include "lib/fileio.h"
#include "lib/session.h"

const st_option pipeline_opts[] = {
    {"mode", 1, "copy|inplace", "Test 1 (copy: download and extract first) or Test 2 (inplace)"},
    {"source", 1, "URL|DIR", "copy: the tarball's URL (http, file, s3://BUCKET/KEY) or a local .tar.gz; inplace: the dataset folder"},
    {"work", 1, "DIR", "copy: where the tarball and the extracted data go"},
    {"md5", 1, "HEX", "expected md5 of the tarball (integrity stage)"},
    {"manifest", 1, "URL|FILE", "md5sum manifest for verify (default: MANIFEST.md5 beside the source)"},
    {"s3", 1, "s3://BUCKET/PREFIX", "upload the extracted records there (skipped when absent)"},
    {"epochs", 1, "N", "training epochs (default 2, as the original)"},
    {"device", 1, "auto|cpu|cuda", "training device (default auto)"},
    {"seed", 1, "S", "seed for the preview and the training order"},
    {"fused", 0, NULL, "copy: download, md5, extract and verify in one pass over the bytes"},
    {"label", 1, "NAME", "label the run's timings (for %timings --compare)"},
    {"endpoint", 1, "URL", "S3 endpoint for an s3:// --source and --s3 (default: as %upload finds it)"},
    {"cold", 0, NULL, "every stage that reads files drops their pages from the page cache first"},
    {"stream", 0, NULL, "inplace: train straight from the files (%train --from), load only the test split"},
    {NULL, 0, NULL, NULL}};

#define TARBALL "cifar-10-python.tar.gz"

/* The original CIFAR-10 archive and its members (docs/workflow.md). */
static const char official_md5[] = "c58f30108f718f92721af3b95e74349a";
static const char official_manifest[] =
    "c99cafc152244af753f735de768cd75f  cifar-10-batches-py/data_batch_1\n"
    "d4bba439e000b95fd0a9bffe97cbabec  cifar-10-batches-py/data_batch_2\n"
    "54ebc095f3ab1f0389bbae665268c751  cifar-10-batches-py/data_batch_3\n"
    "634d18415352ddfa80567beed471001a  cifar-10-batches-py/data_batch_4\n"
    "482c414d41f54cd18b22e5b47cb7c3cb  cifar-10-batches-py/data_batch_5\n"
    "40351d587109b95175f43aff81a1287e  cifar-10-batches-py/test_batch\n"
    "5ff9c542aee3614f3951f8cda6e48888  cifar-10-batches-py/batches.meta\n";

/* A stage line is built in a dynbuf of at most PL_LINE_MAX bytes; words
 * are shell-quoted. */
#define PL_LINE_MAX 8190

/* Appends ' WORD' single-quoted, so no expansion happens twice. */
static void add_word(dynbuf *l, const char *w) {
  dyn_puts(l, " '");
  for (const char *p = w; *p; p++) {
    if (*p == '\'') dyn_puts(l, "'\\''");
    else dyn_putc(l, *p);
  }
  dyn_puts(l, "'");
}

/* The error of a line that could not be built (what), or 0. */
static int line_error(const dynbuf *l, const char *what, st_error *err) {
  if (l->err == ST_E2BIG) return st_error_set(err, ST_E2BIG, "pipeline", -1, "%s", what);
  if (l->err) return st_error_set(err, l->err, "pipeline", -1, "out of memory");
  return 0;
}

/* Runs line l as step *step of nsteps (said first) and empties it. */
static int run(st_ctx *c, dynbuf *l, int *step, int nsteps, st_error *err) {
  int rc = line_error(l, "a stage line is too long", err);
  if (rc) return rc;
  (*step)++;
  st_printf(c, "\n[%d/%d] %%%s\n", *step, nsteps, l->p);
  if (st_cancelled(c)) return st_error_set(err, ST_ECANCELED, "pipeline", -1, "interrupted");
  rc = c->run_line(c, l->p, err);
  dyn_reset(l);
  return rc;
}

static int is_url(const char *s) { return strstr(s, "://") != NULL; }

/* The manifest beside a URL or a file: replace the last path element. */
static void sibling(char *out, size_t cap, const char *src, const char *name) {
  const char *slash = strrchr(src, '/');
  if (!slash) snprintf(out, cap, "%s", name);
  else snprintf(out, cap, "%.*s/%s", (int)(slash - src), src, name);
}

static int write_file(const char *path, const char *text, st_error *err) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fio_fopen_write(tmp, NULL, err); /* never blocks on a FIFO at that name */
  if (!f) return err->code;
  size_t n = strlen(text);
  int bad = fwrite(text, 1, n, f) != n;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return st_error_errno(err, e, path, "cannot write");
  }
  return 0;
}

/* ---- the stage: options, a job, a chain of steps, one cleanup ---- */

/* The options, parsed and checked once. */
typedef struct pl_opts {
  const char *source, *work, *md5, *manifest;
  const char *s3;        /* NULL: upload skipped */
  const char *device, *seed, *label;
  const char *endpoint;  /* --endpoint, passed to the S3 lines */
  long long epochs;
  int copy;              /* --mode copy (Test 1); else inplace (Test 2) */
  int fused;             /* copy: --fused */
  int cold;              /* --cold */
  int stream;            /* inplace: --stream */
} pl_opts;

/* Everything a run holds; pl_cleanup releases it whatever step failed. */
typedef struct pl_job {
  st_ctx *c;
  st_error *err;
  const pl_opts *o;
  dynbuf l;              /* the stage line being built */
  int step, nsteps;      /* stages run so far, and in all */
  double t0;
  char data_dir[4096];   /* the folder %load reads */
  char tarball[4200], url[4200];
  char man[4200];        /* the manifest as given or guessed (copy) */
  char man_local[4200];  /* the manifest file %verify reads */
} pl_job;

/* Parses and checks the options, and that the front end can run lines. */
static int pl_opts_parse(const st_ctx *c, const st_args *a, pl_opts *o, st_error *err) {
  memset(o, 0, sizeof *o);
  const char *mode = st_arg_str(a, "mode", NULL);
  o->source = st_arg_str(a, "source", NULL);
  o->work = st_arg_str(a, "work", NULL);
  o->md5 = st_arg_str(a, "md5", NULL);
  o->manifest = st_arg_str(a, "manifest", NULL);
  o->s3 = st_arg_str(a, "s3", NULL);
  if (o->s3 && !*o->s3) o->s3 = NULL; /* --s3 '' (an unset parameter): upload skipped */
  o->device = st_arg_str(a, "device", NULL);
  o->seed = st_arg_str(a, "seed", NULL);
  o->label = st_arg_str(a, "label", NULL);
  o->endpoint = st_arg_str(a, "endpoint", NULL);
  int rc = st_arg_int(a, "epochs", 2, 0, 1000, &o->epochs, err);
  if (rc) return rc;
  if (!c->run_line)
    return st_error_set(err, ST_ENOTSUP, "pipeline", -1, "this front end cannot run lines");
  if (!mode || (strcmp(mode, "copy") != 0 && strcmp(mode, "inplace") != 0))
    return st_error_set(err, ST_EINVAL, "--mode", -1,
                        "expected --mode copy (Test 1) or --mode inplace (Test 2)");
  o->copy = strcmp(mode, "copy") == 0;
  if (!o->source) return st_error_set(err, ST_EINVAL, "--source", -1, "--source is required");
  if (!o->copy && strncmp(o->source, "s3://", 5) == 0)
    return st_error_set(err, ST_EINVAL, "--source", -1,
                        "--mode inplace reads the data where it lies, on a file system (Test 2); "
                        "%s is object storage: copy it first with --mode copy --source "
                        "s3://BUCKET/KEY (Test 1, S3 + local disk)", o->source);
  if (o->copy && !o->work)
    return st_error_set(err, ST_EINVAL, "--work", -1, "--mode copy needs --work DIR");
  if (o->s3 && strncmp(o->s3, "s3://", 5) != 0)
    return st_error_set(err, ST_EINVAL, "--s3", -1, "expected s3://BUCKET/PREFIX, got '%s'", o->s3);
  if (o->md5 && strlen(o->md5) != 32)
    return st_error_set(err, ST_EINVAL, "--md5", -1, "expected 32 hex digits");
  if (o->seed) {
    long long sv;
    rc = st_parse_int(o->seed, "--seed", 0, 0x7fffffffffffffffLL, &sv, err);
    if (rc) return rc;
  }
  o->fused = o->copy && st_arg_has(a, "fused");
  o->cold = st_arg_has(a, "cold");
  o->stream = st_arg_has(a, "stream");
  if (o->stream && o->copy)
    return st_error_set(err, ST_EINVAL, "--stream", -1,
                        "--stream goes with --mode inplace (training straight from the data's own files)");
  return 0;
}

/* " --cold" after a line that reads files, with --cold. */
static void add_cold(pl_job *j) {
  if (j->o->cold) dyn_puts(&j->l, " --cold");
}

/* --endpoint after a line that reads or writes s3:// (the line names it). */
static void add_endpoint(pl_job *j, const char *url) {
  if (j->o->endpoint && strncmp(url, "s3://", 5) == 0) {
    dyn_puts(&j->l, " --endpoint");
    add_word(&j->l, j->o->endpoint);
  }
}

/* Runs the line built in j->l as the next stage. */
static int pl_run(pl_job *j) { return run(j->c, &j->l, &j->step, j->nsteps, j->err); }

/* A pipeline is one timing run: the session's timings and label start over. */
static int pl_begin(pl_job *j) {
  if (j->c->session) {
    ss_session_clear_timings(j->c->session);
    j->c->session->run_label[0] = 0;
  }
  return 0;
}

/* copy: the work folder, the tarball's path and URL (file:// for a local
 * source), and where the manifest is (given, or beside the source). */
static int pl_copy_paths(pl_job *j) {
  const pl_opts *o = j->o;
  if (!o->copy) return 0;
  if (mkdir(o->work, 0777) != 0 && errno != EEXIST)
    return st_error_errno(j->err, errno, o->work, "cannot create the work folder");
  snprintf(j->data_dir, sizeof j->data_dir, "%s", o->work);
  snprintf(j->tarball, sizeof j->tarball, "%s/" TARBALL, o->work);
  if (is_url(o->source)) snprintf(j->url, sizeof j->url, "%s", o->source);
  else if (o->source[0] == '/') snprintf(j->url, sizeof j->url, "file://%s", o->source);
  else {
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return st_error_errno(j->err, errno, ".", "getcwd");
    snprintf(j->url, sizeof j->url, "file://%s/%s", cwd, o->source);
  }
  /* The manifest: given, beside the source, or the original's. */
  snprintf(j->man_local, sizeof j->man_local, "%s/MANIFEST.md5", o->work);
  if (o->manifest) snprintf(j->man, sizeof j->man, "%s", o->manifest);
  else sibling(j->man, sizeof j->man, j->url, "MANIFEST.md5");
  return 0;
}

/* copy: a manifest at a URL is downloaded into the work folder (as
 * bookkeeping: its timing is dropped); with none beside the original
 * tarball (its md5 given) the original's md5s are written instead. */
static int pl_fetch_manifest(pl_job *j) {
  const pl_opts *o = j->o;
  if (!o->copy) return 0;
  if (!is_url(j->man)) {
    snprintf(j->man_local, sizeof j->man_local, "%s", j->man);
    return 0;
  }
  dynbuf *l = &j->l;
  dyn_puts(l, "download");
  add_word(l, j->man);
  dyn_puts(l, " --to");
  add_word(l, j->man_local);
  add_endpoint(j, j->man);
  int rc = line_error(l, "a stage line is too long", j->err);
  if (rc) return rc;
  st_printf(j->c, "fetching the manifest: %%%s\n", l->p);
  st_error e2;
  st_error_clear(&e2);
  rc = j->c->run_line(j->c, l->p, &e2);
  dyn_reset(l);
  if (rc == ST_ECANCELED) return st_error_set(j->err, rc, "pipeline", -1, "interrupted");
  if (rc) {
    if (o->manifest || !o->md5 || strcmp(o->md5, official_md5) != 0) {
      char msg[3000];
      st_error_format(&e2, msg, sizeof msg);
      return st_error_set(j->err, rc, j->man, -1,
                          "cannot fetch the manifest for verify (%s); pass --manifest", msg);
    }
    st_printf(j->c, "no manifest beside the source: using the original CIFAR-10 md5s\n");
    rc = write_file(j->man_local, official_manifest, j->err);
    if (rc) return rc;
  }
  /* The manifest download is bookkeeping, not a stage of docs/workflow.md. */
  ss_session *s = j->c->session;
  if (s && s->n_timings && strcmp(s->timings[s->n_timings - 1].stage, "download") == 0)
    s->n_timings--;
  return 0;
}

/* copy --fused: download, md5, extract and verify as one %download. */
static int pl_copy_fused(pl_job *j) {
  const pl_opts *o = j->o;
  dynbuf *l = &j->l;
  dyn_puts(l, "download");
  add_word(l, j->url);
  dyn_puts(l, " --to");
  add_word(l, j->tarball);
  if (o->md5) { dyn_puts(l, " --md5"); add_word(l, o->md5); }
  dyn_puts(l, " --extract");
  add_word(l, o->work);
  dyn_puts(l, " --verify");
  add_word(l, j->man_local);
  add_endpoint(j, j->url);
  int rc = pl_run(j);
  j->step = 4;
  return rc;
}

/* copy: %download, %md5, %extract and %verify, one stage each (or fused). */
static int pl_copy_stages(pl_job *j) {
  const pl_opts *o = j->o;
  if (!o->copy) return 0;
  if (o->fused) return pl_copy_fused(j);
  dynbuf *l = &j->l;
  dyn_puts(l, "download");
  add_word(l, j->url);
  dyn_puts(l, " --to");
  add_word(l, j->tarball);
  add_endpoint(j, j->url);
  int rc = pl_run(j);
  if (!rc) {
    dyn_puts(l, "md5");
    add_word(l, j->tarball);
    if (o->md5) { dyn_puts(l, " --expect"); add_word(l, o->md5); }
    add_cold(j);
    rc = pl_run(j);
  }
  if (!rc) {
    dyn_puts(l, "extract");
    add_word(l, j->tarball);
    dyn_puts(l, " --to");
    add_word(l, o->work);
    add_cold(j);
    rc = pl_run(j);
  }
  if (!rc) {
    dyn_puts(l, "verify");
    add_word(l, j->man_local);
    dyn_puts(l, " --root");
    add_word(l, o->work);
    add_cold(j);
    rc = pl_run(j);
  }
  return rc;
}

/* inplace: %verify of the dataset folder against its manifest. */
static int pl_inplace_verify(pl_job *j) {
  const pl_opts *o = j->o;
  if (o->copy) return 0;
  snprintf(j->data_dir, sizeof j->data_dir, "%s", o->source);
  if (o->manifest) snprintf(j->man_local, sizeof j->man_local, "%s", o->manifest);
  else snprintf(j->man_local, sizeof j->man_local, "%s/MANIFEST.md5", o->source);
  dyn_puts(&j->l, "verify");
  add_word(&j->l, j->man_local);
  dyn_puts(&j->l, " --root");
  add_word(&j->l, o->source);
  add_cold(j);
  return pl_run(j);
}

/* %load and %meta of the data folder (--stream: its test split only). */
static int pl_load_and_meta(pl_job *j) {
  dyn_puts(&j->l, "load");
  add_word(&j->l, j->data_dir);
  if (j->o->stream) dyn_puts(&j->l, " --split test");
  add_cold(j);
  int rc = pl_run(j);
  if (!rc) {
    dyn_puts(&j->l, "meta");
    add_word(&j->l, j->data_dir);
    rc = pl_run(j);
  }
  return rc;
}

/* %upload of the records to --s3 (a skipped stage without it). */
static int pl_upload(pl_job *j) {
  const char *s3 = j->o->s3;
  if (!s3) {
    j->step++;
    st_printf(j->c, "\n[%d/%d] upload: skipped (no --s3 target)\n", j->step, j->nsteps);
    return 0;
  }
  char records[4200];
  snprintf(records, sizeof records, "%s/cifar-10-batches-py", j->data_dir);
  dyn_puts(&j->l, "upload");
  add_word(&j->l, records);
  char dest[4200];
  snprintf(dest, sizeof dest, "%s%s", s3, s3[strlen(s3) - 1] == '/' ? "" : "/");
  add_word(&j->l, dest);
  add_endpoint(j, dest);
  add_cold(j);
  return pl_run(j);
}

/* %preview of four images and %train for --epochs (with --device, --seed). */
static int pl_preview_and_train(pl_job *j) {
  const pl_opts *o = j->o;
  dynbuf *l = &j->l;
  dyn_puts(l, o->stream ? "preview --n 4 --split test" : "preview --n 4");
  if (o->seed) { dyn_puts(l, " --seed"); add_word(l, o->seed); }
  int rc = pl_run(j);
  if (rc) return rc;
  char e[32];
  snprintf(e, sizeof e, "%lld", o->epochs);
  dyn_puts(l, "train --epochs");
  add_word(l, e);
  if (o->device) { dyn_puts(l, " --device"); add_word(l, o->device); }
  if (o->seed) { dyn_puts(l, " --seed"); add_word(l, o->seed); }
  if (o->stream) {
    dyn_puts(l, " --from");
    add_word(l, j->data_dir);
    add_cold(j);
  }
  return pl_run(j);
}

/* The run's summary line, then %timings --chart (with --label). */
static int pl_report(pl_job *j) {
  const pl_opts *o = j->o;
  st_printf(j->c, "\npipeline (%s): %d stages in %.2f s\n", o->copy ? "copy, Test 1" : "inplace, Test 2",
            j->nsteps, st_now() - j->t0);
  dyn_puts(&j->l, "timings --chart");
  if (o->label) { dyn_puts(&j->l, " --label"); add_word(&j->l, o->label); }
  int rc = line_error(&j->l, "label too long", j->err);
  if (rc) return rc;
  return j->c->run_line(j->c, j->l.p, j->err);
}

int pl_pipeline(st_ctx *c, const st_args *a, st_error *err) {
  pl_opts o;
  int rc = pl_opts_parse(c, a, &o, err);
  if (rc) return rc;
  pl_job j;
  memset(&j, 0, sizeof j);
  j.c = c;
  j.err = err;
  j.o = &o;
  dyn_init(&j.l, PL_LINE_MAX);
  j.nsteps = o.copy ? 9 : 6;
  if (!rc) rc = pl_begin(&j);
  j.t0 = st_now();
  if (!rc) rc = pl_copy_paths(&j);
  if (!rc) rc = pl_fetch_manifest(&j);
  if (!rc) rc = pl_copy_stages(&j);
  if (!rc) rc = pl_inplace_verify(&j);
  if (!rc) rc = pl_load_and_meta(&j);
  if (!rc) rc = pl_upload(&j);
  if (!rc) rc = pl_preview_and_train(&j);
  if (!rc) rc = pl_report(&j);
  dyn_free(&j.l);
  return rc;
}
