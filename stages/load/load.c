/*
 * load.c -- %load (stage 5).
 *
 * %load maps each batch file, parses it with the safe reader (pickle.c),
 * which touches the small parts (keys, labels, filenames) and only records
 * where the pixel block is; the same threads move the pixel blocks of the
 * files parsed so far once into one contiguous N x 3072 block, each feeding
 * the pieces it has just written to the fingerprint (XXH3-128 by default,
 * md5 with --md5) in file order.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h> /* XXH3 updates with the widest vectors this CPU has (AVX2, AVX-512) */
#endif

#include "lib/cache.h"
#include "lib/dynbuf.h"
#include "lib/fileio.h"
#include "lib/limits.h"
#include "lib/mapguard.h"
#include "lib/session.h"
#include "load.h"

const st_option ld_load_opts[] = {
    {"split", 1, "SPLIT", "train, test or all (default all)"},
    {"name", 1, "NAME", "name of the dataset in the session (default cifar10)"},
    {"md5", 0, NULL, "md5s of the pixels and labels (as hashlib gives them) instead of XXH3-128"},
    {"no-hash", 0, NULL, "no fingerprint of the loaded bytes"},
    {"no-md5", 0, NULL, "the same as --no-hash (the option's earlier name)"},
    PC_COLD_OPTION,
    {NULL, 0, NULL, NULL}};


#define FOLDER "cifar-10-batches-py"

/* ------------------------------------------------------------------ */
/* Checking parsed documents                                           */
/* ------------------------------------------------------------------ */
static void shape_str(const pkl_value *a, char *buf, size_t cap) {
  size_t o = (size_t)snprintf(buf, cap, "(");
  for (int i = 0; i < a->u.a->ndim && o < cap; i++)
    o += (size_t)snprintf(buf + o, cap - o, "%s%zu", i ? ", " : "", a->u.a->shape[i]);
  if (o < cap) snprintf(buf + o, cap - o, a->u.a->ndim == 1 ? ",)" : ")");
}

static int label_value(const pkl_value *v, int64_t *out) {
  if (!v || v->type != PKL_INT) return -1;
  *out = v->u.i;
  return 0;
}

/* Labels given as a list (or tuple) of n ints in 0..maxv into out. */
static int labels_from_list(const pkl_value *labels, size_t n, int64_t maxv, int n_classes,
                            const char *where, uint8_t *out, st_error *err) {
  if (labels->u.seq.n != n)
    return st_error_set(err, ST_EFORMAT, where, (long long)labels->offset,
                        "%zu labels for %zu images", labels->u.seq.n, n);
  for (size_t i = 0; i < n; i++) {
    int64_t v;
    if (label_value(labels->u.seq.items[i], &v))
      return st_error_set(err, ST_EFORMAT, where, (long long)labels->u.seq.items[i]->offset,
                          "labels[%zu] is a %s, expected an int", i,
                          pkl_type_name(labels->u.seq.items[i]));
    if (v < 0 || v > maxv)
      return st_error_set(err, ST_EFORMAT, where, (long long)labels->u.seq.items[i]->offset,
                          "labels[%zu] = %lld is outside 0..%lld%s", i, (long long)v,
                          (long long)maxv, n_classes > 0 ? " (classes in batches.meta)" : "");
    out[i] = (uint8_t)v;
  }
  return 0;
}

/* Labels given as a 1-d integer array of n items in 0..maxv into out (any
 * item size and byte order). */
static int labels_from_array(const pkl_value *labels, size_t n, int64_t maxv, const char *where,
                             uint8_t *out, st_error *err) {
  if (labels->u.a->shape[0] != n)
    return st_error_set(err, ST_EFORMAT, where, (long long)labels->offset,
                        "%zu labels for %zu images", labels->u.a->shape[0], n);
  int isz = labels->u.a->dt.itemsize;
  uint8_t *tmp = malloc(labels->u.a->len ? labels->u.a->len : 1);
  if (!tmp) return st_error_set(err, ST_ENOMEM, where, -1, "out of memory");
  pkl_array_copy(labels->u.a, tmp);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t u = 0;
    for (int k = 0; k < isz; k++) {
      int src = labels->u.a->dt.order == '>' ? k : isz - 1 - k;
      u = u << 8 | tmp[i * (size_t)isz + (size_t)src];
    }
    int64_t v = (int64_t)u;
    if (labels->u.a->dt.kind == 'i' && isz < 8 && (u >> (isz * 8 - 1)) & 1) v = -1;
    if (v < 0 || v > maxv) {
      rc = st_error_set(err, ST_EFORMAT, where, (long long)labels->offset,
                        "labels[%zu] is outside 0..%lld", i, (long long)maxv);
      break;
    }
    out[i] = (uint8_t)v;
  }
  free(tmp);
  return rc;
}

/* The 'data' key: a C-order uint8 array of N x 3072 that was built. */
static int check_data(const pkl_value *data, const char *where, st_error *err) {
  if (!data) return st_error_set(err, ST_EFORMAT, where, -1, "key 'data' is missing");
  if (data->type != PKL_NDARRAY)
    return st_error_set(err, ST_EFORMAT, where, (long long)data->offset,
                        "key 'data' holds a %s, expected a uint8 array of N x 3072",
                        pkl_type_name(data));
  if (data->u.a->ndim < 0)
    return st_error_set(err, ST_EFORMAT, where, (long long)data->offset,
                        "key 'data': the array was never given its contents (no BUILD)");
  char shp[128];
  shape_str(data, shp, sizeof shp);
  if (data->u.a->dt.kind != 'u' || data->u.a->dt.itemsize != 1)
    return st_error_set(err, ST_EFORMAT, where, (long long)data->offset,
                        "key 'data' has dtype %c%c%d, expected uint8 (|u1)", data->u.a->dt.order,
                        data->u.a->dt.kind, data->u.a->dt.itemsize);
  if (data->u.a->ndim != 2 || data->u.a->shape[1] != SS_IMAGE_BYTES)
    return st_error_set(err, ST_EFORMAT, where, (long long)data->offset,
                        "key 'data' has shape %s, expected (N, 3072)", shp);
  if (data->u.a->fortran && data->u.a->shape[0] > 1)
    return st_error_set(err, ST_EFORMAT, where, (long long)data->offset,
                        "key 'data' is in Fortran order; expected C order (one image per row)");
  return 0;
}

int ld_batch_check(const pkl_value *root, const char *where, int n_classes, ld_batch *b,
                   st_error *err) {
  memset(b, 0, sizeof *b);
  if (!root || root->type != PKL_DICT)
    return st_error_set(err, ST_EFORMAT, where, -1, "expected a dict at the top, got %s",
                        pkl_type_name(root));
  const pkl_value *data = pkl_dict_get(root, "data");
  int rc = check_data(data, where, err);
  if (rc) return rc;
  size_t n = data->u.a->shape[0];
  const pkl_value *labels = pkl_dict_get(root, "labels");
  if (!labels) return st_error_set(err, ST_EFORMAT, where, -1, "key 'labels' is missing");
  uint8_t *out = malloc(n ? n : 1);
  if (!out) return st_error_set(err, ST_ENOMEM, where, -1, "out of memory");
  int64_t maxv = n_classes > 0 ? n_classes - 1 : 255;
  if (labels->type == PKL_LIST || labels->type == PKL_TUPLE)
    rc = labels_from_list(labels, n, maxv, n_classes, where, out, err);
  else if (labels->type == PKL_NDARRAY && labels->u.a->ndim == 1 &&
           (labels->u.a->dt.kind == 'u' || labels->u.a->dt.kind == 'i'))
    rc = labels_from_array(labels, n, maxv, where, out, err);
  else
    rc = st_error_set(err, ST_EFORMAT, where, (long long)labels->offset,
                      "key 'labels' holds a %s, expected a list of ints", pkl_type_name(labels));
  if (rc) {
    free(out);
    return rc;
  }
  b->data = *data->u.a;
  b->n = n;
  b->labels = out;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */
int ld_resolve_root(const char *dir, char *out, size_t cap, st_error *err) {
  struct stat st;
  if (stat(dir, &st) != 0) return st_error_errno(err, errno, dir, "cannot open the data folder");
  if (!S_ISDIR(st.st_mode)) return st_error_set(err, ST_EINVAL, dir, -1, "not a folder");
  char sub[4096];
  snprintf(sub, sizeof sub, "%s/" FOLDER, dir);
  if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(out, cap, "%s", sub);
  else snprintf(out, cap, "%s", dir);
  return 0;
}

typedef ld_file lfile;

void ld_file_release(lfile *f) {
  pkl_free(f->doc);
  f->doc = NULL;
  if (f->map && !f->mem) munmap(f->map, f->size);
  f->map = NULL;
  free(f->b.labels);
  f->b.labels = NULL;
}

void ld_files_free(lfile *f, size_t n) {
  for (size_t i = 0; f && i < n; i++) {
    ld_file_release(&f[i]);
    free(f[i].path);
  }
  free(f);
}

static int map_file(const char *path, uint8_t **map, size_t *size, pc_stats *cache, int warm,
                    st_error *err) {
  struct stat st;
  int fd = fio_open(path, O_RDONLY, FIO_FILE, NULL, &st, err); /* a FIFO: refused, never waited on */
  if (fd < 0) return fd;
  if (st.st_size == 0) {
    close(fd);
    return st_error_set(err, ST_EFORMAT, path, 0, "empty file; expected a pickle");
  }
  if ((unsigned long long)st.st_size > PK_LIMIT_PICKLE_FILE_BYTES) {
    close(fd);
    return st_error_set(err, ST_E2BIG, path, -1, "%lld bytes; at most %llu (PK_LIMIT_PICKLE_FILE_BYTES)",
                        (long long)st.st_size, (unsigned long long)PK_LIMIT_PICKLE_FILE_BYTES);
  }
  if (cache) pc_prepare(cache, fd, (uint64_t)st.st_size);
  else posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (m == MAP_FAILED) return st_error_errno(err, e, path, "cannot map");
  /* a file that is not cached is read ahead while it is parsed and copied
   * (asking for a cached file's pages walks them all: 0.3 ms a batch file) */
  if (!warm) madvise(m, (size_t)st.st_size, MADV_WILLNEED);
  *map = m;
  *size = (size_t)st.st_size;
  return 0;
}

static int cmp_lfile(const void *a, const void *b) {
  const lfile *x = a, *y = b;
  if (x->num != y->num) return x->num < y->num ? -1 : 1;
  return strcmp(x->path, y->path);
}

int ld_list_batches(const char *root, lfile **out, size_t *nout, st_error *err) {
  *out = NULL;
  *nout = 0;
  DIR *d = opendir(root);
  if (!d) return st_error_errno(err, errno, root, "cannot list");
  lfile *f = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  int rc = 0;
  for (e = readdir(d); e; e = readdir(d)) {
    const char *s = e->d_name;
    if (strncmp(s, "data_batch_", 11) != 0) continue;
    const char *p = s + 11;
    size_t k = strspn(p, "0123456789");
    if (k == 0 || p[k] || k > 18) continue;
    if (n >= PK_LIMIT_LOAD_FILES) {
      rc = st_error_set(err, ST_E2BIG, root, -1, "more than %d data_batch files (PK_LIMIT_LOAD_FILES)",
                        PK_LIMIT_LOAD_FILES);
      break;
    }
    if (dyn_grow_array(&f, &cap, n + 1, sizeof *f, PK_LIMIT_LOAD_FILES)) { /* n is under the limit */
      rc = st_error_set(err, ST_ENOMEM, root, -1, "out of memory");
      break;
    }
    memset(&f[n], 0, sizeof f[n]);
    f[n].num = strtoull(p, NULL, 10);
    size_t len = strlen(root) + strlen(s) + 2;
    f[n].path = malloc(len);
    if (!f[n].path) {
      rc = st_error_set(err, ST_ENOMEM, root, -1, "out of memory");
      break;
    }
    snprintf(f[n].path, len, "%s/%s", root, s);
    n++;
  }
  closedir(d);
  if (rc) {
    ld_files_free(f, n);
    return rc;
  }
  if (n) qsort(f, n, sizeof *f, cmp_lfile);
  *out = f;
  *nout = n;
  return 0;
}

/* Parse a whole small file (batches.meta) into names. */
int ld_read_meta(const char *root, char ***names, int *n, st_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/batches.meta", root);
  uint8_t *map;
  size_t size;
  int rc = map_file(path, &map, &size, NULL, 0, err);
  if (rc) return rc;
  pkl_doc *doc = pkl_parse(map, size, path, err);
  if (!doc) rc = err && err->code ? err->code : ST_EFORMAT;
  else rc = ld_meta_names(pkl_root(doc), path, names, n, err);
  pkl_free(doc);
  munmap(map, size);
  return rc;
}

/* ------------------------------------------------------------------ */
/* One file: open (map, parse, check) and copy                         */
/* ------------------------------------------------------------------ */
#define COPY_CHUNK (8u << 20)

/* A parse is freed once its file is checked (its values go back to the
 * reader's pool for the next file), unless the pixels live in it: a small
 * latin-1 block is narrowed into the parse's own memory, not left in the
 * file. */
static void keep_or_free(lfile *f, pkl_doc *doc) {
  uintptr_t p = (uintptr_t)f->b.data.data, lo = (uintptr_t)f->map;
  if (doc && f->b.data.len && (p < lo || p - lo >= f->size)) f->doc = doc;
  else pkl_free(doc);
}

int ld_file_open(lfile *f, int n_classes, pc_stats *cache, st_error *err) {
  int rc = map_file(f->path, &f->map, &f->size, cache, f->warm, err);
  if (rc) return rc;
  /* a file cut short meanwhile reads as zeros past its new end (a
   * format error, or garbage) and is reported as what it is */
  mapguard g;
  if (mapguard_begin(&g, f->map, f->size))
    return st_error_set(err, ST_EINTERNAL, f->path, -1, "cannot guard the mapping (sigaction failed)");
  pkl_doc *doc = pkl_parse(f->map, f->size, f->path, err);
  if (doc) rc = ld_batch_check(pkl_root(doc), f->path, n_classes, &f->b, err);
  keep_or_free(f, doc);
  size_t lost;
  if (mapguard_end(&g, &lost)) {
    st_error_clear(err);
    return st_error_set(err, ST_EIO, f->path, (long long)lost,
                        "the file shrank while it was being read (expected %zu bytes)", f->size);
  }
  if (!doc) return err->code ? err->code : ST_EFORMAT;
  return rc;
}

int ld_file_open_mem(lfile *f, const uint8_t *buf, size_t len, int n_classes, st_error *err) {
  f->map = (uint8_t *)buf;
  f->size = len;
  f->mem = 1;
  if (len == 0) return st_error_set(err, ST_EFORMAT, f->path, 0, "empty object; expected a pickle");
  pkl_doc *doc = pkl_parse(buf, len, f->path, err);
  if (!doc) return err->code ? err->code : ST_EFORMAT;
  int rc = ld_batch_check(pkl_root(doc), f->path, n_classes, &f->b, err);
  keep_or_free(f, doc);
  return rc;
}

/* Copies f's pixel block to dst in COPY_CHUNK pieces (stopping early once
 * *cancel is set), adding to *bytes as it goes; marks f->lost when the
 * file was cut short meanwhile. */
static void copy_pixels(lfile *f, uint8_t *dst, atomic_int *cancel, atomic_ullong *bytes) {
  const pkl_array *a = &f->b.data;
  mapguard g;
  int guarded = mapguard_begin(&g, f->map, f->size) == 0;
  if (a->enc == PKL_RAW) {
    for (size_t o = 0; o < a->len && !atomic_load(cancel); o += COPY_CHUNK) {
      size_t k = a->len - o < COPY_CHUNK ? a->len - o : COPY_CHUNK;
      memcpy(dst + o, a->data + o, k);
      atomic_fetch_add(bytes, k);
    }
  } else if (!atomic_load(cancel)) {
    pkl_array_copy(a, dst);
    atomic_fetch_add(bytes, a->len);
  }
  if (guarded && mapguard_end(&g, &f->lost_off)) f->lost = 1;
}

int ld_file_copy(lfile *f, uint8_t *dst, st_error *err) {
  atomic_int cancel;
  atomic_ullong bytes;
  atomic_init(&cancel, 0);
  atomic_init(&bytes, 0);
  copy_pixels(f, dst, &cancel, &bytes);
  if (f->lost)
    return st_error_set(err, ST_EIO, f->path, (long long)f->lost_off,
                        "the file shrank while it was being read (expected %zu bytes)", f->size);
  return 0;
}

static void hex(const unsigned char *d, unsigned n, char *out) {
  static const char h[] = "0123456789abcdef";
  for (unsigned i = 0; i < n; i++) {
    out[2 * i] = h[d[i] >> 4];
    out[2 * i + 1] = h[d[i] & 15];
  }
  out[2 * n] = 0;
}

static long ncpu(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? n : 1;
}

/* ------------------------------------------------------------------ */
/* Fingerprints: XXH3-128 (default) or md5, one stream in file order   */
/* ------------------------------------------------------------------ */
enum { LD_HASH_NONE = 0, LD_HASH_XXH3, LD_HASH_MD5 };

typedef struct ld_hash {
  int kind;
  XXH3_state_t *x;
  EVP_MD_CTX *md;
} ld_hash;

/* Starts a stream of kind; a library that cannot is said, and leaves the
 * split without a fingerprint (kind NONE). */
static void hash_begin(ld_hash *h, int kind, st_ctx *c, const char *which) {
  memset(h, 0, sizeof *h);
  h->kind = kind;
  if (kind == LD_HASH_XXH3) {
    h->x = XXH3_createState();
    if (!h->x || XXH3_128bits_reset(h->x) != XXH_OK) h->kind = LD_HASH_NONE;
  } else if (kind == LD_HASH_MD5) {
    h->md = EVP_MD_CTX_new();
    if (!h->md || !EVP_DigestInit_ex(h->md, EVP_md5(), NULL)) h->kind = LD_HASH_NONE;
  }
  if (kind != LD_HASH_NONE && h->kind == LD_HASH_NONE)
    st_eprintf(c, "%s: %s is not available here; no fingerprint\n", which,
               kind == LD_HASH_MD5 ? "md5" : "XXH3-128");
}

static void hash_update(ld_hash *h, const void *p, size_t n) {
  if (h->kind == LD_HASH_XXH3) XXH3_128bits_update(h->x, p, n);
  else if (h->kind == LD_HASH_MD5) EVP_DigestUpdate(h->md, p, n);
}

/* The digest as 32 lowercase hex digits (XXH3-128 in its canonical,
 * big-endian form), and the stream started again. */
static void hash_final(ld_hash *h, char out[33]) {
  if (h->kind == LD_HASH_XXH3) {
    XXH128_canonical_t cn;
    XXH128_canonicalFromHash(&cn, XXH3_128bits_digest(h->x));
    hex(cn.digest, 16, out);
    XXH3_128bits_reset(h->x);
  } else if (h->kind == LD_HASH_MD5) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    EVP_DigestFinal_ex(h->md, d, &dl);
    hex(d, dl, out);
    EVP_DigestInit_ex(h->md, EVP_md5(), NULL);
  }
}

static void hash_free(ld_hash *h) {
  if (h->x) XXH3_freeState(h->x);
  EVP_MD_CTX_free(h->md);
  memset(h, 0, sizeof *h);
}

static const char *hash_name(int kind) {
  return kind == LD_HASH_XXH3 ? "xxh3-128" : kind == LD_HASH_MD5 ? "md5" : "";
}

/* ------------------------------------------------------------------ */
/* One split                                                           */
/* ------------------------------------------------------------------ */
/* One split being loaded; split_end releases what it holds whatever step
 * failed. */
typedef struct ld_split {
  st_ctx *c;
  st_error *err;
  const char *which;     /* "train" or "test" */
  lfile *f;              /* its files, in order */
  size_t nf;
  int n_classes;         /* from batches.meta, 0: unknown */
  ss_split *sp;          /* out */
  size_t total;          /* images */
  size_t bytes;          /* pixel bytes */
  size_t reserve;        /* bytes of the pixels' mapping: the files' sizes bound their pixels */
  double copy_s;         /* from its first file's parse to its last copy */
  st_progress p;
  int pstarted;
  ld_hash h;             /* kind NONE without a fingerprint */
} ld_split;

/* An anonymous mapping for the pixels (huge pages advised), as large as
 * the files together: pixels are never larger than the file holding them,
 * so the copies can start as soon as the first file is parsed; only the
 * pages written become memory. */
static int split_reserve(ld_split *s) {
  ss_split *sp = s->sp;
  memset(sp, 0, sizeof *sp);
  sp->files = s->nf;
  for (size_t i = 0; i < s->nf; i++) {
    struct stat st;
    if (stat(s->f[i].path, &st) != 0) return st_error_errno(s->err, errno, s->f[i].path, "cannot open");
    if (S_ISREG(st.st_mode) && (unsigned long long)st.st_size <= PK_LIMIT_PICKLE_FILE_BYTES)
      s->reserve += (size_t)st.st_size; /* anything else is refused when it is opened */
  }
  if (s->reserve == 0) return 0;
  void *m = mmap(NULL, s->reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return st_error_set(s->err, ST_ENOMEM, s->which, -1, "cannot allocate %zu bytes for the pixels", s->reserve);
  madvise(m, s->reserve, MADV_HUGEPAGE);
  sp->pixels = m;
  sp->map_len = s->reserve;
  return 0;
}

/* The progress bar "load SPLIT" (in bytes of the files until the pixels'
 * count is known) and the fingerprint stream. */
static int split_begin(ld_split *s, int hash_kind) {
  char label[160];
  snprintf(label, sizeof label, "load %s", s->which);
  st_progress_begin(s->c, &s->p, label, "B", s->reserve);
  s->pstarted = 1;
  hash_begin(&s->h, hash_kind, s->c, s->which);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Load threads: parse, copy, and the fingerprint in the same pass     */
/* ------------------------------------------------------------------ */
/* The load threads (one per core, at most PK_LIMIT_LOAD_THREADS) parse the
 * files of every split asked for, taken in order (the train split's, then
 * the test split's), and copy the pixels of those parsed: one run for both
 * splits, so no thread waits at the end of the first split while the
 * second one's file is parsed. A file whose predecessors are all parsed is
 * published: it gets its first image in its split, and its pixels become
 * chunks (a raw pixel block in HASH_CHUNK pieces; a latin-1 one, which is
 * narrowed in one go, as one piece) numbered in file order. A thread takes
 * the next chunk when there is one (a copy unblocks the fingerprint), else
 * the next file to parse. After copying a chunk it waits for its turn and
 * feeds the chunk it has just written, still in the processor's cache, to
 * its split's fingerprint: the chunks are hashed in order while the next
 * ones are copied and parsed on the other threads. 4 MiB chunks: smaller
 * ones (128 KiB to 1 MiB, tried on the 2-core development VM) cost more in
 * hand-offs between the threads than they saved in cache misses. A file
 * that fails to parse stops the run once every file before it is parsed,
 * and the first failing file in order is the error. */
#define HASH_CHUNK (4u << 20)
#define LD_PARTS 2 /* train, test */

/* One split's share of the run. */
typedef struct copypart {
  uint8_t *dst;          /* its pixels' mapping */
  size_t reserve;        /* bytes at dst */
  ld_hash *h;            /* kind NONE: no fingerprint */
  size_t end;            /* its files are those before this index (and after the previous part's) */
  size_t total;          /* images of its files published */
  size_t nchunks, done;  /* its chunks published, and copied (and hashed) */
  double t_first, t_done; /* its first parse began, its last chunk was done */
  atomic_ullong bytes;
} copypart;

typedef struct copyjob {
  lfile **f;             /* every file, in order */
  size_t nf;
  copypart part[LD_PARTS];
  int nparts;
  int n_classes;
  size_t *first_chunk;   /* per published file */
  size_t *left;          /* per published file: its chunks not yet copied */
  unsigned char *parsed; /* per file: 0 not yet, 1 parsed, 2 failed */
  pthread_mutex_t mu;
  pthread_cond_t cv;     /* something published, parsed, hashed, or cancel */
  size_t next_parse;     /* the next file to parse (under mu, as all below) */
  size_t parsing;        /* files being parsed */
  size_t nfiles;         /* files published */
  size_t nchunks;        /* chunks published */
  size_t next;           /* the next chunk to take */
  size_t hashed;         /* chunks done (fed to the fingerprint in order, with one) */
  int frc;               /* the first failure in file order, with its error */
  size_t fail_i;
  st_error ferr;
  atomic_int cancel;
} copyjob;

static copypart *part_of(copyjob *j, size_t i) {
  int p = 0;
  while (p + 1 < j->nparts && i >= j->part[p].end) p++;
  return &j->part[p];
}

static size_t chunks_of(const lfile *f) {
  const pkl_array *a = &f->b.data;
  if (a->enc != PKL_RAW || a->len == 0) return 1;
  return (a->len + HASH_CHUNK - 1) / HASH_CHUNK;
}

/* The file chunk c belongs to, among the first nf files (binary search). */
static size_t file_of_chunk(const copyjob *j, size_t nf, size_t c) {
  size_t lo = 0, hi = nf;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (j->first_chunk[mid] <= c) lo = mid;
    else hi = mid;
  }
  return lo;
}

/* Copies chunk c of file i into place under a guard of the file's mapping;
 * its place and length into *at, *len. */
static void copy_chunk(copyjob *j, size_t i, size_t c, uint8_t **at, size_t *len) {
  lfile *f = j->f[i];
  copypart *pt = part_of(j, i);
  const pkl_array *a = &f->b.data;
  uint8_t *dst = pt->dst + f->first * SS_IMAGE_BYTES;
  size_t off = 0, n = a->len;
  if (a->enc == PKL_RAW) {
    off = (c - j->first_chunk[i]) * (size_t)HASH_CHUNK;
    n = a->len - off < HASH_CHUNK ? a->len - off : HASH_CHUNK;
  }
  *at = dst + off;
  *len = n;
  if (atomic_load(&j->cancel)) return;
  mapguard g;
  int guarded = mapguard_begin(&g, f->map, f->size) == 0;
  if (a->enc == PKL_RAW) memcpy(dst + off, a->data + off, n);
  else pkl_array_copy(a, dst);
  size_t lost_off;
  if (guarded && mapguard_end(&g, &lost_off)) {
    pthread_mutex_lock(&j->mu);
    if (!f->lost || lost_off < f->lost_off) f->lost_off = lost_off;
    f->lost = 1;
    pthread_mutex_unlock(&j->mu);
  }
  atomic_fetch_add(&pt->bytes, n);
}

/* Under mu: a failure of file i (rc, e) is kept when it is the first in
 * file order so far; no file after it is parsed from now on. */
static void job_fail(copyjob *j, size_t i, int rc, const st_error *e) {
  if (!j->frc || i < j->fail_i) {
    j->frc = rc;
    j->fail_i = i;
    j->ferr = *e;
  }
  j->next_parse = j->nf;
}

/* Under mu: publishes the parsed files that follow the published ones. */
static void job_publish(copyjob *j) {
  while (!j->frc && j->nfiles < j->nf && j->parsed[j->nfiles] == 1) {
    size_t i = j->nfiles;
    lfile *f = j->f[i];
    copypart *pt = part_of(j, i);
    st_error e;
    st_error_clear(&e);
    if (f->b.n > SIZE_MAX / SS_IMAGE_BYTES - pt->total ||
        (pt->total + f->b.n) * SS_IMAGE_BYTES > pt->reserve) {
      st_error_set(&e, ST_EIO, f->path, -1,
                   "the file grew while it was being read (its pixels do not fit the %zu bytes "
                   "the files held when %%load began)", pt->reserve);
      job_fail(j, i, ST_EIO, &e);
      break;
    }
    f->first = pt->total;
    pt->total += f->b.n;
    j->first_chunk[i] = j->nchunks;
    j->left[i] = chunks_of(f);
    j->nchunks += chunks_of(f);
    pt->nchunks += chunks_of(f);
    j->nfiles = i + 1;
  }
}

/* Copies chunk c (taken under mu, which is held on entry and exit), then
 * in its turn feeds it to its split's fingerprint. */
static void job_copy(copyjob *j, size_t c) {
  size_t i = file_of_chunk(j, j->nfiles, c), len;
  copypart *pt = part_of(j, i);
  pthread_mutex_unlock(&j->mu);
  uint8_t *at;
  copy_chunk(j, i, c, &at, &len);
  pthread_mutex_lock(&j->mu);
  if (--j->left[i] == 0) {
    /* the file's pixels are all in place: its mapping goes now, on this
     * thread, while the others copy (the fingerprint reads the copy) */
    lfile *f = j->f[i];
    pthread_mutex_unlock(&j->mu);
    if (f->map && !f->mem) munmap(f->map, f->size);
    f->map = NULL;
    pthread_mutex_lock(&j->mu);
  }
  if (pt->h->kind != LD_HASH_NONE) {
    while (j->hashed != c && !atomic_load(&j->cancel)) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    /* its turn: only this thread touches the fingerprints until hashed moves */
    if (!atomic_load(&j->cancel)) hash_update(pt->h, at, len);
    pthread_mutex_lock(&j->mu);
  }
  j->hashed++;
  if (++pt->done == pt->nchunks && j->nfiles >= pt->end) pt->t_done = st_now();
}

/* Parses file i (taken under mu, held on entry and exit) and publishes
 * what can be published. */
static void job_parse(copyjob *j, size_t i) {
  copypart *pt = part_of(j, i);
  if (!pt->t_first) pt->t_first = st_now();
  j->parsing++;
  pthread_mutex_unlock(&j->mu);
  st_error e;
  st_error_clear(&e);
  int rc = ld_file_open(j->f[i], j->n_classes, NULL, &e);
  pthread_mutex_lock(&j->mu);
  j->parsing--;
  j->parsed[i] = rc ? 2 : 1;
  if (rc) job_fail(j, i, rc, &e);
  job_publish(j);
}

static void *copy_worker(void *arg) {
  copyjob *j = arg;
  pthread_mutex_lock(&j->mu);
  while (!atomic_load(&j->cancel)) {
    if (j->next < j->nchunks && !j->frc) job_copy(j, j->next++);
    else if (j->next_parse < j->nf) job_parse(j, j->next_parse++);
    else if (j->frc || j->nfiles == j->nf) break; /* nothing left to take */
    else {
      pthread_cond_wait(&j->cv, &j->mu);
      continue;
    }
    pthread_cond_broadcast(&j->cv);
  }
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

/* Stops the load threads at their next step. */
static void copy_cancel(copyjob *j) {
  pthread_mutex_lock(&j->mu);
  atomic_store(&j->cancel, 1);
  pthread_cond_broadcast(&j->cv);
  pthread_mutex_unlock(&j->mu);
}

/* Under mu: the run is over: every file published and every chunk done,
 * or a failure with no parse still running (an earlier file's failure may
 * still replace it). */
static int job_over(const copyjob *j) {
  if (j->frc) return j->parsing == 0;
  return j->nfiles == j->nf && j->hashed == j->nchunks;
}

/* Waits until the load threads are done, reporting each split's progress
 * every 50 ms and passing an interrupt on to them. 0, the first file's
 * failure in file order, ST_ECANCELED, or ST_EIO for the first file that
 * shrank while it was copied. */
static int splits_wait(ld_split **s, copyjob *j) {
  st_ctx *c = s[0]->c;
  st_error *err = s[0]->err;
  pthread_mutex_lock(&j->mu);
  while (!job_over(j) && !atomic_load(&j->cancel)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    pthread_mutex_unlock(&j->mu);
    for (int p = 0; p < j->nparts; p++) st_progress_update(&s[p]->p, atomic_load(&j->part[p].bytes));
    if (st_cancelled(c)) copy_cancel(j);
    pthread_mutex_lock(&j->mu);
  }
  int frc = j->frc;
  pthread_mutex_unlock(&j->mu);
  if (atomic_load(&j->cancel) || st_cancelled(c))
    return st_error_set(err, ST_ECANCELED, s[0]->which, -1, "interrupted");
  if (frc) {
    if (!err->code) *err = j->ferr;
    return frc;
  }
  for (size_t i = 0; i < j->nf; i++) {
    lfile *f = j->f[i];
    if (f->lost)
      return st_error_set(err, ST_EIO, f->path, (long long)f->lost_off,
                          "the file shrank while it was being read (expected %zu bytes)", f->size);
  }
  return 0;
}

/* Every file of the n splits parsed, and its pixels copied into place and
 * fed to its split's fingerprint in file order, by the load threads (here,
 * when none can start). */
static int splits_copy(ld_split **s, int n) {
  copyjob j;
  memset(&j, 0, sizeof j);
  size_t nf = 0;
  for (int p = 0; p < n; p++) nf += s[p]->nf;
  j.f = malloc((nf + 1) * sizeof *j.f);
  j.first_chunk = malloc((nf + 1) * sizeof *j.first_chunk);
  j.left = malloc((nf + 1) * sizeof *j.left);
  j.parsed = calloc(nf + 1, 1);
  if (!j.f || !j.first_chunk || !j.left || !j.parsed) {
    free(j.f);
    free(j.first_chunk);
    free(j.left);
    free(j.parsed);
    return st_error_set(s[0]->err, ST_ENOMEM, s[0]->which, -1, "out of memory");
  }
  for (int p = 0; p < n; p++) {
    copypart *pt = &j.part[p];
    for (size_t i = 0; i < s[p]->nf; i++) j.f[j.nf++] = &s[p]->f[i];
    pt->dst = s[p]->sp->pixels;
    pt->reserve = s[p]->reserve;
    pt->h = &s[p]->h;
    pt->end = j.nf;
    atomic_init(&pt->bytes, 0);
  }
  j.nparts = n;
  j.n_classes = s[0]->n_classes;
  atomic_init(&j.cancel, 0);
  pthread_mutex_init(&j.mu, NULL);
  pthread_cond_init(&j.cv, NULL);
  long nt = ncpu();
  if (nt > PK_LIMIT_LOAD_THREADS) nt = PK_LIMIT_LOAD_THREADS;
  pthread_t th[PK_LIMIT_LOAD_THREADS];
  long started = 0;
  for (; j.nf && started < nt; started++)
    if (pthread_create(&th[started], NULL, copy_worker, &j) != 0) break;
  if (started == 0) copy_worker(&j); /* no thread: all of it here */
  int rc = splits_wait(s, &j);
  if (rc) copy_cancel(&j);
  for (long t = 0; t < started; t++) pthread_join(th[t], NULL);
  pthread_mutex_destroy(&j.mu);
  pthread_cond_destroy(&j.cv);
  free(j.f);
  free(j.first_chunk);
  free(j.left);
  free(j.parsed);
  for (int p = 0; p < n; p++) {
    copypart *pt = &j.part[p];
    s[p]->total = pt->total;
    s[p]->bytes = s[p]->total * SS_IMAGE_BYTES;
    s[p]->copy_s = pt->t_done > pt->t_first ? pt->t_done - pt->t_first : 0;
    st_progress_set_total(&s[p]->p, s[p]->bytes);
    st_progress_update(&s[p]->p, atomic_load(&pt->bytes));
  }
  return rc;
}

/* The split's count and labels (copied from the files). */
static int split_labels(ld_split *s) {
  ss_split *sp = s->sp;
  sp->n = s->total;
  sp->labels = malloc(s->total ? s->total : 1);
  if (!sp->labels) return st_error_set(s->err, ST_ENOMEM, s->which, -1, "out of memory");
  for (size_t i = 0; i < s->nf; i++) memcpy(sp->labels + s->f[i].first, s->f[i].b.labels, s->f[i].b.n);
  return 0;
}

/* The fingerprint of the pixels (fed by the copy threads) and of the labels. */
static int split_digests(ld_split *s) {
  if (s->h.kind == LD_HASH_NONE) return 0;
  snprintf(s->sp->hash, sizeof s->sp->hash, "%s", hash_name(s->h.kind));
  hash_final(&s->h, s->sp->pixels_hash);
  hash_update(&s->h, s->sp->labels, s->total);
  hash_final(&s->h, s->sp->labels_hash);
  return 0;
}

/* Releases what the split holds (the files' mappings and parses too) and
 * returns rc. */
static int split_end(ld_split *s, int rc) {
  hash_free(&s->h);
  if (s->pstarted) st_progress_end(&s->p, rc);
  for (size_t i = 0; i < s->nf; i++) ld_file_release(&s->f[i]);
  return rc;
}

/* One split of files set up to be loaded into sp. */
static void split_init(ld_split *s, st_ctx *c, const char *which, lfile *f, size_t nf,
                       int n_classes, ss_split *sp, st_error *err) {
  memset(s, 0, sizeof *s);
  s->c = c;
  s->err = err;
  s->which = which;
  s->f = f;
  s->nf = nf;
  s->n_classes = n_classes;
  s->sp = sp;
}

/* Loads the n splits together into their ss_splits; secs[p] is split p's
 * time, from its first file's parse to its fingerprint. */
static int load_split_set(ld_split **s, int n, int hash_kind, double *secs) {
  if (n <= 0) return 0;
  int rc = 0;
  for (int p = 0; p < n && !rc; p++) {
    rc = split_reserve(s[p]);
    if (!rc) rc = split_begin(s[p], hash_kind);
  }
  if (!rc) rc = splits_copy(s, n);
  for (int p = 0; p < n; p++) {
    double t = st_now();
    if (!rc) rc = split_labels(s[p]);
    if (!rc) rc = split_digests(s[p]);
    secs[p] = s[p]->copy_s + (st_now() - t);
  }
  for (int p = 0; p < n; p++) rc = split_end(s[p], rc);
  return rc;
}
/* ------------------------------------------------------------------ */
/* %load                                                               */
/* ------------------------------------------------------------------ */
static void print_split(st_ctx *c, const char *which, const ss_split *sp, double secs) {
  char b[32], r[32];
  uint64_t bytes = (uint64_t)sp->n * SS_IMAGE_BYTES;
  st_fmt_bytes(b, sizeof b, bytes);
  st_fmt_rate(r, sizeof r, bytes, secs);
  st_printf(c, "%s: %zu file%s, %zu images, %s in %.3f s (%s)\n", which, sp->files,
            sp->files == 1 ? "" : "s", sp->n, b, secs, r);
  if (sp->hash[0])
    st_printf(c, "  %s pixels %s  labels %s\n", sp->hash, sp->pixels_hash, sp->labels_hash);
}

/* The options of %load, parsed and checked once. */
typedef struct load_opts {
  const char *dir;
  const char *split;     /* "train", "test" or "all" */
  int want_train, want_test;
  const char *name;      /* the dataset's name in the session */
  int hash;              /* LD_HASH_* */
  int cold;              /* --cold */
} load_opts;

/* Everything one %load holds; load_cleanup releases it whatever step
 * failed. */
typedef struct load_job {
  st_ctx *c;
  st_error *err;
  const load_opts *o;
  char root[4096];       /* DIR, or DIR/cifar-10-batches-py */
  ss_dataset *d;         /* the new dataset, until the session takes it */
  lfile *train, *test;
  size_t ntrain, ntest;
  double ttrain, ttest;  /* seconds per split */
  double t0;
  pc_stats cache;        /* where the files are read from */
} load_job;

/* Parses and checks the options. */
static int load_opts_parse(const st_args *a, load_opts *o, st_error *err) {
  memset(o, 0, sizeof *o);
  o->dir = a->pos[0];
  o->split = st_arg_str(a, "split", "all");
  o->want_train = strcmp(o->split, "all") == 0 || strcmp(o->split, "train") == 0;
  o->want_test = strcmp(o->split, "all") == 0 || strcmp(o->split, "test") == 0;
  if (!o->want_train && !o->want_test)
    return st_error_set(err, ST_EINVAL, "load", -1, "--split must be train, test or all, not '%s'", o->split);
  o->name = st_arg_str(a, "name", "cifar10");
  if (!o->name[0] || strlen(o->name) >= 64)
    return st_error_set(err, ST_EINVAL, "load", -1, "--name must be 1 to 63 characters");
  int none = st_arg_has(a, "no-hash") || st_arg_has(a, "no-md5");
  if (none && st_arg_has(a, "md5"))
    return st_error_set(err, ST_EINVAL, "load", -1, "--md5 and --no-hash exclude each other");
  o->hash = none ? LD_HASH_NONE : st_arg_has(a, "md5") ? LD_HASH_MD5 : LD_HASH_XXH3;
  o->cold = st_arg_has(a, "cold");
  return 0;
}

/* The data folder, and a new dataset there with batches.meta's class
 * names when the file exists. */
static int load_begin(load_job *j) {
  int rc = ld_resolve_root(j->o->dir, j->root, sizeof j->root, j->err);
  if (rc) return rc;
  pc_note_fs(&j->cache, j->root);
  j->d = ss_dataset_new(j->o->name);
  if (!j->d) return st_error_set(j->err, ST_ENOMEM, "load", -1, "out of memory");
  snprintf(j->d->root, sizeof j->d->root, "%s", j->root);
  char meta[4200];
  struct stat st;
  snprintf(meta, sizeof meta, "%s/batches.meta", j->root);
  if (stat(meta, &st) == 0) return ld_read_meta(j->root, &j->d->label_names, &j->d->n_classes, j->err);
  return 0;
}

/* The files of the splits asked for; a split asked for by name, or both
 * of them, missing is an error. */
static int load_list(load_job *j) {
  const load_opts *o = j->o;
  int rc = o->want_train ? ld_list_batches(j->root, &j->train, &j->ntrain, j->err) : 0;
  if (rc) return rc;
  if (o->want_test) {
    char tp[4200];
    struct stat st;
    snprintf(tp, sizeof tp, "%s/test_batch", j->root);
    if (stat(tp, &st) == 0) {
      j->test = calloc(1, sizeof *j->test);
      if (j->test) j->test->path = strdup(tp);
      if (!j->test || !j->test->path)
        return st_error_set(j->err, ST_ENOMEM, "load", -1, "out of memory");
      j->ntest = 1;
    }
  }
  const char *split = o->split;
  if ((o->want_train && !j->ntrain && strcmp(split, "train") == 0) ||
      (o->want_test && !j->ntest && strcmp(split, "test") == 0) || (!j->ntrain && !j->ntest))
    return st_error_set(j->err, ST_ENOENT, j->root, -1, "no %s here (expected %s in DIR or DIR/" FOLDER ")",
                        strcmp(split, "test") == 0 ? "test_batch" :
                        strcmp(split, "train") == 0 ? "data_batch_* files" : "data_batch_* or test_batch",
                        strcmp(split, "test") == 0 ? "test_batch" : "data_batch_1 ...");
  return 0;
}

/* Each file measured in the page cache (and with --cold dropped from it)
 * before the clock starts, so that writing out dirty pages is not counted
 * as reading them. */
static int load_prepare(load_job *j) {
  for (size_t i = 0; i < j->ntrain; i++) pc_prepare_path(&j->cache, j->train[i].path);
  for (size_t i = 0; i < j->ntest; i++) pc_prepare_path(&j->cache, j->test[i].path);
  pc_report(j->c, "load", &j->cache);
  /* every byte found in the page cache: no read-ahead to ask for */
  int warm = !j->o->cold && atomic_load(&j->cache.unmeasured) == 0 &&
             atomic_load(&j->cache.resident_read) == atomic_load(&j->cache.bytes);
  for (size_t i = 0; i < j->ntrain; i++) j->train[i].warm = warm;
  for (size_t i = 0; i < j->ntest; i++) j->test[i].warm = warm;
  j->t0 = st_now();
  return 0;
}

/* Loads the train split and the test split (those that have files) in one
 * run of the load threads. */
static int load_splits(load_job *j) {
  ld_split sp[2], *s[2] = {NULL, NULL};
  double secs[2] = {0, 0};
  int n = 0, n_classes = j->d->n_classes;
  if (j->ntrain) {
    split_init(&sp[n], j->c, "train", j->train, j->ntrain, n_classes, &j->d->train, j->err);
    s[n] = &sp[n];
    n++;
  }
  if (j->ntest) {
    split_init(&sp[n], j->c, "test", j->test, j->ntest, n_classes, &j->d->test, j->err);
    s[n] = &sp[n];
    n++;
  }
  int rc = load_split_set(s, n, j->o->hash, secs);
  j->ttrain = j->ntrain ? secs[0] : 0;
  j->ttest = j->ntest ? secs[n - 1] : 0;
  return rc;
}

/* A line per split loaded, a note per split asked for but absent, and the
 * class count. */
static int load_report(load_job *j) {
  if (j->ntrain) print_split(j->c, "train", &j->d->train, j->ttrain);
  if (j->ntest) print_split(j->c, "test", &j->d->test, j->ttest);
  if (j->o->want_train && !j->ntrain) st_printf(j->c, "train: no data_batch_* files\n");
  if (j->o->want_test && !j->ntest) st_printf(j->c, "test: no test_batch\n");
  if (j->d->n_classes) st_printf(j->c, "classes: %d (batches.meta)\n", j->d->n_classes);
  return 0;
}

/* The dataset goes to the session (keeping the other split of an earlier
 * %load of the same folder), with the "pickled" timing record. */
static int load_keep(load_job *j) {
  ss_dataset *d = j->d;
  ss_dataset *old = ss_session_dataset(j->c->session, j->o->name);
  if (old && strcmp(old->root, d->root) == 0) {
    if (!j->ntrain && old->train.n) { d->train = old->train; memset(&old->train, 0, sizeof old->train); }
    if (!j->ntest && old->test.n) { d->test = old->test; memset(&old->test, 0, sizeof old->test); }
  }
  double dt = st_now() - j->t0;
  uint64_t bytes = (uint64_t)(d->train.n + d->test.n) * SS_IMAGE_BYTES;
  if (!j->ntrain) bytes -= (uint64_t)d->train.n * SS_IMAGE_BYTES;
  if (!j->ntest) bytes -= (uint64_t)d->test.n * SS_IMAGE_BYTES;
  char backend[64];
  long nt = ncpu() > PK_LIMIT_LOAD_THREADS ? (long)PK_LIMIT_LOAD_THREADS : ncpu();
  snprintf(backend, sizeof backend, "mmap+memcpy x%ld%s%s", nt, j->o->hash ? ", " : "",
           hash_name(j->o->hash));
  pc_timing_add(j->c, &j->cache, "pickled", "load", dt, bytes, bytes / SS_IMAGE_BYTES, backend,
                j->ntrain ? d->train.pixels_hash : d->test.pixels_hash);
  ss_session_put_dataset(j->c->session, d);
  j->d = NULL;
  return 0;
}

/* Releases everything the job holds whatever step failed; returns rc. */
static int load_cleanup(load_job *j, int rc) {
  ld_files_free(j->train, j->ntrain);
  ld_files_free(j->test, j->ntest);
  ss_dataset_free(j->d);
  return rc;
}

int ld_load(st_ctx *c, const st_args *a, st_error *err) {
  load_opts o;
  int rc = load_opts_parse(a, &o, err);
  if (rc) return rc;
  load_job j;
  memset(&j, 0, sizeof j);
  j.c = c;
  j.err = err;
  j.o = &o;
  pc_init(&j.cache, o.cold);
  if (!rc) rc = load_begin(&j);
  if (!rc) rc = load_list(&j);
  if (!rc) rc = load_prepare(&j);
  if (!rc) rc = load_splits(&j);
  if (!rc) rc = load_report(&j);
  if (!rc) rc = load_keep(&j);
  return load_cleanup(&j, rc);
}
