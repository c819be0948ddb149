/*
 * test-data-units.c -- md5 (RFC 1321 test suite), the md5sum manifest parser,
 * the py2 pickle writer and the %mkdata image generator.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../stages/limits.h"
#include "../stages/manifest.h"
#include "../stages/mapguard.h"
#include "../stages/md5.h"
#include "../stages/mkdata.h"
#include "../stages/pklwrite.h"
#include "task.h"

/* RFC 1321, appendix A.5 */
static const struct { const char *in, *hex; } k_md5[] = {
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

TEST_IMPL(md5_rfc1321_vectors) {
  for (size_t i = 0; i < sizeof k_md5 / sizeof k_md5[0]; i++) {
    char hex[33];
    dk_md5_hex_of(k_md5[i].in, strlen(k_md5[i].in), hex);
    ASSERT_STR_EQ(hex, k_md5[i].hex);
    ASSERT(dk_md5_valid_hex(hex));
  }
  ASSERT(!dk_md5_valid_hex("abc"));
  ASSERT(!dk_md5_valid_hex("g41d8cd98f00b204e9800998ecf8427e"));
  ASSERT(dk_md5_valid_hex("D41D8CD98F00B204E9800998ECF8427E"));
  return 0;
}

/* The file path hashes the same whatever the step size. */
TEST_IMPL(md5_fd_chunking) {
  char path[] = "/tmp/pk-md5-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  unlink(path);
  const char *s = k_md5[6].in;
  for (int i = 0; i < 1000; i++) ASSERT_EQ(write(fd, s, 80), 80);
  size_t n = 80000;
  char *all = malloc(n);
  for (int i = 0; i < 1000; i++) memcpy(all + i * 80, s, 80);
  char want[33];
  dk_md5_hex_of(all, n, want);
  static const size_t caps[] = {1, 7, 64, 4096, 1 << 20};
  for (size_t k = 0; k < 5; k++) {
    atomic_uint_fast64_t bytes = 0;
    char hex[33];
    st_error err;
    st_error_clear(&err);
    ASSERT_EQ(dk_md5_mapped(fd, n, "t", caps[k], NULL, &bytes, hex, &err), 0);
    ASSERT_STR_EQ(hex, want);
    ASSERT_EQ(atomic_load(&bytes), n);
  }
  free(all);
  close(fd);
  return 0;
}

/* Hashing from a mapping: the same digests as the memory path (for an empty
 * file, one shorter than a step and one of several steps), progress adding
 * up, and a file cut short after it was measured is an IOError naming the
 * offset -- the SIGBUS of the lost pages is caught, the process lives on,
 * and the next file hashes normally. */
TEST_IMPL(md5_mapped) {
  char path[] = "/tmp/pk-md5map-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  unlink(path);
  size_t n = 3u << 20;
  unsigned char *all = malloc(n);
  for (size_t i = 0; i < n; i++) all[i] = (unsigned char)(i * 2654435761u >> 13);
  ASSERT_EQ(write(fd, all, n), (long long)n);
  static const size_t sizes[] = {0, 1000, 3u << 20};
  for (size_t k = 0; k < 3; k++) {
    char want[33], hex[33];
    dk_md5_hex_of(all, sizes[k], want);
    atomic_uint_fast64_t bytes = 0;
    st_error err;
    st_error_clear(&err);
    ASSERT_EQ(dk_md5_mapped(fd, sizes[k], "t", 1u << 20, NULL, &bytes, hex, &err), 0);
    ASSERT_STR_EQ(hex, want);
    ASSERT_EQ(atomic_load(&bytes), (long long)sizes[k]);
  }
  /* measured at 3 MiB, then cut to one page: the pages past it are gone */
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  for (int round = 0; round < 2; round++) {
    char hex[33] = "";
    st_error err;
    st_error_clear(&err);
    ASSERT_EQ(dk_md5_mapped(fd, n, "cut-short", 1u << 20, NULL, NULL, hex, &err), ST_EIO);
    ASSERT_STR_EQ(err.where, "cut-short");
    ASSERT_CONTAINS(err.text, "shrank while it was being read");
    ASSERT_EQ(err.offset, 4096);
  }
  char want[33], hex[33];
  dk_md5_hex_of(all, 4096, want);
  st_error err;
  st_error_clear(&err);
  ASSERT_EQ(dk_md5_mapped(fd, 4096, "t", 1u << 20, NULL, NULL, hex, &err), 0);
  ASSERT_STR_EQ(hex, want);
  free(all);
  close(fd);
  return 0;
}

/* The guard itself: a read past the new end of a truncated mapped file
 * finds zeros and is reported with its offset; bytes before the end are
 * still the file's; outside a guard the same read still ends the process
 * (checked in a child). */
TEST_IMPL(mapguard_lost_pages) {
  char path[] = "/tmp/pk-mapguard-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  unlink(path);
  size_t n = 64 * 1024;
  unsigned char *all = malloc(n);
  memset(all, 0xab, n);
  ASSERT_EQ(write(fd, all, n), (long long)n);
  free(all);
  const volatile unsigned char *m = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT(m != MAP_FAILED);
  ASSERT_EQ(ftruncate(fd, 5000), 0);
  st_mapguard g;
  ASSERT_EQ(st_mapguard_begin(&g, (const void *)m, n), 0);
  ASSERT_EQ(m[4999], 0xab);  /* still in the file */
  ASSERT_EQ(m[5000], 0);     /* the page that holds the new end: zeros after it */
  ASSERT_EQ(m[3 * 4096], 0); /* a lost page: SIGBUS absorbed */
  ASSERT_EQ(m[n - 1], 0);    /* and every page after it */
  ASSERT_EQ(m[2 * 4096], 0);
  size_t lost = 0;
  ASSERT_EQ(st_mapguard_end(&g, &lost), -1);
  ASSERT_EQ(lost, 2 * 4096); /* the first address that faulted */
  /* a guard that saw nothing lost */
  ASSERT_EQ(st_mapguard_begin(&g, (const void *)m, 4096), 0);
  ASSERT_EQ(m[0], 0xab);
  ASSERT_EQ(st_mapguard_end(&g, &lost), 0);
  munmap((void *)m, n);
  /* unguarded, the lost page is still fatal */
  m = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT(m != MAP_FAILED);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    volatile unsigned char x = m[8 * 4096];
    (void)x;
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
  munmap((void *)m, n);
  close(fd);
  return 0;
}

static const struct {
  const char *text;
  int code;        /* 0 or the expected error */
  size_t n;        /* entries on success */
  const char *msg; /* substring of where + text on error */
} k_mf[] = {
    {"", 0, 0, NULL},
    {"# only a comment\n\n", 0, 0, NULL},
    {"d41d8cd98f00b204e9800998ecf8427e  a/b\n", 0, 1, NULL},
    {"D41D8CD98F00B204E9800998ECF8427E *bin\r\n", 0, 1, NULL},
    {"d41d8cd98f00b204e9800998ecf8427e  ./x\nd41d8cd98f00b204e9800998ecf8427e  y", 0, 2, NULL},
    {"\\d41d8cd98f00b204e9800998ecf8427e  a\\\\b\\nc\n", 0, 1, NULL},
    {"d41d8cd98f00b204e9800998ecf8427  a\n", ST_EFORMAT, 0, "M:1"},
    {"\nzz1d8cd98f00b204e9800998ecf8427e  a\n", ST_EFORMAT, 0, "M:2: expected 32 hex"},
    {"d41d8cd98f00b204e9800998ecf8427e\ta\n", ST_EFORMAT, 0, "two spaces"},
    {"d41d8cd98f00b204e9800998ecf8427e  /etc/passwd\n", ST_EUNSAFE, 0, "absolute"},
    {"d41d8cd98f00b204e9800998ecf8427e  a/../../b\n", ST_EUNSAFE, 0, "\"..\""},
    {"d41d8cd98f00b204e9800998ecf8427e  a\nd41d8cd98f00b204e9800998ecf8427e  a\n", ST_EFORMAT, 0,
     "M:2: \"a\" is listed twice (also on line 1)"},
};

TEST_IMPL(manifest_parse_cases) {
  for (size_t i = 0; i < sizeof k_mf / sizeof k_mf[0]; i++) {
    mf_list m;
    st_error err;
    st_error_clear(&err);
    int rc = mf_parse(k_mf[i].text, strlen(k_mf[i].text), "M", &m, &err);
    if (rc != k_mf[i].code) fprintf(stderr, "case %zu: %s: %s\n", i, err.where, err.text);
    ASSERT_EQ(rc, k_mf[i].code);
    if (rc) {
      char buf[3000];
      st_error_format(&err, buf, sizeof buf);
      ASSERT_CONTAINS(buf, k_mf[i].msg);
      ASSERT(m.n == 0 && m.e == NULL);
      continue;
    }
    ASSERT_EQ(m.n, k_mf[i].n);
    mf_free(&m);
  }
  /* escaped name round trip, lower-cased digest, ./ stripped */
  mf_list m;
  st_error err;
  st_error_clear(&err);
  const char *t = "\\D41D8CD98F00B204E9800998ECF8427E  ./a\\\\b\\nc\n";
  ASSERT_EQ(mf_parse(t, strlen(t), "M", &m, &err), 0);
  ASSERT_STR_EQ(m.e[0].path, "a\\b\nc");
  ASSERT_STR_EQ(m.e[0].hex, "d41d8cd98f00b204e9800998ecf8427e");
  char *out = NULL;
  size_t olen = 0;
  FILE *f = open_memstream(&out, &olen);
  mf_write_line(f, m.e[0].hex, m.e[0].path);
  fclose(f);
  ASSERT_STR_EQ(out, "\\d41d8cd98f00b204e9800998ecf8427e  a\\\\b\\nc\n");
  free(out);
  mf_free(&m);
  /* a name ending in CR (the line's own CR is dropped) is written escaped
   * and read back the same (found by fuzz_manifest) */
  const char *cr = "d41d8cd98f00b204e9800998ecf8427e  a\r\r\n";
  st_error_clear(&err);
  ASSERT_EQ(mf_parse(cr, strlen(cr), "M", &m, &err), 0);
  ASSERT_STR_EQ(m.e[0].path, "a\r");
  out = NULL;
  f = open_memstream(&out, &olen);
  mf_write_line(f, m.e[0].hex, m.e[0].path);
  fclose(f);
  ASSERT_STR_EQ(out, "\\d41d8cd98f00b204e9800998ecf8427e  a\\r\n");
  mf_free(&m);
  st_error_clear(&err);
  ASSERT_EQ(mf_parse(out, olen, "M", &m, &err), 0);
  ASSERT_STR_EQ(m.e[0].path, "a\r");
  free(out);
  mf_free(&m);
  /* path limit */
  size_t big = PK_LIMIT_MANIFEST_PATH + 40;
  char *line = malloc(big + 1);
  memset(line, 'x', big);
  memcpy(line, "d41d8cd98f00b204e9800998ecf8427e  ", 34);
  line[big] = 0;
  st_error_clear(&err);
  ASSERT_EQ(mf_parse(line, big, "M", &m, &err), ST_E2BIG);
  free(line);
  return 0;
}

TEST_IMPL(pklwrite_opcodes) {
  pw_buf w;
  pw_init(&w);
  pw_int(&w, 5);
  pw_int(&w, 300);
  pw_int(&w, -1);
  pw_int(&w, 70000);
  static const uint8_t ints[] = {'K', 5, 'M', 0x2c, 0x01, 'J', 0xff, 0xff, 0xff, 0xff,
                                 'J', 0x70, 0x11, 0x01, 0x00};
  ASSERT_EQ(w.len, sizeof ints);
  ASSERT(memcmp(w.p, ints, sizeof ints) == 0);
  w.len = 0;
  pw_cstr(&w, "ab");
  static const uint8_t s1[] = {'U', 2, 'a', 'b', 'q', 0};
  ASSERT(memcmp(w.p, s1, sizeof s1) == 0 && w.len == sizeof s1);
  w.len = 0;
  w.memo = 256;
  char big[300];
  memset(big, 'z', sizeof big);
  pw_str(&w, big, sizeof big);
  ASSERT_EQ(w.p[0], 'T');
  ASSERT_EQ(w.p[1] | w.p[2] << 8, 300);
  ASSERT_EQ(w.p[5 + 300], 'r'); /* LONG_BINPUT past 255 */
  ASSERT_EQ(w.p[5 + 301], 0);
  ASSERT_EQ(w.p[5 + 302], 1);
  /* 2001 ints: groups of 1000, 1000, then a single APPEND */
  w.len = 0;
  w.memo = 0;
  int32_t v[2001] = {0};
  pw_list_ints(&w, v, 2001);
  size_t marks = 0, appends = 0, append1 = 0;
  for (size_t i = 0; i < w.len; i++) {
    if (w.p[i] == PW_MARK) marks++;
    if (w.p[i] == PW_APPENDS) appends++;
    if (w.p[i] == PW_APPEND) append1++;
  }
  ASSERT_EQ(marks, 2);
  ASSERT_EQ(appends, 2);
  ASSERT_EQ(append1, 1);
  pw_free(&w);
  return 0;
}

TEST_IMPL(mkdata_render_deterministic) {
  uint8_t a[3072], b[3072];
  int hist[10] = {0};
  for (uint32_t i = 0; i < 2000; i++) hist[dk_mkdata_label(7, 1, i)]++;
  for (int k = 0; k < 10; k++) ASSERT(hist[k] > 120 && hist[k] < 280);
  for (int cls = 0; cls < 10; cls++) {
    dk_mkdata_render(a, cls, 7, 1, 42);
    dk_mkdata_render(b, cls, 7, 1, 42);
    ASSERT(memcmp(a, b, sizeof a) == 0);
    dk_mkdata_render(b, cls, 8, 1, 42);
    ASSERT(memcmp(a, b, sizeof a) != 0);
  }
  return 0;
}
