/*
 * test-kernel.c -- the kernel's wire layer (signing, verification, malformed
 * and oversized messages), UTF-8 at the boundary, cursor offsets, the
 * connection file, completion, and the cap on a line's expanded words.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kernel/complete.h"
#include "../kernel/conn.h"
#include "../kernel/log.h"
#include "../kernel/magic.h"
#include "../kernel/utf8.h"
#include "../kernel/wire.h"
#include "lib/limits.h"
#include "memtransport.h"
#include "task.h"

#define HDR "{\"msg_id\":\"1\",\"msg_type\":\"kernel_info_request\"}"
#define SIG "d24613c901272087168eb7a17b371d2f54d14044dca08737846f4baf86191b6a"

static const wire_key KEY = {"secret-key", 10, "SHA256"};

/* ident, delimiter, signature, header, parent, metadata, content, buffer */
static size_t make_frames(wire_frame *f, const char *sig) {
  size_t n = 0;
  f[n++] = (wire_frame){"client-1", 8};
  f[n++] = (wire_frame){WIRE_DELIM, 9};
  f[n++] = (wire_frame){sig, strlen(sig)};
  f[n++] = (wire_frame){HDR, strlen(HDR)};
  f[n++] = (wire_frame){"{}", 2};
  f[n++] = (wire_frame){"{}", 2};
  f[n++] = (wire_frame){"{}", 2};
  f[n++] = (wire_frame){"\x00\x01", 2}; /* a buffer: accepted, ignored */
  return n;
}

TEST_IMPL(wire_sign_vector) {
  wire_frame f[4] = {{HDR, strlen(HDR)}, {"{}", 2}, {"{}", 2}, {"{}", 2}};
  char hex[129];
  ASSERT_EQ(wire_sign(&KEY, f, hex, sizeof hex), 64);
  ASSERT_STR_EQ(hex, SIG); /* Python's hmac.new(key, digestmod=sha256) */
  wire_key bad = {"k", 1, "NO-SUCH-DIGEST"};
  ASSERT_EQ(wire_sign(&bad, f, hex, sizeof hex), -1);
  return 0;
}

TEST_IMPL(wire_verify_good) {
  wire_frame f[8];
  size_t n = make_frames(f, SIG);
  wire_msg m;
  char why[256];
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), 0);
  ASSERT_STR_EQ(m.msg_type, "kernel_info_request");
  ASSERT_STR_EQ(m.msg_id, "1");
  ASSERT_EQ(m.n_idents, 1);
  ASSERT_EQ(m.idents[0].len, 8);
  ASSERT(memcmp(m.idents[0].p, "client-1", 8) == 0);
  wire_msg_free(&m);
  /* several identities, no buffers */
  wire_frame g[8] = {{"a", 1}, {"", 0}, {WIRE_DELIM, 9}, {SIG, 64}, {HDR, strlen(HDR)},
                     {"{}", 2}, {"{}", 2}, {"{}", 2}};
  ASSERT_EQ(wire_parse(g, 8, &KEY, &m, why, sizeof why), 0);
  ASSERT_EQ(m.n_idents, 2);
  ASSERT_EQ(m.idents[1].len, 0);
  wire_msg_free(&m);
  return 0;
}

TEST_IMPL(wire_bad_signature) {
  char sig[65];
  memcpy(sig, SIG, 65);
  sig[10] = sig[10] == '0' ? '1' : '0';
  wire_frame f[8];
  size_t n = make_frames(f, sig);
  wire_msg m;
  char why[256];
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "does not match");
  ASSERT(m.header == NULL && m.idents == NULL);
  /* uppercase hex is a different signature */
  for (int i = 0; i < 64; i++) if (sig[i] >= 'a') sig[i] = (char)(sig[i] - 32);
  memcpy(sig, SIG, 65);
  for (int i = 0; i < 64; i++) if (sig[i] >= 'a' && sig[i] <= 'f') sig[i] = (char)(sig[i] - 32);
  n = make_frames(f, sig);
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), -1);
  /* the right signature over different content */
  n = make_frames(f, SIG);
  f[6] = (wire_frame){"{\"a\":1}", 7};
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), -1);
  /* a wrong key */
  wire_key other = {"secret-kez", 10, "SHA256"};
  n = make_frames(f, SIG);
  ASSERT_EQ(wire_parse(f, n, &other, &m, why, sizeof why), -1);
  return 0;
}

TEST_IMPL(wire_signature_length) {
  wire_frame f[8];
  wire_msg m;
  char why[256];
  char shortsig[64];
  memcpy(shortsig, SIG, 63);
  shortsig[63] = 0;
  size_t n = make_frames(f, shortsig);
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "63 bytes; expected 64");
  char longsig[66];
  snprintf(longsig, sizeof longsig, "%s0", SIG);
  n = make_frames(f, longsig);
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), -1);
  n = make_frames(f, "");
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), -1);
  return 0;
}

TEST_IMPL(wire_truncated_frames) {
  wire_frame f[8];
  wire_msg m;
  char why[256];
  size_t n = make_frames(f, SIG);
  for (size_t keep = 0; keep < 7; keep++) { /* up to content missing */
    ASSERT_EQ(wire_parse(f, keep, &KEY, &m, why, sizeof why), -1);
  }
  (void)n;
  ASSERT_EQ(wire_parse(f, 6, &KEY, &m, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "after the delimiter");
  return 0;
}

TEST_IMPL(wire_missing_delimiter) {
  wire_frame f[8];
  wire_msg m;
  char why[256];
  size_t n = make_frames(f, SIG);
  f[1] = (wire_frame){"<IDS|MSG", 8};
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "delimiter");
  return 0;
}

TEST_IMPL(wire_oversized) {
  wire_frame f[PK_LIMIT_MSG_FRAMES + 1];
  wire_msg m;
  char why[256];
  size_t n = make_frames(f, SIG);
  for (size_t i = n; i < PK_LIMIT_MSG_FRAMES + 1; i++) f[i] = (wire_frame){"x", 1};
  ASSERT_EQ(wire_parse(f, PK_LIMIT_MSG_FRAMES + 1, &KEY, &m, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "frames; the limit");
  ASSERT_EQ(wire_parse(f, PK_LIMIT_MSG_FRAMES, &KEY, &m, why, sizeof why), 0); /* at the limit */
  wire_msg_free(&m);
  /* bytes: a message over the limit whose signature matches is not read
   * further (a buffer frame is not even touched: it is not signed), and
   * comes back with its identities, header and parent, to be answered */
  n = make_frames(f, SIG);
  f[7] = (wire_frame){"", (size_t)PK_LIMIT_MSG_BYTES};
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), WIRE_OVERSIZE);
  ASSERT_CONTAINS(why, "bytes; the limit is 67108864");
  ASSERT_EQ(m.oversize, (size_t)PK_LIMIT_MSG_BYTES + 8 + 9 + 64 + strlen(HDR) + 6);
  ASSERT_STR_EQ(m.msg_type, "kernel_info_request");
  ASSERT_EQ(m.n_idents, 1);
  ASSERT(json_is_object(m.content) && json_object_size(m.content) == 0);
  wire_msg_free(&m);
  /* ... but only when it is signed */
  char bad[65];
  memset(bad, '0', 64);
  bad[64] = 0;
  f[2] = (wire_frame){bad, 64};
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "signature does not match");
  /* ... and its header is small enough to read */
  size_t big = PK_LIMIT_CELL_BYTES + 1;
  char *hdr = malloc(big);
  ASSERT(hdr);
  memset(hdr, ' ', big);
  memcpy(hdr, HDR, strlen(HDR));
  f[3] = (wire_frame){hdr, big};
  char sig[129];
  ASSERT_EQ(wire_sign(&KEY, &f[3], sig, sizeof sig), 64);
  f[2] = (wire_frame){sig, 64};
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "the header frame is 1048577 bytes");
  f[7] = (wire_frame){"\x00\x01", 2}; /* under the limit, the same header is fine */
  ASSERT_EQ(wire_parse(f, n, &KEY, &m, why, sizeof why), 0);
  wire_msg_free(&m);
  free(hdr);
  return 0;
}

static int parse_with(const char *hdr, const char *content, char *why, size_t cap) {
  wire_frame p[4] = {{hdr, strlen(hdr)}, {"{}", 2}, {"{}", 2}, {content, strlen(content)}};
  char sig[129];
  wire_sign(&KEY, p, sig, sizeof sig);
  wire_frame f[6] = {{WIRE_DELIM, 9}, {sig, strlen(sig)}, p[0], p[1], p[2], p[3]};
  wire_msg m;
  int rc = wire_parse(f, 6, &KEY, &m, why, cap);
  if (rc == 0) wire_msg_free(&m);
  return rc;
}

/* The refusals of JSON and headers behind a good signature are the case
 * folders of tests/data/wire/invalid (tests/test-cases.c). */
TEST_IMPL(wire_bad_json) {
  char why[256];
  ASSERT_EQ(parse_with(HDR, "{}", why, sizeof why), 0);
  ASSERT_EQ(parse_with(HDR, "{\"code\":\"\xc3\xa9\"}", why, sizeof why), 0); /* UTF-8 */
  return 0;
}

TEST_IMPL(wire_empty_key) {
  wire_key none = {"", 0, "SHA256"};
  wire_frame f[8];
  wire_msg m;
  char why[256];
  size_t n = make_frames(f, "anything");
  ASSERT_EQ(wire_parse(f, n, &none, &m, why, sizeof why), 0);
  wire_msg_free(&m);
  wire_buf *out;
  size_t nout;
  json_t *h = wire_header_new("status", "s");
  ASSERT_EQ(wire_build(NULL, 0, h, NULL, NULL, NULL, &none, &out, &nout), 0);
  ASSERT_EQ(nout, 6);
  ASSERT_EQ(out[1].len, 0); /* empty signature */
  wire_frames_free(out, nout);
  json_decref(h);
  return 0;
}

TEST_IMPL(wire_header) {
  json_t *a = wire_header_new("execute_reply", "sess");
  json_t *b = wire_header_new("execute_reply", "sess");
  ASSERT_STR_EQ(json_string_value(json_object_get(a, "version")), "5.3");
  ASSERT_STR_EQ(json_string_value(json_object_get(a, "msg_type")), "execute_reply");
  ASSERT_STR_EQ(json_string_value(json_object_get(a, "session")), "sess");
  const char *date = json_string_value(json_object_get(a, "date"));
  ASSERT(date && strlen(date) == 27 && date[10] == 'T' && date[26] == 'Z');
  const char *ida = json_string_value(json_object_get(a, "msg_id"));
  const char *idb = json_string_value(json_object_get(b, "msg_id"));
  ASSERT(ida && idb && strlen(ida) == 36 && strcmp(ida, idb) != 0);
  ASSERT(json_object_get(a, "username") != NULL);
  /* build + parse round trip keeps identities and content */
  wire_buf ids[2] = {{(unsigned char *)"id-a", 4}, {(unsigned char *)"id-b", 4}};
  json_t *content = json_pack("{s:s}", "text", "h\xc3\xa9llo");
  wire_buf *out;
  size_t n;
  ASSERT_EQ(wire_build(ids, 2, a, b, NULL, content, &KEY, &out, &n), 0);
  ASSERT_EQ(n, 8);
  ASSERT_EQ(out[3].len, 64);
  for (size_t i = 0; i < 64; i++)
    ASSERT((out[3].p[i] >= '0' && out[3].p[i] <= '9') || (out[3].p[i] >= 'a' && out[3].p[i] <= 'f'));
  wire_frame fr[8];
  for (size_t i = 0; i < n; i++) fr[i] = (wire_frame){out[i].p, out[i].len};
  wire_msg m;
  char why[256];
  ASSERT_EQ(wire_parse(fr, n, &KEY, &m, why, sizeof why), 0);
  ASSERT_EQ(m.n_idents, 2);
  ASSERT_STR_EQ(json_string_value(json_object_get(m.content, "text")), "h\xc3\xa9llo");
  ASSERT_STR_EQ(json_string_value(json_object_get(m.parent, "msg_id")), idb);
  wire_msg_free(&m);
  wire_frames_free(out, n);
  json_decref(content);
  json_decref(a);
  json_decref(b);
  return 0;
}

TEST_IMPL(utf8_clean_split) {
  /* "aé€😀" split at every byte: the pieces never split a code point */
  const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  size_t len = strlen(s);
  for (size_t cut = 0; cut <= len; cut++) {
    char out[64], joined[64];
    size_t used, jl = 0;
    size_t o = utf8_clean(s, cut, 0, out, &used);
    ASSERT_EQ(o, used); /* nothing replaced */
    memcpy(joined, out, o);
    jl = o;
    /* the rest, with the carried-over bytes in front */
    char rest[64];
    size_t rl = len - used;
    memcpy(rest, s + used, rl);
    o = utf8_clean(rest, rl, 1, out, &used);
    ASSERT_EQ(used, rl);
    memcpy(joined + jl, out, o);
    jl += o;
    ASSERT_EQ(jl, len);
    ASSERT(memcmp(joined, s, len) == 0);
  }
  /* an incomplete tail is kept unless final */
  char out[16];
  size_t used;
  ASSERT_EQ(utf8_clean("x\xe2\x82", 3, 0, out, &used), 1);
  ASSERT_EQ(used, 1);
  ASSERT_EQ(utf8_clean("x\xe2\x82", 3, 1, out, &used), 7); /* x + 2 x U+FFFD */
  ASSERT_EQ(used, 3);
  return 0;
}

TEST_IMPL(utf8_clean_invalid) {
  static const struct {
    const char *in;
    size_t len;
    const char *out;
  } cases[] = {
      {"\xff", 1, "\xef\xbf\xbd"},
      {"a\x80z", 3, "a\xef\xbf\xbdz"},                              /* lone continuation */
      {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
      {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
      {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
      {"\xe2\x82z", 3, "\xef\xbf\xbd\xef\xbf\xbdz"},               /* cut short mid-text */
      {"ok\xf0\x9f\x98\x80", 6, "ok\xf0\x9f\x98\x80"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[64];
    size_t n = utf8_clean(cases[i].in, cases[i].len, 0, out, NULL);
    out[n] = 0;
    ASSERT_STR_EQ(out, cases[i].out);
    json_t *j = json_stringn(out, n); /* jansson accepts it */
    ASSERT(j != NULL);
    json_decref(j);
  }
  return 0;
}

TEST_IMPL(utf8_offsets) {
  const char *s = "%echo h\xc3\xa9 \xf0\x9f\x98\x80x"; /* 12 code points, 15 bytes */
  size_t len = strlen(s);
  ASSERT_EQ(len, 15);
  ASSERT_EQ(utf8_byte_to_cp(s, len, len), 11);
  ASSERT_EQ(utf8_cp_to_byte(s, len, 8), 9);   /* after é */
  ASSERT_EQ(utf8_cp_to_byte(s, len, 10), 14); /* after the emoji */
  ASSERT_EQ(utf8_cp_to_byte(s, len, 99), len);
  for (size_t cp = 0; cp <= 11; cp++)
    ASSERT_EQ(utf8_byte_to_cp(s, len, utf8_cp_to_byte(s, len, cp)), cp);
  ASSERT_EQ(utf8_byte_to_cp("\xff\xff", 2, 2), 2); /* invalid bytes count one each */
  return 0;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fputs(text, f);
  fclose(f);
}

TEST_IMPL(conn_load_files) {
  char dir[] = "/tmp/pk-conn-XXXXXX";
  ASSERT(mkdtemp(dir) != NULL);
  char path[256], why[512];
  snprintf(path, sizeof path, "%s/c.json", dir);
  pk_conn c;
  write_file(path, "{\"shell_port\": 1, \"iopub_port\": 2, \"stdin_port\": 3, \"control_port\": 4,"
                   " \"hb_port\": 5, \"ip\": \"127.0.0.1\", \"key\": \"abc\", \"transport\": \"tcp\","
                   " \"signature_scheme\": \"hmac-sha256\", \"kernel_name\": \"pipekernel\", \"x\": 1}");
  ASSERT_EQ(conn_load(path, &c, why, sizeof why), 0);
  ASSERT_EQ(c.port[CONN_CONTROL], 4);
  ASSERT_STR_EQ(c.digest, "SHA256");
  ASSERT_EQ(c.key_len, 3);
  char ep[256];
  conn_endpoint(&c, CONN_HB, ep, sizeof ep);
  ASSERT_STR_EQ(ep, "tcp://127.0.0.1:5");
  write_file(path, "{\"shell_port\": 1, \"iopub_port\": 2, \"stdin_port\": 3, \"control_port\": 4,"
                   " \"hb_port\": 5, \"ip\": \"/tmp/k\", \"key\": \"\", \"transport\": \"ipc\"}");
  ASSERT_EQ(conn_load(path, &c, why, sizeof why), 0);
  conn_endpoint(&c, CONN_SHELL, ep, sizeof ep);
  ASSERT_STR_EQ(ep, "ipc:///tmp/k-1");
  write_file(path, "{\"shell_port\": 1, \"iopub_port\": 2, \"stdin_port\": 3, \"control_port\": 4}");
  ASSERT_EQ(conn_load(path, &c, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "hb_port");
  write_file(path, "{\"shell_port\": 1, \"iopub_port\": 2, \"stdin_port\": 3, \"control_port\": 4,"
                   " \"hb_port\": 5, \"transport\": \"udp\"}");
  ASSERT_EQ(conn_load(path, &c, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "transport");
  write_file(path, "{\"shell_port\": 70000, \"iopub_port\": 2, \"stdin_port\": 3, \"control_port\": 4,"
                   " \"hb_port\": 5}");
  ASSERT_EQ(conn_load(path, &c, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "shell_port");
  write_file(path, "{\"shell_port\": 1,");
  ASSERT_EQ(conn_load(path, &c, why, sizeof why), -1);
  ASSERT_CONTAINS(why, path);
  unlink(path);
  ASSERT_EQ(conn_load(path, &c, why, sizeof why), -1);
  ASSERT_CONTAINS(why, path);
  /* a FIFO is refused at once, not waited on (nothing writes to it) */
  ASSERT_EQ(mkfifo(path, 0600), 0);
  ASSERT_EQ(conn_load(path, &c, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "not a regular file");
  unlink(path);
  /* a connection file is small: a big one is refused by its size */
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  ASSERT_EQ(fseek(f, (long)PK_LIMIT_CONN_FILE_BYTES, SEEK_SET), 0);
  fputc(' ', f);
  fclose(f);
  ASSERT_EQ(conn_load(path, &c, why, sizeof why), -1);
  ASSERT_CONTAINS(why, "more than the");
  unlink(path);
  rmdir(dir);
  return 0;
}

static int has_match(json_t *m, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(m, i, v) if (strcmp(json_string_value(v), s) == 0) return 1;
  return 0;
}

TEST_IMPL(kernel_complete) {
  size_t a, b;
  json_t *m = complete_code("%ec", 3, 3, NULL, &a, &b);
  ASSERT_EQ(json_array_size(m), 1);
  ASSERT(has_match(m, "%echo"));
  ASSERT_EQ(a, 0);
  ASSERT_EQ(b, 3);
  json_decref(m);
  m = complete_code("", 0, 0, NULL, &a, &b); /* every magic */
  ASSERT(json_array_size(m) >= 13);
  ASSERT(has_match(m, "%help"));
  json_decref(m);
  const char *code = "%echo hi\n%echo --st";
  m = complete_code(code, strlen(code), strlen(code), NULL, &a, &b);
  ASSERT_EQ(json_array_size(m), 1);
  ASSERT(has_match(m, "--stderr"));
  ASSERT_EQ(a, 15);
  json_decref(m);
  code = "%input \\\n  --pa"; /* continuation: still %input's options */
  m = complete_code(code, strlen(code), strlen(code), NULL, &a, &b);
  ASSERT(has_match(m, "--password"));
  json_decref(m);
  char dir[] = "/tmp/pk-comp-XXXXXX";
  ASSERT(mkdtemp(dir) != NULL);
  char p[300], codebuf[400];
  snprintf(p, sizeof p, "%s/alpha.txt", dir);
  write_file(p, "x");
  snprintf(p, sizeof p, "%s/alps", dir);
  ASSERT_EQ(mkdir(p, 0700), 0);
  snprintf(p, sizeof p, "%s/beta", dir);
  write_file(p, "x");
  snprintf(codebuf, sizeof codebuf, "%%cd %s/al", dir);
  m = complete_code(codebuf, strlen(codebuf), strlen(codebuf), NULL, &a, &b);
  ASSERT_EQ(json_array_size(m), 2);
  snprintf(p, sizeof p, "%s/alpha.txt", dir);
  ASSERT(has_match(m, p));
  snprintf(p, sizeof p, "%s/alps/", dir);
  ASSERT(has_match(m, p));
  ASSERT_EQ(a, 4);
  json_decref(m);
  snprintf(p, sizeof p, "%s/alps", dir);
  rmdir(p);
  snprintf(p, sizeof p, "%s/alpha.txt", dir);
  unlink(p);
  snprintf(p, sizeof p, "%s/beta", dir);
  unlink(p);
  rmdir(dir);
  return 0;
}

/* The binary: --help, no file, a missing file, a bad file. */
static int run_bin(const char *a1, const char *a2, char *err, size_t cap) {
  /* PK_BIN, else pipekernel beside this test runner ($(O)/test-runner) */
  static char self[4096];
  const char *bin = getenv("PK_BIN");
  if (!bin) {
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 16);
    if (sl <= 0) return -2;
    self[sl] = 0;
    char *slash = strrchr(self, '/');
    if (!slash) return -2;
    snprintf(slash + 1, 16, "pipekernel");
    bin = self;
  }
  if (access(bin, X_OK) != 0) return -2;
  int fd[2];
  ASSERT(pipe(fd) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 2);
    dup2(fd[1], 1);
    close(fd[0]);
    execl(bin, bin, a1, a2, (char *)NULL);
    _exit(127);
  }
  close(fd[1]);
  size_t len = 0;
  ssize_t n;
  for (;;) {
    n = read(fd[0], err + len, cap - len - 1);
    if (n <= 0) break;
    len += (size_t)n;
  }
  err[len] = 0;
  close(fd[0]);
  int st;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST_IMPL(kernel_main_errors) {
  char out[4096];
  int rc = run_bin("--help", NULL, out, sizeof out);
  if (rc == -2) RETURN_SKIP("pipekernel binary not built (set PK_BIN)");
  ASSERT_EQ(rc, 0);
  ASSERT_CONTAINS(out, "-f CONNECTION_FILE");
  ASSERT_EQ(run_bin("-f", "/nonexistent/kernel-x.json", out, sizeof out), 2);
  ASSERT_CONTAINS(out, "/nonexistent/kernel-x.json");
  char path[] = "/tmp/pk-bad-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  ASSERT(write(fd, "{\"shell_port\": 1}", 17) == 17);
  close(fd);
  ASSERT_EQ(run_bin("-f", path, out, sizeof out), 2);
  ASSERT_CONTAINS(out, "iopub_port");
  unlink(path);
  ASSERT_EQ(run_bin("--bogus", NULL, out, sizeof out), 2);
  return 0;
}

/* A line's words, expanded, are capped at the cell limit: $BIG four times
 * fits, a fifth time is refused, not allocated. */
static const char *big_var(void *ud, const char *name) {
  return strcmp(name, "BIG") == 0 ? ud : NULL;
}

TEST_IMPL(magic_split_cap) {
  size_t n = PK_LIMIT_CELL_BYTES / 5;
  char *big = malloc(n + 1);
  ASSERT(big);
  memset(big, 'b', n);
  big[n] = 0;
  int argc;
  char **argv;
  st_error e;
  st_error_clear(&e);
  ASSERT_EQ(mg_split("echo $BIG $BIG ${BIG}$BIG", big_var, big, &argc, &argv, &e), 0);
  ASSERT_EQ(argc, 4);
  ASSERT_EQ(strlen(argv[3]), 2 * n);
  free(argv);
  ASSERT_EQ(mg_split("echo $BIG $BIG ${BIG}$BIG$BIG", big_var, big, &argc, &argv, &e), ST_E2BIG);
  ASSERT_CONTAINS(e.text, "words expand to more than 1048576 bytes");
  free(big);
  return 0;
}

/* Header dates as jupyter_client, JupyterLab and older clients write them. */
TEST_IMPL(wire_dates) {
  static const struct {
    const char *in;
    long long us; /* -1: refused */
  } rows[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"2024-06-01T12:34:56.789012Z", 1717245296789012LL},
      {"2024-06-01T12:34:56.789Z", 1717245296789000LL},   /* JavaScript */
      {"2024-06-01T12:34:56.789012", 1717245296789012LL}, /* naive: UTC */
      {"2024-06-01T14:34:56.789012+02:00", 1717245296789012LL},
      {"2024-06-01T10:04:56.789012-0230", 1717245296789012LL},
      {"2024-06-01 12:34:56.7890129Z", 1717245296789012LL}, /* nanoseconds cut */
      {"2000-02-29T00:00:00Z", 951782400000000LL},
      {"1969-12-31T23:59:59Z", -1000000LL},
      {"2024-13-01T00:00:00Z", -1},
      {"2024-06-01T12:34Z", -1},
      {"2024-06-01T12:34:56.Z", -1},
      {"2024-06-01T12:34:56+0", -1},
      {"2024-06-01T12:34:56+", -1},
      {"2024-06-01T12:34:56Zjunk", -1},
      {"", -1},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    long long us = 42;
    int rc = wire_date_us(rows[i].in, &us);
    if (rows[i].us == -1 && rc == -1) continue;
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(us, rows[i].us);
  }
  ASSERT_EQ(wire_date_us(NULL, NULL), -1);
  char now[48];
  long long a, b;
  wire_now_iso(now, sizeof now); /* our own dates read back */
  ASSERT_EQ(wire_date_us(now, &a), 0);
  wire_now_iso(now, sizeof now);
  ASSERT_EQ(wire_date_us(now, &b), 0);
  ASSERT(b >= a && b - a < 10000000);
  return 0;
}

/* A flood of dropped messages: the first PK_LOG_BURST lines in full, then one
 * summary a minute counting the rest; after a quiet minute, a new incident
 * is shown in full again. The clock is the memory transport's. */
TEST_IMPL(log_limited_flood) {
  memtransport mt;
  mt_init(&mt, &KEY);
  pk_log_limit l = PK_LOG_LIMIT_INIT("dropped messages");
  for (int i = 0; i < 10000; i++) { /* 10,000 over 5 minutes */
    pk_log_limited(&mt.tr, &l, "shell: dropped a message: bad %d", i);
    mt.now += 30;
    if (i % 50 == 0) pk_log_limit_tick(&mt.tr, &l, 0);
  }
  /* 300 s: the burst, then a summary after each of the first four minutes */
  ASSERT_EQ(mt.n_logs, PK_LOG_BURST + 4);
  ASSERT_EQ(mt_logged(&mt, "bad 9 (more dropped messages are counted, and summarised once a minute)"), 1);
  ASSERT_EQ(mt_logged(&mt, "bad 10"), 0);
  pk_log_limit_tick(&mt.tr, &l, 1); /* at exit: the rest */
  ASSERT_EQ(mt.n_logs, PK_LOG_BURST + 5);
  ASSERT_EQ(mt_logged_at(&mt, PK_LOG_WARN, ""), mt.n_logs); /* all of them are for the user */
  ASSERT_CONTAINS(mt.logs[mt.n_logs - 1],
                  " more dropped messages in the last 60 s (not logged one by one); the last: "
                  "shell: dropped a message: bad 9999");
  unsigned long long counted = 0;
  for (size_t i = PK_LOG_BURST; i < mt.n_logs; i++) {
    ASSERT_CONTAINS(mt.logs[i], " more dropped messages in the last ");
    counted += strtoull(mt.logs[i], NULL, 10);
  }
  ASSERT_EQ(counted, 10000 - PK_LOG_BURST); /* every one is counted once */
  pk_log_limit_tick(&mt.tr, &l, 1);         /* nothing left: nothing written */
  ASSERT_EQ(mt.n_logs, PK_LOG_BURST + 5);
  mt.now += PK_LOG_INTERVAL_MS; /* quiet: the next incident in full */
  pk_log_limited(&mt.tr, &l, "control: dropped a message: new");
  ASSERT_STR_EQ(mt.logs[mt.n_logs - 1], "control: dropped a message: new");
  mt_free(&mt);
  return 0;
}
