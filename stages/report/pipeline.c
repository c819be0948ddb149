/*
 * pipeline.c -- %pipeline: the whitepaper's stages (docs/workflow.md) in order, each run as its
 * own magic line (so each shows its normal output and records its timing),
 * then the timing table and chart.
 *
 *   copy    (Test 1): download, integrity (md5), extract, verify, load, meta,
 *                     upload, preview, train
 *   inplace (Test 2): verify, load, meta, upload, preview, train
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline.h"
#include "lib/dynbuf.h"
#include "lib/session.h"

const st_option pipeline_opts[] = {
    {"mode", 1, "copy|inplace", "Test 1 (copy: download and extract first) or Test 2 (inplace)"},
    {"source", 1, "URL|DIR", "copy: the tarball's URL (or a local .tar.gz); inplace: the dataset folder"},
    {"work", 1, "DIR", "copy: where the tarball and the extracted data go"},
    {"md5", 1, "HEX", "expected md5 of the tarball (integrity stage)"},
    {"manifest", 1, "URL|FILE", "md5sum manifest for verify (default: MANIFEST.md5 beside the source)"},
    {"s3", 1, "s3://BUCKET/PREFIX", "upload the extracted records there (skipped when absent)"},
    {"epochs", 1, "N", "training epochs (default 2, as the original)"},
    {"device", 1, "auto|cpu|cuda", "training device (default auto)"},
    {"seed", 1, "S", "seed for the preview and the training order"},
    {"fused", 0, NULL, "copy: download, md5, extract and verify in one pass over the bytes"},
    {"label", 1, "NAME", "label the run's timings (for %timings --compare)"},
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
  FILE *f = fopen(tmp, "w");
  if (!f) return st_error_errno(err, errno, path, "cannot write");
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

int pl_pipeline(st_ctx *c, const st_args *a, st_error *err) {
  const char *mode = st_arg_str(a, "mode", NULL);
  const char *source = st_arg_str(a, "source", NULL);
  const char *work = st_arg_str(a, "work", NULL);
  const char *md5 = st_arg_str(a, "md5", NULL);
  const char *manifest = st_arg_str(a, "manifest", NULL);
  const char *s3 = st_arg_str(a, "s3", NULL);
  if (s3 && !*s3) s3 = NULL; /* --s3 '' (an unset parameter): upload skipped */
  const char *device = st_arg_str(a, "device", NULL);
  const char *seed = st_arg_str(a, "seed", NULL);
  const char *label = st_arg_str(a, "label", NULL);
  long long epochs;
  int rc = st_arg_int(a, "epochs", 2, 0, 1000, &epochs, err);
  if (rc) return rc;
  if (!c->run_line)
    return st_error_set(err, ST_ENOTSUP, "pipeline", -1, "this front end cannot run lines");
  if (!mode || (strcmp(mode, "copy") != 0 && strcmp(mode, "inplace") != 0))
    return st_error_set(err, ST_EINVAL, "--mode", -1,
                        "expected --mode copy (Test 1) or --mode inplace (Test 2)");
  int copy = strcmp(mode, "copy") == 0;
  if (!source) return st_error_set(err, ST_EINVAL, "--source", -1, "--source is required");
  if (copy && !work)
    return st_error_set(err, ST_EINVAL, "--work", -1, "--mode copy needs --work DIR");
  if (s3 && strncmp(s3, "s3://", 5) != 0)
    return st_error_set(err, ST_EINVAL, "--s3", -1, "expected s3://BUCKET/PREFIX, got '%s'", s3);
  if (md5 && strlen(md5) != 32)
    return st_error_set(err, ST_EINVAL, "--md5", -1, "expected 32 hex digits");
  if (seed) {
    long long sv;
    rc = st_parse_int(seed, "--seed", 0, 0x7fffffffffffffffLL, &sv, err);
    if (rc) return rc;
  }

  if (c->session) { /* a pipeline is one timing run */
    ss_session_clear_timings(c->session);
    c->session->run_label[0] = 0;
  }
  char data_dir[4096], tarball[4200], url[4200], man[4200], man_local[4200];
  dynbuf l = DYN_INIT(PL_LINE_MAX);
  int step = 0;
  const int nsteps = copy ? 9 : 6;
  double t0 = st_now();
  int fused = copy && st_arg_has(a, "fused");

  if (copy) {
    if (mkdir(work, 0777) != 0 && errno != EEXIST)
      return st_error_errno(err, errno, work, "cannot create the work folder");
    snprintf(data_dir, sizeof data_dir, "%s", work);
    snprintf(tarball, sizeof tarball, "%s/" TARBALL, work);
    if (is_url(source)) snprintf(url, sizeof url, "%s", source);
    else if (source[0] == '/') snprintf(url, sizeof url, "file://%s", source);
    else {
      char cwd[4096];
      if (!getcwd(cwd, sizeof cwd)) return st_error_errno(err, errno, ".", "getcwd");
      snprintf(url, sizeof url, "file://%s/%s", cwd, source);
    }
    /* The manifest: given, beside the source, or the original's. */
    snprintf(man_local, sizeof man_local, "%s/MANIFEST.md5", work);
    if (manifest) snprintf(man, sizeof man, "%s", manifest);
    else sibling(man, sizeof man, url, "MANIFEST.md5");
    if (is_url(man)) {
      dyn_puts(&l, "download");
      add_word(&l, man);
      dyn_puts(&l, " --to");
      add_word(&l, man_local);
      if ((rc = line_error(&l, "a stage line is too long", err))) return rc;
      st_printf(c, "fetching the manifest: %%%s\n", l.p);
      st_error e2;
      st_error_clear(&e2);
      rc = c->run_line(c, l.p, &e2);
      dyn_reset(&l);
      if (rc == ST_ECANCELED) return st_error_set(err, rc, "pipeline", -1, "interrupted");
      if (rc) {
        if (manifest || !md5 || strcmp(md5, official_md5) != 0) {
          char msg[3000];
          st_error_format(&e2, msg, sizeof msg);
          return st_error_set(err, rc, man, -1,
                              "cannot fetch the manifest for verify (%s); pass --manifest", msg);
        }
        st_printf(c, "no manifest beside the source: using the original CIFAR-10 md5s\n");
        rc = write_file(man_local, official_manifest, err);
        if (rc) return rc;
      }
      /* The manifest download is bookkeeping, not a stage of docs/workflow.md. */
      ss_session *s = c->session;
      if (s && s->n_timings && strcmp(s->timings[s->n_timings - 1].stage, "download") == 0)
        s->n_timings--;
    } else {
      snprintf(man_local, sizeof man_local, "%s", man);
    }

    if (fused) {
      dyn_puts(&l, "download");
      add_word(&l, url);
      dyn_puts(&l, " --to");
      add_word(&l, tarball);
      if (md5) { dyn_puts(&l, " --md5"); add_word(&l, md5); }
      dyn_puts(&l, " --extract");
      add_word(&l, work);
      dyn_puts(&l, " --verify");
      add_word(&l, man_local);
      rc = run(c, &l, &step, nsteps, err);
      step = 4;
    } else {
      dyn_puts(&l, "download");
      add_word(&l, url);
      dyn_puts(&l, " --to");
      add_word(&l, tarball);
      rc = run(c, &l, &step, nsteps, err);
      if (!rc) {
        dyn_puts(&l, "md5");
        add_word(&l, tarball);
        if (md5) { dyn_puts(&l, " --expect"); add_word(&l, md5); }
        rc = run(c, &l, &step, nsteps, err);
      }
      if (!rc) {
        dyn_puts(&l, "extract");
        add_word(&l, tarball);
        dyn_puts(&l, " --to");
        add_word(&l, work);
        rc = run(c, &l, &step, nsteps, err);
      }
      if (!rc) {
        dyn_puts(&l, "verify");
        add_word(&l, man_local);
        dyn_puts(&l, " --root");
        add_word(&l, work);
        rc = run(c, &l, &step, nsteps, err);
      }
    }
  } else {
    snprintf(data_dir, sizeof data_dir, "%s", source);
    if (manifest) snprintf(man_local, sizeof man_local, "%s", manifest);
    else snprintf(man_local, sizeof man_local, "%s/MANIFEST.md5", source);
    dyn_puts(&l, "verify");
    add_word(&l, man_local);
    dyn_puts(&l, " --root");
    add_word(&l, source);
    rc = run(c, &l, &step, nsteps, err);
  }

  if (!rc) {
    dyn_puts(&l, "load");
    add_word(&l, data_dir);
    rc = run(c, &l, &step, nsteps, err);
  }
  if (!rc) {
    dyn_puts(&l, "meta");
    add_word(&l, data_dir);
    rc = run(c, &l, &step, nsteps, err);
  }
  if (!rc) {
    if (s3) {
      char records[4200];
      snprintf(records, sizeof records, "%s/cifar-10-batches-py", data_dir);
      dyn_puts(&l, "upload");
      add_word(&l, records);
      char dest[4200];
      snprintf(dest, sizeof dest, "%s%s", s3, s3[strlen(s3) - 1] == '/' ? "" : "/");
      add_word(&l, dest);
      rc = run(c, &l, &step, nsteps, err);
    } else {
      step++;
      st_printf(c, "\n[%d/%d] upload: skipped (no --s3 target)\n", step, nsteps);
    }
  }
  if (!rc) {
    dyn_puts(&l, "preview --n 4");
    if (seed) { dyn_puts(&l, " --seed"); add_word(&l, seed); }
    rc = run(c, &l, &step, nsteps, err);
  }
  if (!rc) {
    char e[32];
    snprintf(e, sizeof e, "%lld", epochs);
    dyn_puts(&l, "train --epochs");
    add_word(&l, e);
    if (device) { dyn_puts(&l, " --device"); add_word(&l, device); }
    if (seed) { dyn_puts(&l, " --seed"); add_word(&l, seed); }
    rc = run(c, &l, &step, nsteps, err);
  }
  if (rc) return rc;
  st_printf(c, "\npipeline (%s): %d stages in %.2f s\n", copy ? "copy, Test 1" : "inplace, Test 2",
            nsteps, st_now() - t0);
  dyn_puts(&l, "timings --chart");
  if (label) { dyn_puts(&l, " --label"); add_word(&l, label); }
  if ((rc = line_error(&l, "label too long", err))) return rc;
  return c->run_line(c, l.p, err);
}
