/*
 * tree.c -- %download s3://BUCKET/PREFIX/ --to DIR (s3.h): every object
 * below a prefix to DIR/relative/key, as `aws s3 cp --recursive` does.
 *
 * The listing comes first and every key is checked before anything is
 * written: a key whose rest after the prefix is absolute, has an empty, "."
 * or ".." component is refused (UnsafeInputError), so nothing can land
 * outside DIR. Keys ending in '/' with no bytes are folder markers and are
 * left out. The objects are then read by get.c's job, small ones many at
 * once; each goes to NAME.part below DIR, reached one folder at a time
 * without following a symlink, and is renamed into place once its ETag
 * matched. An object that fails (a checksum, a file that cannot be made) is
 * reported in a table and the others go on; a failure of the connection,
 * the disk or an interrupt ends the run. What was renamed stays; no .part
 * is left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fileio.h"
#include "lib/safepath.h"
#include "lib/strv.h"
#include "lib/table.h"
#include "lib/escape.h"
#include "s3_int.h"

typedef struct tobj {
  s3_get_obj get;
  char *rel;            /* below DIR */
  int dirfd;            /* the folder holding it, while it is being read */
  int done;             /* renamed into place */
} tobj;

typedef struct tree {
  st_ctx *c;
  const char *dir;
  int root;             /* DIR, open */
  tobj *objs;
  gobj *gobjs;
  size_t n;
  size_t ok, failed;
  int first_code;       /* of the first object that failed */
  uint64_t bytes;       /* of the objects in place */
  tbl *fails;           /* key, what happened */
  size_t fail_rows;
} tree;

/* ---- the listing ---- */

/* The objects below prefix, each with its path below DIR; a key that would
 * lead out of DIR refuses the whole download. */
static int plan_objects(tree *t, const s3_listing *ls, const char *prefix, const char *url,
                        st_error *err) {
  size_t pl = strlen(prefix);
  t->objs = calloc(ls->n ? ls->n : 1, sizeof *t->objs);
  t->gobjs = calloc(ls->n ? ls->n : 1, sizeof *t->gobjs);
  if (!t->objs || !t->gobjs) return st_error_set(err, ST_ENOMEM, url, -1, NULL);
  for (size_t i = 0; i < ls->n; i++) {
    const s3_obj_info *it = &ls->items[i];
    size_t kl = strlen(it->key);
    if (kl > pl && it->key[kl - 1] == '/' && it->size == 0) continue; /* a folder marker */
    const char *rel = it->key + pl, *why = NULL;
    if (sp_check_rel(rel, PK_LIMIT_EXTRACT_DEPTH, &why))
      return st_error_set(err, ST_EUNSAFE, url, -1,
                          "key \"%.300s\" is %s below the prefix: it would be written outside %s; "
                          "nothing was downloaded", it->key, why, t->dir);
    tobj *o = &t->objs[t->n];
    o->rel = strdup(rel);
    if (!o->rel) return st_error_set(err, ST_ENOMEM, url, -1, NULL);
    o->get.key = it->key;
    o->get.fd = -1;
    o->get.size = it->size;
    o->dirfd = -1;
    s3__unquote(it->etag, o->get.etag, sizeof o->get.etag);
    t->gobjs[t->n].pub = &o->get;
    t->n++;
  }
  return 0;
}

static void fail_row(tree *t, const char *key, const st_error *e) {
  if (!t->failed++) t->first_code = e->code;
  if (!t->fails || t->fail_rows >= PK_LIMIT_S3_TABLE_ROWS) return;
  const char *row[] = {key, st_errname(e->code), e->text};
  tbl_add(t->fails, row, 0);
  t->fail_rows++;
}

/* ---- the taker's hooks: NAME.part made before, renamed after ---- */

static int part_name(const char *leaf, char *out, size_t cap) {
  return (size_t)snprintf(out, cap, "%s.part", leaf) < cap ? 0 : -1;
}

static int on_begin(void *ud, gobj *g) {
  tree *t = ud;
  tobj *o = (tobj *)g->pub; /* get is the first member */
  char where[1200];
  snprintf(where, sizeof where, "%s/%s", t->dir, o->rel);
  const char *leaf;
  int dfd = sp_open_parent(t->root, o->rel, &leaf, 1, NULL, NULL);
  char tmp[4096];
  if (dfd < 0) {
    int er = errno;
    if (er == ELOOP || er == ENOTDIR)
      st_error_set(&g->err, ST_EUNSAFE, where, -1,
                   "a symlink or a file is in the way of its folder: not written");
    else
      st_error_errno(&g->err, er, where, "cannot make its folder");
    return -1;
  }
  if (part_name(leaf, tmp, sizeof tmp)) {
    close(dfd);
    st_error_set(&g->err, ST_E2BIG, where, -1, "name too long");
    return -1;
  }
  /* never waits on a FIFO (or anything else) that sits at NAME.part */
  /* read back too: a guessed part layout that misses is checked on these bytes */
  int fd = fio_openat(dfd, tmp, where, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644, FIO_FILE,
                      NULL, NULL, &g->err);
  if (fd < 0) {
    close(dfd);
    return -1;
  }
  o->dirfd = dfd;
  o->get.fd = fd;
  o->get.path = o->rel;
  return 0;
}

static void on_object(void *ud, gobj *g) {
  tree *t = ud;
  tobj *o = (tobj *)g->pub;
  char where[1200];
  snprintf(where, sizeof where, "%s/%s", t->dir, o->rel);
  const char *slash = strrchr(o->rel, '/');
  const char *leaf = slash ? slash + 1 : o->rel;
  char tmp[4096];
  int made = o->get.fd >= 0;
  if (made && close(o->get.fd) != 0 && !g->err.code) st_error_errno(&g->err, errno, where, "cannot write");
  o->get.fd = -1;
  if (made && !g->err.code && part_name(leaf, tmp, sizeof tmp) == 0 &&
      renameat(o->dirfd, tmp, o->dirfd, leaf) != 0)
    st_error_errno(&g->err, errno, where, "cannot rename into place");
  if (made && g->err.code && part_name(leaf, tmp, sizeof tmp) == 0) unlinkat(o->dirfd, tmp, 0);
  if (o->dirfd >= 0) close(o->dirfd);
  o->dirfd = -1;
  if (g->err.code) {
    fail_row(t, o->get.key, &g->err);
  } else {
    o->done = 1;
    t->ok++;
    t->bytes += o->get.size;
  }
}

/* After a run that stopped: the objects being read lose their NAME.part. */
static void drop_partial(tree *t) {
  for (size_t i = 0; i < t->n; i++) {
    tobj *o = &t->objs[i];
    if (o->get.fd < 0) continue;
    close(o->get.fd);
    o->get.fd = -1;
    const char *slash = strrchr(o->rel, '/');
    char tmp[4096];
    if (part_name(slash ? slash + 1 : o->rel, tmp, sizeof tmp) == 0) unlinkat(o->dirfd, tmp, 0);
    close(o->dirfd);
    o->dirfd = -1;
  }
}

static int open_root(tree *t, st_error *err) {
  if (mkdir(t->dir, 0755) != 0 && errno != EEXIST)
    return st_error_errno(err, errno, t->dir, "cannot create the folder");
  t->root = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (t->root < 0) return st_error_errno(err, errno, t->dir, "cannot open the folder");
  return 0;
}

static void show(tree *t, const char *url, double secs) {
  char sz[32], rate[32];
  st_fmt_bytes(sz, sizeof sz, t->bytes);
  st_fmt_rate(rate, sizeof rate, t->bytes, secs);
  if (t->failed) {
    char cap[1400];
    snprintf(cap, sizeof cap, "objects of %s not downloaded%s", url,
             t->failed > t->fail_rows ? " (first rows)" : "");
    tbl_display(t->c, t->fails, cap, NULL, 0);
  }
  esc_buf eu, ed; /* the prefix is a key (lib/escape.h) */
  st_printf(t->c, "download: %zu object%s, %s from %s to %s in %.2f s (%s)%s\n", t->ok,
            t->ok == 1 ? "" : "s", sz, esc_name(&eu, url), esc_name(&ed, t->dir), secs, rate,
            t->failed ? "; some failed (table above)" : "");
}

static void tree_free(tree *t) {
  drop_partial(t);
  for (size_t i = 0; t->objs && i < t->n; i++) free(t->objs[i].rel);
  free(t->objs);
  free(t->gobjs);
  tbl_free(t->fails);
  if (t->root >= 0) close(t->root);
}

int s3_list_prefix(st_ctx *c, const st_args *a, const char *url, strv *keys, uint64_t **sizes,
                   st_error *err) {
  *sizes = NULL;
  char bucket[64], prefix[PK_LIMIT_S3_KEY_BYTES + 1];
  int rc = s3_parse_url(url, bucket, sizeof bucket, prefix, sizeof prefix, err);
  if (rc) return rc;
  s3_conn cn;
  memset(&cn, 0, sizeof cn);
  s3_listing ls;
  memset(&ls, 0, sizeof ls);
  rc = s3__conn_open(&cn, c, a, bucket, err);
  if (!rc) rc = s3__list(&cn, prefix, &ls, err);
  if (!rc) {
    *sizes = malloc((ls.n ? ls.n : 1) * sizeof **sizes);
    if (!*sizes) rc = st_error_set(err, ST_ENOMEM, url, -1, NULL);
  }
  for (size_t i = 0; !rc && i < ls.n; i++) {
    const s3_obj_info *it = &ls.items[i];
    size_t kl = strlen(it->key);
    if (kl && it->key[kl - 1] == '/' && it->size == 0) continue; /* a folder marker */
    (*sizes)[keys->n] = it->size;
    if (strv_push(keys, it->key, kl)) rc = st_error_set(err, ST_ENOMEM, url, -1, NULL);
  }
  if (rc) {
    free(*sizes);
    *sizes = NULL;
  }
  s3__list_free(&ls);
  s3__conn_close(&cn);
  return rc;
}

int s3_get_tree(st_ctx *c, const st_args *a, const char *url, const char *dir, st_error *err) {
  char bucket[64], prefix[PK_LIMIT_S3_KEY_BYTES + 1];
  int rc = s3_parse_url(url, bucket, sizeof bucket, prefix, sizeof prefix, err);
  if (rc) return rc;
  static const char *const hd[] = {"key", "error", "what happened"};
  static const int right[] = {0, 0, 0};
  tree t = {.c = c, .dir = dir, .root = -1, .fails = tbl_new(3, hd, right)};
  gjob j;
  memset(&j, 0, sizeof j);
  s3_listing ls;
  memset(&ls, 0, sizeof ls);
  double t0 = st_now();
  st_progress pr;
  int began = 0;
  j.rereadable = 1; /* every object goes to a file of its own, opened O_RDWR */
  rc = s3__conn_open(&j.cn, c, a, bucket, err);
  if (!rc) rc = s3__get_options(c, a, &j, err);
  if (!rc) rc = s3__list(&j.cn, prefix, &ls, err);
  if (!rc) rc = plan_objects(&t, &ls, prefix, url, err);
  if (!rc && !t.n) rc = st_error_set(err, ST_ENOENT, url, -1, "no objects below this prefix");
  for (size_t i = 0; !rc && i < t.n; i++) {
    rc = s3__gobj_plan(&j, &t.gobjs[i], err);
    j.total += t.objs[i].get.size;
  }
  if (!rc) rc = open_root(&t, err);
  if (!rc) {
    char label[128];
    if ((size_t)snprintf(label, sizeof label, "download %s", url) >= sizeof label)
      snprintf(label + sizeof label - 4, 4, "...");
    st_progress_begin(c, &pr, label, "B", j.total);
    began = 1;
    j.pr = &pr;
    j.objs = t.gobjs;
    j.nobj = t.n;
    j.on_begin = on_begin;
    j.on_object = on_object;
    j.ud = &t;
    rc = s3__gjob_open(&j, err);
  }
  if (!rc) rc = s3__gjob_run(&j, err);
  s3__gjob_close(&j); /* the taker has stopped: drop_partial may run */
  if (began) st_progress_end(&pr, rc ? rc : t.failed ? t.first_code : 0);
  if (!rc) {
    double dt = st_now() - t0;
    show(&t, url, dt);
    st_timing_add(c, "download", "download", dt, t.bytes, t.ok, "libcurl-multi ranged GET", NULL);
    if (t.failed)
      rc = st_error_set(err, t.first_code, url, -1, "%zu of %zu objects failed (table above)",
                        t.failed, t.n);
  }
  tree_free(&t);
  s3__list_free(&ls);
  return rc;
}
