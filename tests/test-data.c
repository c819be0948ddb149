/*
 * test-data.c -- the data stages' C pieces: md5 (RFC 1321 vectors through
 * every path: memory, a mapping, %md5 with --expect), md5sum manifest
 * parsing and writing, and determinism of %mkdata's images.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/limits.h"
#include "data/manifest.h"
#include "data/md5.h"
#include "data/mkdata.h"
#include "lib/session.h"
#include "task.h"

typedef struct {
  char out[8192];
  size_t out_len;
} dcap_t;

static void dcap_write(st_ctx *c, int stream, const char *buf, size_t len) {
  dcap_t *k = c->fe;
  (void)stream;
  if (k->out_len + len >= sizeof k->out) len = sizeof k->out - k->out_len - 1;
  memcpy(k->out + k->out_len, buf, len);
  k->out_len += len;
  k->out[k->out_len] = 0;
}
static void dcap_progress(st_ctx *c, const st_progress *p) { (void)c; (void)p; }
static void dctx_init(st_ctx *c, dcap_t *k) {
  memset(c, 0, sizeof *c);
  memset(k, 0, sizeof *k);
  c->fe = k;
  c->session = ss_session_new();
  c->write = dcap_write;
  c->progress = dcap_progress;
}

/* RFC 1321, appendix A.5 */
static const struct {
  const char *in, *hex;
} k_rfc1321[] = {
    {"", "d41d8cd98f00b204e9800998ecf8427e"},
    {"a", "0cc175b9c0f1b6a831c399e269772661"},
    {"abc", "900150983cd24fb0d6963f7d28e17f72"},
    {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
    {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
    {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
     "d174ab98d277d9f5a5611c2c9f419d9f"},
    {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
     "57edf4a22be3c955ac49da2e2107b67a"},
};

TEST_IMPL(md5_rfc1321) {
  for (size_t i = 0; i < sizeof k_rfc1321 / sizeof *k_rfc1321; i++) {
    char hex[33];
    md5_hex_of(k_rfc1321[i].in, strlen(k_rfc1321[i].in), hex);
    ASSERT_STR_EQ(hex, k_rfc1321[i].hex);
    ASSERT(md5_valid_hex(k_rfc1321[i].hex));
  }
  ASSERT(!md5_valid_hex("d41d8cd98f00b204e9800998ecf8427"));   /* 31 digits */
  ASSERT(!md5_valid_hex("d41d8cd98f00b204e9800998ecf8427eX")); /* 33 */
  ASSERT(!md5_valid_hex("g41d8cd98f00b204e9800998ecf8427e"));
  ASSERT(!md5_valid_hex("abc"));
  ASSERT(!md5_valid_hex(""));
  ASSERT(md5_valid_hex("D41D8CD98F00B204E9800998ECF8427E"));
  return 0;
}

/* The same vectors through a file: md5_mapped with a tiny step (chunk
 * boundaries everywhere) and the %md5 stage with --expect (good and bad). */
TEST_IMPL(md5_file_and_stage) {
  char tmpl[] = "/tmp/pk-md5-XXXXXX";
  ASSERT(mkdtemp(tmpl));
  char path[256];
  snprintf(path, sizeof path, "%s/f", tmpl);
  for (size_t i = 0; i < sizeof k_rfc1321 / sizeof *k_rfc1321; i++) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT(fd >= 0);
    size_t n = strlen(k_rfc1321[i].in);
    ASSERT_EQ(write(fd, k_rfc1321[i].in, n), (long long)n);
    close(fd);
    fd = open(path, O_RDONLY);
    char hex[33];
    st_error e;
    st_error_clear(&e);
    atomic_uint_fast64_t bytes = 0;
    ASSERT_EQ(md5_mapped(fd, n, path, 7, NULL, &bytes, hex, &e), 0);
    close(fd);
    ASSERT_STR_EQ(hex, k_rfc1321[i].hex);
    ASSERT_EQ(atomic_load(&bytes), (long long)n);

    st_ctx c;
    dcap_t k;
    dctx_init(&c, &k);
    const st_stage *s = st_registry_find("md5");
    ASSERT(s);
    char *argv[] = {"md5", path, "--expect", (char *)k_rfc1321[i].hex, NULL};
    ASSERT_EQ(st_run(&c, s, 4, argv, NULL, NULL, &e), 0);
    ASSERT_CONTAINS(k.out, k_rfc1321[i].hex);
    /* a wrong expectation: ChecksumError naming both digests */
    char *bad = "00000000000000000000000000000000";
    char *argv2[] = {"md5", path, "--expect", bad, NULL};
    st_error_clear(&e);
    ASSERT_EQ(st_run(&c, s, 4, argv2, NULL, NULL, &e), ST_ECHECKSUM);
    ASSERT_CONTAINS(e.text, bad);
    ASSERT_CONTAINS(e.text, k_rfc1321[i].hex);
    ss_session_free(c.session);
  }
  /* a malformed --expect and a missing file */
  {
    st_ctx c;
    dcap_t k;
    dctx_init(&c, &k);
    st_error e;
    st_error_clear(&e);
    const st_stage *s = st_registry_find("md5");
    char *argv[] = {"md5", path, "--expect", "xyz", NULL};
    ASSERT_EQ(st_run(&c, s, 4, argv, NULL, NULL, &e), ST_EINVAL);
    ASSERT_CONTAINS(e.text, "32 hex");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope", tmpl);
    char *argv2[] = {"md5", missing, NULL};
    st_error_clear(&e);
    ASSERT_EQ(st_run(&c, s, 2, argv2, NULL, NULL, &e), ST_ENOENT);
    ASSERT_CONTAINS(e.where, "nope");
    ss_session_free(c.session);
  }
  unlink(path);
  rmdir(tmpl);
  return 0;
}

/* The manifest line mf_write_line writes for one entry (malloc'd). */
static char *written(const mf_entry *en, size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  if (!f) return NULL;
  int rc = mf_write_line(f, en->hex, en->path);
  fclose(f);
  if (rc) {
    free(buf);
    return NULL;
  }
  return buf;
}

static int parse(const char *text, mf_list *m, st_error *e) {
  st_error_clear(e);
  return mf_parse(text, strlen(text), "M.md5", m, e);
}

TEST_IMPL(manifest_parse) {
  mf_list m;
  st_error e;
  ASSERT_EQ(parse("# comment\n"
                  "d41d8cd98f00b204e9800998ecf8427e  a/b.txt\n"
                  "\n"
                  "0CC175B9C0F1B6A831C399E269772661 *./bin file\r\n"
                  "\\900150983cd24fb0d6963f7d28e17f72  odd\\\\name\\nline\n"
                  "f96b697d7cb7938d525a2f31aaf161d0  last-no-newline",
                  &m, &e),
            0);
  ASSERT_EQ(m.n, 4);
  ASSERT_STR_EQ(m.e[0].path, "a/b.txt");
  ASSERT_EQ(m.e[0].line, 2);
  ASSERT_STR_EQ(m.e[1].path, "bin file");
  ASSERT_STR_EQ(m.e[1].hex, "0cc175b9c0f1b6a831c399e269772661");
  ASSERT_STR_EQ(m.e[2].path, "odd\\name\nline");
  ASSERT_STR_EQ(m.e[3].path, "last-no-newline");
  mf_sort(&m);
  ASSERT(mf_find(&m, "bin file") >= 0);
  ASSERT_EQ(mf_find(&m, "nope"), -1);
  /* writing and parsing again gives the same entries */
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  for (size_t i = 0; i < m.n; i++) ASSERT_EQ(mf_write_line(f, m.e[i].hex, m.e[i].path), 0);
  fclose(f);
  mf_list m2;
  st_error_clear(&e);
  ASSERT_EQ(mf_parse(buf, len, "W", &m2, &e), 0);
  ASSERT_EQ(m2.n, m.n);
  for (size_t i = 0; i < m.n; i++) {
    ASSERT_STR_EQ(m2.e[i].path, m.e[i].path);
    ASSERT_STR_EQ(m2.e[i].hex, m.e[i].hex);
  }
  free(buf);
  mf_free(&m2);
  mf_free(&m);
  /* nothing to check is not an error */
  ASSERT_EQ(parse("", &m, &e), 0);
  ASSERT_EQ(m.n, 0);
  ASSERT_EQ(parse("# only a comment\n\n", &m, &e), 0);
  ASSERT_EQ(m.n, 0);
  /* an escaped name is written back escaped, the digest lower-cased, ./ dropped */
  ASSERT_EQ(parse("\\D41D8CD98F00B204E9800998ECF8427E  ./a\\\\b\\nc\n", &m, &e), 0);
  ASSERT_STR_EQ(m.e[0].path, "a\\b\nc");
  buf = written(&m.e[0], &len);
  ASSERT(buf);
  ASSERT_STR_EQ(buf, "\\d41d8cd98f00b204e9800998ecf8427e  a\\\\b\\nc\n");
  free(buf);
  mf_free(&m);
  /* a name ending in CR (the line's own CR is dropped) is written escaped
   * and read back the same (found by fuzz_manifest) */
  ASSERT_EQ(parse("d41d8cd98f00b204e9800998ecf8427e  a\r\r\n", &m, &e), 0);
  ASSERT_STR_EQ(m.e[0].path, "a\r");
  buf = written(&m.e[0], &len);
  ASSERT(buf);
  ASSERT_STR_EQ(buf, "\\d41d8cd98f00b204e9800998ecf8427e  a\\r\n");
  mf_free(&m);
  st_error_clear(&e);
  ASSERT_EQ(mf_parse(buf, len, "W", &m, &e), 0);
  ASSERT_STR_EQ(m.e[0].path, "a\r");
  free(buf);
  mf_free(&m);
  return 0;
}

/* Malformed and unsafe manifests are the case folders of
 * tests/data/manifest/invalid (tests/test-cases.c); here the refusals that
 * depend on the build's limits or on the file system. */
TEST_IMPL(manifest_errors) {
  /* a path over the limit */
  size_t n = PK_LIMIT_MANIFEST_PATH + 40;
  char *big = malloc(n + 64);
  memcpy(big, "d41d8cd98f00b204e9800998ecf8427e  ", 34);
  memset(big + 34, 'a', PK_LIMIT_MANIFEST_PATH + 1);
  big[34 + PK_LIMIT_MANIFEST_PATH + 1] = 0;
  mf_list m;
  st_error e;
  ASSERT_EQ(parse(big, &m, &e), ST_E2BIG);
  ASSERT_CONTAINS(e.text, "limit");
  free(big);
  /* a missing manifest file */
  st_error_clear(&e);
  ASSERT_EQ(mf_load("/nonexistent/M.md5", &m, &e), ST_ENOENT);
  return 0;
}

/* Images are a pure function of (seed, file, index): same seed, same bytes;
 * another seed, other bytes; labels cover every class. */
TEST_IMPL(mkdata_deterministic) {
  uint8_t a[3072], b[3072], d[3072];
  int counts[10] = {0};
  for (uint32_t i = 0; i < 2000; i++) {
    int l = mk_label(7, 1, i);
    ASSERT(l >= 0 && l < 10);
    counts[l]++;
  }
  for (int k = 0; k < 10; k++) ASSERT(counts[k] > 120 && counts[k] < 280); /* near 200 each */
  for (int cls = 0; cls < 10; cls++) { /* every class's pattern, not only the drawn ones */
    mk_render(a, cls, 7, 1, 42);
    mk_render(b, cls, 7, 1, 42);
    ASSERT(!memcmp(a, b, sizeof a));
    mk_render(d, cls, 8, 1, 42);
    ASSERT(memcmp(a, d, sizeof a));
  }
  for (uint32_t i = 0; i < 20; i++) {
    int l = mk_label(7, 1, i);
    mk_render(a, l, 7, 1, i);
    mk_render(b, l, 7, 1, i);
    mk_render(d, l, 8, 1, i);
    ASSERT(!memcmp(a, b, sizeof a));
    ASSERT(memcmp(a, d, sizeof a));
  }
  return 0;
}
