/*
 * mkdata.c -- %mkdata (see mkdata.h).
 *
 * Per batch file: the whole pickle is built in memory (~31 MB at 10,000
 * images), the pixel block filled in place by worker threads (each image is
 * a pure function of seed, file and index, so the bytes do not depend on the
 * thread count), then written to a temporary file, hashed (OpenSSL EVP md5),
 * appended to the tarball (libarchive ustar; gzip by ISA-L igzip) and
 * renamed. Memory stays at one batch whatever the number of batches.
 */
#include "mkdata.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fileio.h"
#include "md5.h"
#include "pklwrite.h"

const st_option mk_mkdata_opts[] = {
    {"train-batches", 1, "N", "data_batch_1..N files (default 5; 0..100000)"},
    {"images-per-batch", 1, "N", "images in every batch file, test_batch too (default 10000)"},
    {"seed", 1, "S", "seed of every random choice (default 0)"},
    {"gzip", 0, NULL, "write DIR/cifar-10-python.tar.gz (the default)"},
    {"no-gzip", 0, NULL, "write DIR/cifar-10-python.tar instead"},
    {NULL, 0, NULL, NULL}};

static const char *const k_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                        "dog", "frog", "horse", "ship", "truck"};
static const char k_readme[] =
    "<meta HTTP-EQUIV=\"REFRESH\" content=\"0; URL=http://www.cs.toronto.edu/~kriz/cifar.html\">\n";
#define MK_MTIME 1243000000 /* fixed member times: same options, same bytes */
/* The cap of the pickle writer for batches of n images: each image takes
 * 3072 pixel bytes, a label and a file name (each under 64 bytes with its
 * opcodes), the rest of a file less than 64 KiB. */
#define MK_BATCH_BYTES(n) ((size_t)(n) * (3072 + 64) + 65536)

/* ------------------------------------------------------------------ */
/* Images                                                             */
/* ------------------------------------------------------------------ */
static uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static uint64_t next(uint64_t *s) { return mix(*s += 0x632BE59BD9B4E019ull); }
static double unif(uint64_t *s) { return (double)(next(s) >> 11) * (1.0 / 9007199254740992.0); }

static uint64_t image_key(uint64_t seed, uint32_t file, uint32_t index) {
  return mix(mix(seed ^ 0x5851F42D4C957F2Dull) ^ ((uint64_t)file << 32 | index));
}

int mk_label(uint64_t seed, uint32_t file, uint32_t index) {
  return (int)(mix(image_key(seed, file, index) ^ 0xA0761D6478BD642Full) % 10);
}

static void hsv(double h, double s, double v, double rgb[3]) {
  h = fmod(h, 360.0);
  if (h < 0) h += 360.0;
  double c = v * s, x = c * (1 - fabs(fmod(h / 60.0, 2) - 1)), m = v - c, r, g, b;
  if (h < 60) { r = c; g = x; b = 0; }
  else if (h < 120) { r = x; g = c; b = 0; }
  else if (h < 180) { r = 0; g = c; b = x; }
  else if (h < 240) { r = 0; g = x; b = c; }
  else if (h < 300) { r = x; g = 0; b = c; }
  else { r = c; g = 0; b = x; }
  rgb[0] = (r + m) * 255; rgb[1] = (g + m) * 255; rgb[2] = (b + m) * 255;
}

static double lum(const double c[3]) { return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]; }

/* Coverage of the class pattern at pixel (x, y); u, v are the shape's own
 * coordinates (centred, scaled, flipped). */
static int mask(int cls, double u, double v, double x, double y, double s, double ph, double fx) {
  double au = fabs(u), av = fabs(v), r2 = u * u + v * v;
  switch (cls) {
  case 0: /* airplane: fuselage, wings, tail */
    return (au < 1.6 && av < 10) || (fabs(v + 1) < 1.6 && au < 9.5) || (v > 6 && v < 8.5 && au < 4);
  case 1: /* automobile: body, cabin, two wheels */
    return (au < 10 && v > -3 && v < 3) || (au < 5 && v > -7 && v <= -3) ||
           ((u - 6) * (u - 6) + (v - 4) * (v - 4) < 6.5) || ((u + 6) * (u + 6) + (v - 4) * (v - 4) < 6.5);
  case 2: /* bird: triangle */
    return v > -7 && v < 7 && au < (v + 7) * 0.6;
  case 3: /* cat: ring */
    return r2 > 25 && r2 < 64;
  case 4: /* deer: disc */
    return r2 < 56;
  case 5: { /* dog: square frame */
    double m = au > av ? au : av;
    return m > 5 && m < 8.5;
  }
  case 6: /* frog: checkerboard */
    return ((int)floor((x + ph) / (3.2 * s)) + (int)floor((y + ph) / (3.2 * s))) & 1;
  case 7: /* horse: diagonal stripes */
    return fmod((x + fx * y) / s + ph + 64, 7.0) < 3.5;
  case 8: /* ship: horizontal stripes */
    return fmod(y / s + ph, 6.0) < 3.0;
  default: /* truck: X */
    return fabs(au - av) < 1.8 && au < 9 && av < 9;
  }
}

void mk_render(uint8_t *out, int cls, uint64_t seed, uint32_t file, uint32_t index) {
  uint64_t r = image_key(seed, file, index);
  double s = 0.65 + 0.7 * unif(&r);
  double cx = 16 + (unif(&r) - 0.5) * 14, cy = 16 + (unif(&r) - 0.5) * 14;
  double fx = unif(&r) < 0.5 ? -1 : 1, fy = unif(&r) < 0.5 ? -1 : 1;
  double ph = unif(&r) * 8;
  double fg[3], bg[3], blob[3];
  hsv(cls * 36.0 + (unif(&r) - 0.5) * 240, 0.4 + 0.6 * unif(&r), 0.5 + 0.5 * unif(&r), fg);
  for (int t = 0;; t++) {
    for (int k = 0; k < 3; k++) bg[k] = unif(&r) * 255;
    if (fabs(lum(fg) - lum(bg)) > 22) break;
    if (t == 16) {
      for (int k = 0; k < 3; k++) bg[k] = 255 - fg[k];
      break;
    }
  }
  /* up to three distractor blobs of one random colour */
  hsv(unif(&r) * 360, unif(&r), unif(&r), blob);
  double bx[3], by[3], br[3];
  int nblob = (int)(unif(&r) * 4);
  for (int k = 0; k < 3; k++) {
    bx[k] = unif(&r) * 32;
    by[k] = unif(&r) * 32;
    br[k] = 1.5 + 3.0 * unif(&r);
  }
  double gx = (unif(&r) - 0.5) * 60, gy = (unif(&r) - 0.5) * 60;
  double amp = 30 + 60 * unif(&r);
  uint64_t nz = 0;
  int nbits = 0;
  for (int y = 0; y < 32; y++)
    for (int x = 0; x < 32; x++) {
      double u = fx * (x + 0.5 - cx) / s, v = fy * (y + 0.5 - cy) / s;
      int m = mask(cls, u, v, x, y, s, ph, fx);
      int inb = 0;
      for (int k = 0; k < nblob; k++)
        inb |= (x - bx[k]) * (x - bx[k]) + (y - by[k]) * (y - by[k]) < br[k] * br[k];
      double grad = gx * (x - 15.5) / 16 + gy * (y - 15.5) / 16;
      for (int k = 0; k < 3; k++) {
        double val = m ? fg[k] : bg[k] + grad;
        if (inb) val = blob[k];
        if (nbits < 16) { nz = next(&r); nbits = 64; }
        /* triangular noise in [-amp, amp] from two bytes */
        double n = ((double)(nz & 0xff) + (double)((nz >> 8) & 0xff) - 255.0) / 255.0;
        nz >>= 16;
        nbits -= 16;
        val += n * amp;
        out[k * 1024 + y * 32 + x] = (uint8_t)(val < 0 ? 0 : val > 255 ? 255 : lrint(val));
      }
    }
}

/* ------------------------------------------------------------------ */
/* Pixel workers                                                      */
/* ------------------------------------------------------------------ */
typedef struct {
  st_ctx *c;
  uint8_t *pix;
  const int32_t *labels;
  uint64_t seed;
  uint32_t file, n;
  atomic_uint next;   /* next chunk start */
  atomic_uint done;   /* images rendered */
  atomic_int stop;
} render_job;

#define RENDER_CHUNK 256

static void *render_worker(void *arg) {
  render_job *j = arg;
  for (;;) {
    if (atomic_load(&j->stop) || st_cancelled(j->c)) break;
    unsigned a = atomic_fetch_add(&j->next, RENDER_CHUNK);
    if (a >= j->n) break;
    unsigned b = a + RENDER_CHUNK < j->n ? a + RENDER_CHUNK : j->n;
    for (unsigned i = a; i < b; i++)
      mk_render(j->pix + (size_t)i * 3072, j->labels[i], j->seed, j->file, i);
    atomic_fetch_add(&j->done, b - a);
  }
  return NULL;
}

/* ------------------------------------------------------------------ */
/* The tarball: libarchive ustar, optionally gzip by ISA-L             */
/* ------------------------------------------------------------------ */
typedef struct {
  int fd;
  int gzip;
  struct isal_zstream z;
  uint8_t *lvl, *obuf;
  size_t ocap;
  uint64_t out_bytes;
  int ioerr;
} tar_out;

static int out_write(tar_out *t, const uint8_t *b, size_t n) {
  while (n) {
    ssize_t k = write(t->fd, b, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      t->ioerr = errno;
      return -1;
    }
    b += k;
    n -= (size_t)k;
    t->out_bytes += (uint64_t)k;
  }
  return 0;
}

static int deflate_some(tar_out *t, const void *buf, size_t n, int last) {
  t->z.next_in = (uint8_t *)(uintptr_t)buf;
  t->z.avail_in = (uint32_t)n;
  t->z.end_of_stream = last;
  do {
    t->z.next_out = t->obuf;
    t->z.avail_out = (uint32_t)t->ocap;
    if (isal_deflate(&t->z) != COMP_OK) {
      t->ioerr = EIO;
      return -1;
    }
    if (out_write(t, t->obuf, t->ocap - t->z.avail_out)) return -1;
  } while (t->z.avail_in > 0 || t->z.avail_out == 0 ||
           (last && t->z.internal_state.state != ZSTATE_END));
  return 0;
}

static la_ssize_t tar_write_cb(struct archive *a, void *cd, const void *buf, size_t n) {
  tar_out *t = cd;
  int rc = t->gzip ? deflate_some(t, buf, n, 0) : out_write(t, buf, n);
  if (rc) {
    archive_set_error(a, t->ioerr, "write failed: %s", strerror(t->ioerr));
    return -1;
  }
  return (la_ssize_t)n;
}

static int tar_close_cb(struct archive *a, void *cd) {
  tar_out *t = cd;
  if (t->gzip && deflate_some(t, NULL, 0, 1)) {
    archive_set_error(a, t->ioerr, "write failed: %s", strerror(t->ioerr));
    return ARCHIVE_FATAL;
  }
  return ARCHIVE_OK;
}

/* ------------------------------------------------------------------ */
/* The stage: options, a job, a chain of steps, one cleanup           */
/* ------------------------------------------------------------------ */
/* The options, parsed and checked once. */
typedef struct mk_opts {
  long long nb;          /* --train-batches */
  long long ipb;         /* --images-per-batch */
  long long seed;
  int gz;                /* write the tarball gzipped */
  char dir[3800];        /* DIR, without trailing slashes */
} mk_opts;

/* Everything a run holds; mk_cleanup releases it whatever step failed. */
typedef struct mk {
  st_ctx *c;
  st_error *err;
  const mk_opts *o;
  char bdir[4000];         /* DIR/cifar-10-batches-py */
  char tmp[4300];          /* the file being written, "" when none */
  char tar_tmp[4300], tar_final[4300];
  struct archive *ar;
  tar_out to;
  FILE *manifest;
  char man_tmp[4300], man_final[4300];
  uint64_t bytes, files;   /* written so far */
  pw_buf w;                /* the pickle being built */
  int32_t *labels;         /* one batch's labels and file names */
  char **fnames;
  char *fspace;
  st_progress p;
  int progress_open;
  uint64_t done;           /* images rendered */
  uint64_t fcount;         /* file names given */
  double t0;
} mk;

static int write_all(int fd, const uint8_t *b, size_t n) {
  while (n) {
    ssize_t k = write(fd, b, n > (1u << 24) ? (1u << 24) : n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    b += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Appends b as member cifar-10-batches-py/NAME to the tarball. */
static int tar_member(mk *m, const char *name, const uint8_t *b, size_t n) {
  struct archive_entry *e = archive_entry_new();
  char member[600];
  snprintf(member, sizeof member, "cifar-10-batches-py/%s", name);
  archive_entry_set_pathname(e, member);
  archive_entry_set_size(e, (la_int64_t)n);
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_mtime(e, MK_MTIME, 0);
  int rc = archive_write_header(m->ar, e);
  archive_entry_free(e);
  size_t off = 0;
  while (rc == ARCHIVE_OK && off < n) {
    size_t k = n - off > (1u << 22) ? (1u << 22) : n - off;
    la_ssize_t w = archive_write_data(m->ar, b + off, k);
    if (w < 0) rc = ARCHIVE_FATAL;
    else off += (size_t)w;
  }
  if (rc != ARCHIVE_OK)
    return st_error_set(m->err, m->to.ioerr ? st_from_errno(m->to.ioerr) : ST_EIO, m->tar_final,
                        -1, "cannot write member %s: %s", member, archive_error_string(m->ar));
  return 0;
}

/* One finished file: temp + write + md5 + tar member + rename + manifest line. */
static int emit(mk *m, const char *name, const uint8_t *b, size_t n) {
  char final[4400];
  snprintf(final, sizeof final, "%s/%s", m->bdir, name);
  snprintf(m->tmp, sizeof m->tmp, "%s/.%s.tmp-%ld", m->bdir, name, (long)getpid());
  int fd = fio_openat(AT_FDCWD, m->tmp, final, O_WRONLY | O_CREAT | O_TRUNC, 0644, FIO_FILE, NULL, NULL,
                      m->err); /* never blocks on a FIFO at that name */
  if (fd < 0) {
    m->tmp[0] = 0;
    return fd;
  }
  if (write_all(fd, b, n)) {
    int e = errno;
    close(fd);
    return st_error_errno(m->err, e, final, "write failed");
  }
  if (close(fd)) return st_error_errno(m->err, errno, final, "close failed");
  char hex[33];
  md5_hex_of(b, n, hex);
  int rc = m->ar ? tar_member(m, name, b, n) : 0;
  if (rc) return rc;
  if (rename(m->tmp, final)) return st_error_errno(m->err, errno, final, "rename failed");
  m->tmp[0] = 0;
  if (fprintf(m->manifest, "%s  cifar-10-batches-py/%s\n", hex, name) < 0)
    return st_error_errno(m->err, errno, m->man_final, "write failed");
  m->bytes += n;
  m->files++;
  return 0;
}

static int mkdir_p(const char *path, st_error *err) {
  char buf[4400];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == 0) {
      char ch = *p;
      *p = 0;
      if (mkdir(buf, 0755) && errno != EEXIST)
        return st_error_errno(err, errno, buf, "cannot create directory");
      *p = ch;
      if (!ch) break;
    }
  }
  struct stat st;
  if (stat(path, &st) || !S_ISDIR(st.st_mode))
    return st_error_set(err, ST_EEXIST, path, -1, "exists and is not a directory");
  return 0;
}

/* data_batch_K with K > n left over from an earlier, larger run. */
static void remove_stale(const char *bdir, long long n) {
  DIR *d = opendir(bdir);
  if (!d) return;
  struct dirent *e;
  for (e = readdir(d); e; e = readdir(d)) {
    char *end;
    if (strncmp(e->d_name, "data_batch_", 11) != 0) continue;
    long long k = strtoll(e->d_name + 11, &end, 10);
    if (*end || k <= n) continue;
    char p[4400 + 256];
    snprintf(p, sizeof p, "%s/%s", bdir, e->d_name);
    unlink(p);
  }
  closedir(d);
}

/* The pickle of one batch file with its pixel block left to fill: labels
 * and file names drawn from (seed, file), then the dict of the original
 * layout. *off gets the pixel block's offset in the stream. */
static int mk_batch_pickle(mk *m, uint32_t file, const char *label, size_t *off) {
  uint32_t nimg = (uint32_t)m->o->ipb;
  uint64_t seed = (uint64_t)m->o->seed;
  pw_buf *w = &m->w;
  for (uint32_t i = 0; i < nimg; i++) {
    m->labels[i] = mk_label(seed, file, i);
    snprintf(m->fnames[i], 48, "%s_s_%06llu.png", k_names[m->labels[i]],
             (unsigned long long)(++m->fcount));
  }
  pw_reset(w);
  pw_op(w, PW_PROTO);
  pw_op(w, 2);
  pw_op(w, PW_EMPTY_DICT);
  pw_put(w);
  pw_op(w, PW_MARK);
  pw_cstr(w, "batch_label");
  pw_cstr(w, label);
  pw_cstr(w, "labels");
  pw_list_ints(w, m->labels, nimg);
  pw_cstr(w, "data");
  *off = pw_array_u8_2d(w, nimg, 3072);
  pw_cstr(w, "filenames");
  pw_list_strs(w, m->fnames, nimg);
  pw_op(w, PW_SETITEMS);
  pw_op(w, PW_STOP);
  if (w->b.err || *off == (size_t)-1)
    return st_error_set(m->err, ST_ENOMEM, label, -1, "cannot build the batch in memory");
  return 0;
}

/* Renders the batch's images into pix on up to 8 threads, this one
 * included (it reports progress between chunks). */
static int mk_render_pixels(mk *m, uint8_t *pix, uint32_t file) {
  uint32_t nimg = (uint32_t)m->o->ipb;
  uint64_t seed = (uint64_t)m->o->seed;
  render_job j = {.c = m->c, .pix = pix, .labels = m->labels, .seed = seed, .file = file, .n = nimg};
  long nc = sysconf(_SC_NPROCESSORS_ONLN);
  int nt = nc < 1 ? 1 : nc > 8 ? 8 : (int)nc;
  pthread_t th[8];
  int started = 0;
  for (int t = 1; t < nt; t++)
    if (pthread_create(&th[started], NULL, render_worker, &j) == 0) started++;
  /* the stage thread renders too, reporting between chunks */
  for (;;) {
    if (st_cancelled(m->c)) break;
    unsigned a = atomic_fetch_add(&j.next, RENDER_CHUNK);
    if (a >= j.n) break;
    unsigned b = a + RENDER_CHUNK < j.n ? a + RENDER_CHUNK : j.n;
    for (unsigned i = a; i < b; i++)
      mk_render(j.pix + (size_t)i * 3072, m->labels[i], seed, file, i);
    atomic_fetch_add(&j.done, b - a);
    st_progress_update(&m->p, m->done + atomic_load(&j.done));
  }
  atomic_store(&j.stop, 1);
  for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
  if (st_cancelled(m->c)) return st_error_set(m->err, ST_ECANCELED, m->o->dir, -1, "interrupted");
  m->done += nimg;
  st_progress_update(&m->p, m->done);
  return 0;
}

/* Parses and checks the options. */
static int mk_opts_parse(const st_args *a, mk_opts *o, st_error *err) {
  memset(o, 0, sizeof *o);
  int rc = st_arg_int(a, "train-batches", 5, 0, 100000, &o->nb, err);
  if (!rc) rc = st_arg_int(a, "images-per-batch", 10000, 1, 600000, &o->ipb, err);
  if (!rc) rc = st_arg_int(a, "seed", 0, 0, INT64_MAX, &o->seed, err);
  if (rc) return rc;
  if (st_arg_has(a, "gzip") && st_arg_has(a, "no-gzip"))
    return st_error_set(err, ST_EINVAL, "mkdata", -1, "--gzip and --no-gzip exclude each other");
  o->gz = !st_arg_has(a, "no-gzip");
  if (strlen(a->pos[0]) >= sizeof o->dir)
    return st_error_set(err, ST_EINVAL, "mkdata", -1, "DIR is too long");
  snprintf(o->dir, sizeof o->dir, "%s", a->pos[0]);
  size_t dl = strlen(o->dir);
  while (dl > 1 && o->dir[dl - 1] == '/') o->dir[--dl] = 0;
  return 0;
}

/* Makes DIR/cifar-10-batches-py and removes data_batch files beyond
 * --train-batches left by an earlier run. */
static int mk_prepare_dir(mk *m) {
  snprintf(m->bdir, sizeof m->bdir, "%s/cifar-10-batches-py", m->o->dir);
  int rc = mkdir_p(m->bdir, m->err);
  if (rc) return rc;
  remove_stale(m->bdir, m->o->nb);
  return 0;
}

/* The pickle writer and one batch's labels and file names. */
static int mk_alloc(mk *m) {
  long long ipb = m->o->ipb;
  m->t0 = st_now();
  pw_init(&m->w, MK_BATCH_BYTES(ipb));
  m->labels = malloc((size_t)ipb * sizeof *m->labels);
  m->fnames = malloc((size_t)ipb * sizeof *m->fnames);
  m->fspace = malloc((size_t)ipb * 48);
  if (!m->labels || !m->fnames || !m->fspace)
    return st_error_set(m->err, ST_ENOMEM, m->o->dir, -1, "out of memory for %lld images", ipb);
  for (long long i = 0; i < ipb; i++) m->fnames[i] = m->fspace + i * 48;
  return 0;
}

/* Opens DIR/MANIFEST.md5 under a temporary name. */
static int mk_open_manifest(mk *m) {
  snprintf(m->man_final, sizeof m->man_final, "%s/MANIFEST.md5", m->o->dir);
  snprintf(m->man_tmp, sizeof m->man_tmp, "%s/.MANIFEST.md5.tmp-%ld", m->o->dir, (long)getpid());
  m->manifest = fio_fopen_write(m->man_tmp, "the manifest", m->err);
  if (!m->manifest) {
    m->man_tmp[0] = 0;
    return m->err->code;
  }
  return 0;
}

/* Opens the tarball under a temporary name, with ISA-L's deflate (level 1)
 * unless --no-gzip. */
static int mk_open_tarball(mk *m) {
  const char *ext = m->o->gz ? ".gz" : "";
  snprintf(m->tar_final, sizeof m->tar_final, "%s/cifar-10-python.tar%s", m->o->dir, ext);
  snprintf(m->tar_tmp, sizeof m->tar_tmp, "%s/.cifar-10-python.tar%s.tmp-%ld", m->o->dir, ext,
           (long)getpid());
  m->to.fd = fio_openat(AT_FDCWD, m->tar_tmp, m->tar_final, O_WRONLY | O_CREAT | O_TRUNC, 0644, FIO_FILE,
                        "the tarball", NULL, m->err);
  if (m->to.fd < 0) {
    m->tar_tmp[0] = 0;
    return m->to.fd;
  }
  m->to.gzip = m->o->gz;
  if (!m->o->gz) return 0;
  isal_deflate_init(&m->to.z);
  m->to.z.level = 1;
  m->to.z.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
  m->to.lvl = malloc(ISAL_DEF_LVL1_DEFAULT);
  m->to.ocap = 1u << 20;
  m->to.obuf = malloc(m->to.ocap);
  m->to.z.level_buf = m->to.lvl;
  m->to.z.gzip_flag = IGZIP_GZIP;
  if (!m->to.lvl || !m->to.obuf) return st_error_set(m->err, ST_ENOMEM, m->tar_final, -1, "out of memory");
  return 0;
}

/* Starts the ustar archive on the tarball with its folder entry. */
static int mk_start_archive(mk *m) {
  m->ar = archive_write_new();
  if (!m->ar || archive_write_set_format_ustar(m->ar) != ARCHIVE_OK ||
      archive_write_open2(m->ar, &m->to, NULL, tar_write_cb, tar_close_cb, NULL) != ARCHIVE_OK)
    return st_error_set(m->err, ST_EINTERNAL, m->tar_final, -1, "libarchive: %s",
                        m->ar ? archive_error_string(m->ar) : "out of memory");
  struct archive_entry *e = archive_entry_new();
  archive_entry_set_pathname(e, "cifar-10-batches-py/");
  archive_entry_set_filetype(e, AE_IFDIR);
  archive_entry_set_perm(e, 0755);
  archive_entry_set_mtime(e, MK_MTIME, 0);
  int r = archive_write_header(m->ar, e);
  archive_entry_free(e);
  if (r != ARCHIVE_OK) return st_error_set(m->err, ST_EIO, m->tar_final, -1, "%s", archive_error_string(m->ar));
  return 0;
}

/* data_batch_1..N and test_batch, one at a time, under one progress bar. */
static int mk_write_batches(mk *m) {
  long long nb = m->o->nb;
  char plabel[128];
  snprintf(plabel, sizeof plabel, "mkdata %.100s", m->o->dir);
  st_progress_begin(m->c, &m->p, plabel, "images", (uint64_t)(nb + 1) * (uint64_t)m->o->ipb);
  m->progress_open = 1;
  for (long long k = 1; k <= nb + 1; k++) {
    int test = k == nb + 1;
    uint32_t file = test ? 0 : (uint32_t)k;
    char label[64], name[64];
    if (test) {
      snprintf(label, sizeof label, "testing batch 1 of 1");
      snprintf(name, sizeof name, "test_batch");
    } else {
      snprintf(label, sizeof label, "training batch %lld of %lld", k, nb);
      snprintf(name, sizeof name, "data_batch_%lld", k);
    }
    size_t off;
    int rc = mk_batch_pickle(m, file, label, &off);
    if (!rc) rc = mk_render_pixels(m, pw_bytes(&m->w) + off, file);
    if (!rc) rc = emit(m, name, pw_bytes(&m->w), m->w.b.len);
    if (rc) return rc;
    if (st_cancelled(m->c)) return st_error_set(m->err, ST_ECANCELED, m->o->dir, -1, "interrupted");
  }
  return 0;
}

/* batches.meta (images per batch, the class names) and readme.html. */
static int mk_write_meta(mk *m) {
  pw_buf *w = &m->w;
  pw_reset(w);
  pw_op(w, PW_PROTO);
  pw_op(w, 2);
  pw_op(w, PW_EMPTY_DICT);
  pw_put(w);
  pw_op(w, PW_MARK);
  pw_cstr(w, "num_cases_per_batch");
  pw_int(w, m->o->ipb);
  pw_cstr(w, "label_names");
  pw_list_strs(w, (char *const *)k_names, 10);
  pw_cstr(w, "num_vis");
  pw_int(w, 3072);
  pw_op(w, PW_SETITEMS);
  pw_op(w, PW_STOP);
  if (w->b.err) return st_error_set(m->err, ST_ENOMEM, m->o->dir, -1, "out of memory");
  int rc = emit(m, "batches.meta", pw_bytes(w), w->b.len);
  if (!rc) rc = emit(m, "readme.html", (const uint8_t *)k_readme, sizeof k_readme - 1);
  return rc;
}

/* Finishes and closes the tarball and the manifest, then gives both their
 * final names: every write error is seen before either is renamed. */
static int mk_finish(mk *m) {
  if (archive_write_close(m->ar) != ARCHIVE_OK)
    return st_error_set(m->err, m->to.ioerr ? st_from_errno(m->to.ioerr) : ST_EIO, m->tar_final, -1,
                        "cannot finish the tarball: %s", archive_error_string(m->ar));
  int fd = m->to.fd;
  m->to.fd = -1;
  if (close(fd)) return st_error_errno(m->err, errno, m->tar_final, "close failed");
  int ferr = ferror(m->manifest), cerr = fclose(m->manifest) ? errno : 0;
  m->manifest = NULL;
  if (cerr || ferr) return st_error_errno(m->err, cerr ? cerr : EIO, m->man_final, "write failed");
  if (rename(m->tar_tmp, m->tar_final)) return st_error_errno(m->err, errno, m->tar_final, "rename failed");
  m->tar_tmp[0] = 0;
  if (rename(m->man_tmp, m->man_final)) return st_error_errno(m->err, errno, m->man_final, "rename failed");
  m->man_tmp[0] = 0;
  return 0;
}

/* The summary lines and the "mkdata" timing record. */
static int mk_summary(mk *m) {
  const mk_opts *o = m->o;
  double dt = st_now() - m->t0;
  char b1[32], b2[32], r1[32];
  st_fmt_bytes(b1, sizeof b1, m->bytes);
  st_fmt_bytes(b2, sizeof b2, m->to.out_bytes);
  st_fmt_rate(r1, sizeof r1, m->bytes, dt);
  st_progress_end(&m->p, 0);
  m->progress_open = 0;
  st_printf(m->c, "mkdata: %s, %llu files (%llu images), tarball %s in %.2f s (%s)\n", b1,
            (unsigned long long)m->files, (unsigned long long)((o->nb + 1) * o->ipb), b2, dt, r1);
  st_printf(m->c, "wrote %s/, %s, %s\n", m->bdir, m->tar_final, m->man_final);
  st_timing_add(m->c, "mkdata", "mkdata", dt, m->bytes, (uint64_t)((o->nb + 1) * o->ipb),
                o->gz ? "isa-l" : "tar", NULL);
  return 0;
}

/* Releases everything the job holds whatever step failed, removing every
 * temporary file; returns rc. */
static int mk_cleanup(mk *m, int rc) {
  if (m->progress_open) st_progress_end(&m->p, rc);
  if (m->ar) {
    if (rc) archive_write_fail(m->ar);
    archive_write_free(m->ar);
  }
  if (m->to.fd >= 0) close(m->to.fd);
  if (m->manifest) fclose(m->manifest);
  if (m->tmp[0]) unlink(m->tmp);
  if (m->tar_tmp[0]) unlink(m->tar_tmp);
  if (m->man_tmp[0]) unlink(m->man_tmp);
  free(m->to.lvl);
  free(m->to.obuf);
  free(m->labels);
  free(m->fnames);
  free(m->fspace);
  pw_free(&m->w);
  return rc;
}

int mk_mkdata(st_ctx *c, const st_args *a, st_error *err) {
  mk_opts o;
  int rc = mk_opts_parse(a, &o, err);
  if (rc) return rc;
  mk m;
  memset(&m, 0, sizeof m);
  m.c = c;
  m.err = err;
  m.o = &o;
  m.to.fd = -1;
  if (!rc) rc = mk_prepare_dir(&m);
  if (!rc) rc = mk_alloc(&m);
  if (!rc) rc = mk_open_manifest(&m);
  if (!rc) rc = mk_open_tarball(&m);
  if (!rc) rc = mk_start_archive(&m);
  if (!rc) rc = mk_write_batches(&m);
  if (!rc) rc = mk_write_meta(&m);
  if (!rc) rc = mk_finish(&m);
  if (!rc) rc = mk_summary(&m);
  return mk_cleanup(&m, rc);
}
