/*
 * verify.c -- %verify (see verify.h).
 *
 * The stage thread stats every file (sizes give the progress total and a
 * largest-first order that balances the workers), then worker threads hash
 * files with OpenSSL EVP md5, straight from a read-only mapping (no copy out
 * of the page cache: 5 % less time than 1 MiB reads with 2 threads), and add
 * to an atomic byte counter that the stage thread turns into progress.
 *
 * Every path is walked from the root one component at a time
 * (sp_open_below, stages/lib/safepath.h): nothing is opened before it was
 * looked at, a FIFO or a device is never opened, and a symlink is followed
 * only by the rule %extract creates them by (sp_link_stays); one that leads
 * out of the root is reported as "outside" and nothing behind it is read,
 * hashed or listed.
 */
#include "verify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/fileio.h"
#include "lib/cache.h"
#include "lib/limits.h"
#include "lib/safepath.h"
#include "lib/strv.h"
#include "lib/table.h"
#include "md5.h"

const st_option vf_verify_opts[] = {
    {"root", 1, "DIR", "folder the manifest's paths are relative to (default: its folder)"},
    {"jobs", 1, "N", "hashing threads (default: all cores)"},
    PC_COLD_OPTION,
    {NULL, 0, NULL, NULL}};

enum { VF_PENDING, VF_OK, VF_MISSING, VF_MISMATCH, VF_ERROR, VF_OUTSIDE };

typedef struct {
  int status;
  int errnum;
  const char *why;  /* VF_ERROR without an errno (a string literal) */
  char *detail;     /* VF_OUTSIDE: "LINK -> TARGET ..." (malloc'd) */
  char actual[33];
  uint64_t size;
} vf_res;

typedef struct {
  st_ctx *c;
  int root;             /* the root folder, open */
  mf_list *mf;
  vf_res *res;
  size_t *order;
  size_t norder;
  atomic_size_t next;
  atomic_uint_fast64_t bytes;
  atomic_int running;
  pthread_mutex_t mu;   /* signals the stage thread when the last worker ends */
  pthread_cond_t cv;
} vf_job;

/* What is there instead of a regular file, as the table says it. */
static const char *not_a_file(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder, not a regular file";
  if (S_ISFIFO(mode)) return "a FIFO, not a regular file";
  if (S_ISSOCK(mode)) return "a socket, not a regular file";
  if (S_ISCHR(mode)) return "a character device, not a regular file";
  if (S_ISBLK(mode)) return "a block device, not a regular file";
  return "not a regular file";
}

/* Opens manifest entry rel below the root (sp_open_below); when it cannot,
 * r says why (missing, outside the root, unreadable) and -1 is returned. */
static int vf_open_entry(int root, const char *rel, vf_res *r) {
  sp_found *f = malloc(sizeof *f);
  if (!f) {
    r->status = VF_ERROR;
    r->errnum = ENOMEM;
    return -1;
  }
  int fd = sp_open_below(root, rel, FIO_FILE, f);
  if (fd < 0) {
    r->status = f->status == SP_MISSING ? VF_MISSING : f->status == SP_OUTSIDE ? VF_OUTSIDE : VF_ERROR;
    r->errnum = f->err;
    if (f->status == SP_OTHER) r->why = not_a_file(f->st.st_mode);
    if (f->status == SP_OUTSIDE && !r->detail) {
      size_t n = strlen(f->link) + strlen(f->target) + 64;
      r->detail = malloc(n);
      if (r->detail)
        snprintf(r->detail, n, "symlink %s -> %s leads out of the root (not read)", f->link, f->target);
    }
  } else {
    r->size = (uint64_t)f->st.st_size;
  }
  free(f);
  return fd;
}

static void *vf_worker(void *arg) {
  vf_job *j = arg;
  st_error e;
  for (;;) {
    size_t k = atomic_fetch_add(&j->next, 1);
    if (k >= j->norder || st_cancelled(j->c)) break;
    size_t i = j->order[k];
    vf_res *r = &j->res[i];
    /* walked again: what was checked may have been replaced since */
    int fd = vf_open_entry(j->root, j->mf->e[i].path, r);
    if (fd < 0) continue;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    st_error_clear(&e);
    int rc = md5_mapped(fd, r->size, j->mf->e[i].path, 1u << 20, j->c, &j->bytes, r->actual, &e);
    close(fd);
    if (rc == ST_ECANCELED) break;
    if (rc) {
      r->status = VF_ERROR;
      r->errnum = EIO;
      if (rc == ST_EIO) r->why = "changed size while being read";
      continue;
    }
    r->status = strcmp(r->actual, j->mf->e[i].hex) ? VF_MISMATCH : VF_OK;
  }
  pthread_mutex_lock(&j->mu);
  if (atomic_fetch_sub(&j->running, 1) == 1) pthread_cond_broadcast(&j->cv);
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

/* Extra files: entries of every folder that holds a manifest entry, not listed. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Does a manifest path lie under folder rel ("rel/...")? The paths are
 * sorted, so the first one not below "rel/" decides. */
static int covers(const mf_list *sorted, const char *rel) {
  size_t rl = strlen(rel), lo = 0, hi = sorted->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const char *p = sorted->e[mid].path;
    int c = strncmp(p, rel, rl);
    if (c < 0 || (c == 0 && (unsigned char)p[rl] < '/')) lo = mid + 1;
    else hi = mid;
  }
  return lo < sorted->n && !strncmp(sorted->e[lo].path, rel, rl) && sorted->e[lo].path[rl] == '/';
}

/* Lists the folders of the manifest's files, walked from the root as the
 * files are (a folder behind a symlink out of the root is not entered);
 * the manifest itself is never extra. */
static void find_extras(int root, const mf_list *sorted, const char *manifest, strv *out) {
  /* the folders the manifest lists files in, each once (a name sorts
   * between a folder's files and its subfolders', so sort them again) */
  strv dirs = {0};
  for (size_t i = 0; i < sorted->n; i++) {
    const char *p = sorted->e[i].path, *sl = strrchr(p, '/');
    char d[PK_LIMIT_MANIFEST_PATH + 1];
    snprintf(d, sizeof d, "%.*s", sl ? (int)(sl - p) : 0, p);
    if (!dirs.n || strcmp(dirs.v[dirs.n - 1], d)) strv_push(&dirs, d, strlen(d));
  }
  if (dirs.n) qsort(dirs.v, dirs.n, sizeof *dirs.v, cmp_str);
  size_t u = 0;
  for (size_t k = 0; k < dirs.n; k++) {
    if (u && !strcmp(dirs.v[u - 1], dirs.v[k])) free(dirs.v[k]);
    else dirs.v[u++] = dirs.v[k];
  }
  dirs.n = u;
  struct stat mst;
  int have_m = manifest && stat(manifest, &mst) == 0;
  sp_found *f = malloc(sizeof *f);
  for (size_t k = 0; f && k < dirs.n; k++) {
    int dfd = sp_open_below(root, dirs.v[k], FIO_DIR, f);
    if (dfd < 0) continue;
    DIR *d = fdopendir(dfd);
    if (!d) {
      close(dfd);
      continue;
    }
    struct dirent *e;
    for (e = readdir(d); e; e = readdir(d)) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char rel[PK_LIMIT_MANIFEST_PATH + 300];
      if (dirs.v[k][0]) snprintf(rel, sizeof rel, "%s/%s", dirs.v[k], e->d_name);
      else snprintf(rel, sizeof rel, "%s", e->d_name);
      if (mf_find(sorted, rel) >= 0) continue;
      struct stat st; /* the entry itself: a symlink is listed, never entered */
      int there = fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0;
      /* a folder (or a symlink in a folder's place) is extra only when no
       * manifest path lies under it: the paths under it are reported */
      if (there && (S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)) && covers(sorted, rel)) continue;
      if (there && have_m && st.st_dev == mst.st_dev && st.st_ino == mst.st_ino) continue;
      strv_push(out, rel, strlen(rel));
    }
    closedir(d);
  }
  free(f);
  strv_free(&dirs);
  if (out->n > 1) qsort(out->v, out->n, sizeof *out->v, cmp_str);
}

/* largest first (then manifest order): the long files start early */
static int cmp_size_desc(const void *a, const void *b, void *res) {
  size_t i = *(const size_t *)a, k = *(const size_t *)b;
  uint64_t x = ((const vf_res *)res)[i].size, y = ((const vf_res *)res)[k].size;
  return x < y ? 1 : x > y ? -1 : (i > k) - (i < k);
}

/* Everything one vf_run holds; vf_pass_free releases it whatever step
 * failed. */
typedef struct vf_pass {
  st_ctx *c;
  st_error *err;
  const char *manifest, *root, *backend;
  int rootfd;            /* root, open (-1 until vf_open_root) */
  mf_list *mf;
  int jobs;              /* hashing threads (0: all cores, until vf_hash decides) */
  vf_known_fn known;
  void *ud;
  vf_res *res;           /* per manifest entry */
  size_t *order;         /* the entries to hash, largest first */
  size_t norder;
  uint64_t total;        /* bytes to hash */
  uint64_t known_bytes;  /* bytes whose digest was known */
  uint64_t hashed;       /* bytes hashed */
  strv extra;            /* files in covered folders the manifest does not list */
  size_t nmiss, nbad, nerr, nout, nok, problems;
  st_progress p;
  int pstarted;
  double t0;
  pc_stats cache;        /* where the files are read from (--cold) */
} vf_pass;

/* Opens the root folder (never blocking on what is there instead). */
static int vf_open_root(vf_pass *v) {
  v->rootfd = fio_open(v->root, O_RDONLY | O_DIRECTORY, FIO_DIR, "the root (--root)", NULL, v->err);
  return v->rootfd < 0 ? v->rootfd : 0;
}

/* Sorts the manifest and allocates a result per entry. */
static int vf_alloc(vf_pass *v) {
  mf_sort(v->mf);
  size_t n = v->mf->n;
  v->res = calloc(n ? n : 1, sizeof *v->res);
  v->order = malloc((n ? n : 1) * sizeof *v->order);
  if (!v->res || !v->order) return st_error_set(v->err, ST_ENOMEM, v->manifest, -1, "out of memory");
  return 0;
}

/* Stats every entry: missing and unreadable ones are decided here, known
 * digests compared, the rest ordered largest first for the workers. */
static int vf_stat_all(vf_pass *v) {
  const mf_list *mf = v->mf;
  vf_res *res = v->res;
  for (size_t i = 0; i < mf->n; i++) {
    const char *kh = v->known ? v->known(v->ud, mf->e[i].path) : NULL;
    int fd = vf_open_entry(v->rootfd, mf->e[i].path, &res[i]);
    if (fd < 0) continue;
    close(fd);
    if (kh) {
      snprintf(res[i].actual, sizeof res[i].actual, "%s", kh);
      res[i].status = strcmp(kh, mf->e[i].hex) ? VF_MISMATCH : VF_OK;
      v->known_bytes += res[i].size;
      continue;
    }
    v->total += res[i].size;
    v->order[v->norder++] = i;
  }
  qsort_r(v->order, v->norder, sizeof *v->order, cmp_size_desc, res);
  return 0;
}

/* Reports progress every 50 ms until the last worker of j ends (it wakes
 * this thread at once). */
static void vf_wait_workers(vf_pass *v, vf_job *j) {
  pthread_mutex_lock(&j->mu);
  while (atomic_load(&j->running) > 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    if (atomic_load(&j->running) > 0) {
      pthread_mutex_unlock(&j->mu);
      st_progress_update(&v->p, v->known_bytes + atomic_load(&j->bytes));
      pthread_mutex_lock(&j->mu);
    }
  }
  pthread_mutex_unlock(&j->mu);
}

/* Hashes the ordered entries on --jobs threads (this thread when none can
 * start) under a progress bar; an interrupt ends the run. */
static int vf_hash(vf_pass *v) {
  int jobs = v->jobs;
  size_t norder = v->norder;
  if (jobs <= 0) {
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    jobs = nc < 1 ? 1 : (int)nc;
  }
  if ((size_t)jobs > norder) jobs = norder ? (int)norder : 1;
  if (jobs > PK_LIMIT_VERIFY_JOBS) jobs = PK_LIMIT_VERIFY_JOBS;
  v->jobs = jobs;
  vf_job j = {.c = v->c, .root = v->rootfd, .mf = v->mf, .res = v->res, .order = v->order, .norder = norder};
  atomic_init(&j.next, 0);
  atomic_init(&j.bytes, 0);
  atomic_init(&j.running, 0);
  pthread_mutex_init(&j.mu, NULL);
  pthread_cond_init(&j.cv, NULL);
  char label[200];
  snprintf(label, sizeof label, "verify %.180s", v->manifest);
  st_progress_begin(v->c, &v->p, label, "B", v->total + v->known_bytes);
  v->pstarted = 1;
  st_progress_update(&v->p, v->known_bytes);
  pthread_t th[PK_LIMIT_VERIFY_JOBS];
  int started = 0;
  for (int t = 0; t < jobs && norder; t++) {
    atomic_fetch_add(&j.running, 1);
    if (pthread_create(&th[started], NULL, vf_worker, &j) == 0) started++;
    else atomic_fetch_sub(&j.running, 1);
  }
  if (norder && !started) vf_worker(&j); /* no threads: hash here */
  vf_wait_workers(v, &j);
  for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
  pthread_mutex_destroy(&j.mu);
  pthread_cond_destroy(&j.cv);
  st_progress_update(&v->p, v->known_bytes + atomic_load(&j.bytes));
  v->hashed = atomic_load(&j.bytes);
  if (st_cancelled(v->c)) {
    st_progress_end(&v->p, ST_ECANCELED);
    v->pstarted = 0;
    return st_error_set(v->err, ST_ECANCELED, v->manifest, -1, "interrupted after %llu of %llu bytes",
                        (unsigned long long)v->hashed, (unsigned long long)v->total);
  }
  return 0;
}

/* Finds the extra files and counts every kind of problem; ends the
 * progress bar (failed when there are problems). */
static int vf_tally(vf_pass *v) {
  find_extras(v->rootfd, v->mf, v->manifest, &v->extra);
  for (size_t i = 0; i < v->mf->n; i++) {
    v->nmiss += v->res[i].status == VF_MISSING;
    v->nbad += v->res[i].status == VF_MISMATCH;
    v->nerr += v->res[i].status == VF_ERROR;
    v->nout += v->res[i].status == VF_OUTSIDE;
    v->nok += v->res[i].status == VF_OK;
  }
  v->problems = v->nmiss + v->nbad + v->nerr + v->nout + v->extra.n;
  st_progress_end(&v->p, v->problems ? ST_ECHECKSUM : 0);
  v->pstarted = 0;
  return 0;
}

/* The table of problems, by file (at most the first 1000). */
static int vf_show_problems(vf_pass *v) {
  if (!v->problems) return 0;
  const mf_list *mf = v->mf;
  const vf_res *res = v->res;
  static const char *const hdr[] = {"status", "file", "expected md5", "actual md5"};
  tbl *t = tbl_new(4, hdr, NULL);
  size_t shown = 0;
  for (size_t i = 0; t && i < mf->n; i++) {
    if (res[i].status == VF_OK) continue;
    if (shown++ >= 1000) continue;
    const char *st = res[i].status == VF_MISSING ? "missing"
                     : res[i].status == VF_MISMATCH ? "mismatch"
                     : res[i].status == VF_OUTSIDE ? "outside" : "unreadable";
    const char *act = res[i].status == VF_MISMATCH ? res[i].actual
                      : res[i].status == VF_OUTSIDE ? (res[i].detail ? res[i].detail : "a symlink out of the root")
                      : res[i].status != VF_ERROR ? ""
                      : res[i].why ? res[i].why : strerror(res[i].errnum);
    const char *cells[4] = {st, mf->e[i].path, mf->e[i].hex, act};
    tbl_add(t, cells, 0);
  }
  for (size_t i = 0; t && i < v->extra.n; i++) {
    if (shown++ >= 1000) continue;
    const char *cells[4] = {"extra", v->extra.v[i], "(not in the manifest)", ""};
    tbl_add(t, cells, 0);
  }
  char cap[300];
  snprintf(cap, sizeof cap, "verify %.200s: %zu problem%s%s", v->manifest, v->problems,
           v->problems == 1 ? "" : "s", shown > 1000 ? " (first 1000 shown)" : "");
  if (t) tbl_display(v->c, t, cap, NULL, 0);
  tbl_free(t);
  return 0;
}

/* The summary line and the "verify" timing record; any problem makes the
 * run fail with ST_ECHECKSUM. */
static int vf_summary(vf_pass *v) {
  size_t n = v->mf->n;
  double dt = st_now() - v->t0;
  char b1[32], r1[32], how[160];
  st_fmt_bytes(b1, sizeof b1, v->hashed + v->known_bytes);
  st_fmt_rate(r1, sizeof r1, v->hashed, dt);
  /* members hashed as they were extracted cost no time here: say so rather
   * than print a rate of zero bytes (or of bytes read long before) */
  if (!v->hashed && v->known_bytes)
    snprintf(how, sizeof how, "hashed while extracting");
  else if (v->known_bytes) {
    char b2[32];
    st_fmt_bytes(b2, sizeof b2, v->known_bytes);
    snprintf(how, sizeof how, "in %.2f s (%s; %s hashed while extracting)", dt, r1, b2);
  } else
    snprintf(how, sizeof how, "in %.2f s (%s)", dt, r1);
  char out[64] = "";
  if (v->nout) snprintf(out, sizeof out, ", %zu outside the root", v->nout);
  if (v->problems)
    st_printf(v->c, "verify: %zu file%s, %s %s: %zu OK, %zu missing, %zu mismatching, "
                    "%zu unreadable, %zu extra%s\n",
              n, n == 1 ? "" : "s", b1, how, v->nok, v->nmiss, v->nbad, v->nerr, v->extra.n, out);
  else if (v->hashed)
    st_printf(v->c, "verify: %zu file%s, %s %s, all OK (%d thread%s)\n", n, n == 1 ? "" : "s", b1,
              how, v->jobs, v->jobs == 1 ? "" : "s");
  else
    st_printf(v->c, "verify: %zu file%s, %s %s, all OK\n", n, n == 1 ? "" : "s", b1, how);
  pc_timing_add(v->c, &v->cache, "verify", "verify", dt, v->hashed + v->known_bytes, n, v->backend, NULL);
  if (v->problems)
    return st_error_set(v->err, ST_ECHECKSUM, v->manifest, -1,
                        "verification failed: %zu missing, %zu mismatching, %zu unreadable, %zu extra%s "
                        "(see the table)", v->nmiss, v->nbad, v->nerr, v->extra.n, out);
  return 0;
}

/* Releases what the pass holds (whatever step failed); returns rc. */
static int vf_pass_free(vf_pass *v, int rc) {
  if (v->pstarted) st_progress_end(&v->p, rc);
  strv_free(&v->extra);
  for (size_t i = 0; v->res && i < v->mf->n; i++) free(v->res[i].detail);
  if (v->rootfd >= 0) close(v->rootfd);
  free(v->res);
  free(v->order);
  return rc;
}

/* Each file of the manifest measured in the page cache (and with --cold
 * dropped from it) before the clock starts, so that writing out the dirty
 * pages of files just extracted is not counted as reading them. */
static void vf_prepare(vf_pass *v) {
  pc_note_fs(&v->cache, v->root);
  sp_found *f = malloc(sizeof *f); /* large: the link and its target */
  for (size_t i = 0; f && i < v->mf->n; i++) {
    if (v->known && v->known(v->ud, v->mf->e[i].path)) continue;
    /* walked as the hashing will walk it: nothing outside the root is touched */
    int fd = sp_open_below(v->rootfd, v->mf->e[i].path, FIO_FILE, f);
    if (fd < 0) continue;
    pc_prepare(&v->cache, fd, (uint64_t)f->st.st_size);
    close(fd);
  }
  free(f);
  pc_report(v->c, "verify", &v->cache);
}

int vf_run(st_ctx *c, const char *manifest, mf_list *mf, const char *root, int jobs, int cold,
                  vf_known_fn known, void *ud, const char *backend, st_error *err) {
  vf_pass v;
  memset(&v, 0, sizeof v);
  v.c = c;
  v.err = err;
  v.manifest = manifest;
  v.root = root;
  v.backend = backend;
  v.mf = mf;
  v.jobs = jobs;
  v.known = known;
  v.ud = ud;
  v.rootfd = -1;
  pc_init(&v.cache, cold);
  int rc = vf_open_root(&v);
  if (!rc) vf_prepare(&v);
  v.t0 = st_now();
  if (!rc) rc = vf_alloc(&v);
  if (!rc) rc = vf_stat_all(&v);
  if (!rc) rc = vf_hash(&v);
  if (!rc) rc = vf_tally(&v);
  if (!rc) rc = vf_show_problems(&v);
  if (!rc) rc = vf_summary(&v);
  return vf_pass_free(&v, rc);
}

int vf_verify(st_ctx *c, const st_args *a, st_error *err) {
  const char *manifest = a->pos[0];
  long long jobs;
  int rc = st_arg_int(a, "jobs", 0, 0, PK_LIMIT_VERIFY_JOBS, &jobs, err);
  if (rc) return rc;
  char rootbuf[4096];
  const char *root = st_arg_str(a, "root", NULL);
  if (!root) {
    const char *sl = strrchr(manifest, '/');
    snprintf(rootbuf, sizeof rootbuf, "%.*s", sl ? (int)(sl - manifest) : 1, sl ? manifest : ".");
    if (sl == manifest) snprintf(rootbuf, sizeof rootbuf, "/");
    root = rootbuf;
  }
  int rfd = fio_open(root, O_RDONLY | O_DIRECTORY, FIO_DIR, "the root (--root)", NULL, err); /* first */
  if (rfd < 0) return rfd;
  close(rfd);
  mf_list mf;
  rc = mf_load(manifest, &mf, err);
  if (rc) return rc;
  rc = vf_run(c, manifest, &mf, root, (int)jobs, st_arg_has(a, "cold"), NULL, NULL, "openssl-evp", err);
  mf_free(&mf);
  return rc;
}
