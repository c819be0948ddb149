/*
 * test-s3-sigv4.c -- SigV4 step by step (table-driven), the AWS SigV4
 * test suite (../shared/testdata/sigv4 from the repository root; skipped
 * with a message where it is absent), and the S3 response parsers.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "s3/s3.h"
#include "s3/s3_int.h"
#include "s3/sigv4.h"
#include "task.h"

TEST_IMPL(sigv4_uri_encode) {
  struct { const char *in; int keep; const char *out; } rows[] = {
      {"abcXYZ019-._~", 0, "abcXYZ019-._~"},
      {"a b", 0, "a%20b"},
      {"a/b", 0, "a%2Fb"},
      {"a/b", 1, "a/b"},
      {"a+b=c&d", 0, "a%2Bb%3Dc%26d"},
      {"\xe1\x88\xb4", 1, "%E1%88%B4"},
      {"%20", 1, "%2520"}, /* a literal percent is data */
      {"", 1, ""},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char *o = sigv4_uri_encode(rows[i].in, strlen(rows[i].in), rows[i].keep);
    ASSERT_STR_EQ(o, rows[i].out);
    free(o);
  }
  char *d = sigv4_uri_decode("a%20b%2fc%zz%4", 14);
  ASSERT_STR_EQ(d, "a b/c%zz%4");
  free(d);
  return 0;
}

TEST_IMPL(sigv4_canonical_uri_rules) {
  struct { const char *in; int rules; const char *out; } rows[] = {
      /* S3: encoded once, never normalised */
      {"/bucket/my-object//example//photo.user", SIGV4_S3, "/bucket/my-object//example//photo.user"},
      {"/b/a/../c/./d", SIGV4_S3, "/b/a/../c/./d"},
      {"/b/key with space+plus", SIGV4_S3, "/b/key%20with%20space%2Bplus"},
      {"/b/100%", SIGV4_S3, "/b/100%25"},
      {"b/k", SIGV4_S3, "/b/k"},
      {"", SIGV4_S3, "/"},
      /* generic: normalised */
      {"//example//", SIGV4_GENERIC, "/example/"},
      {"/example1/example2/../..", SIGV4_GENERIC, "/"},
      {"/example/..", SIGV4_GENERIC, "/"},
      {"/./", SIGV4_GENERIC, "/"},
      {"/example/.", SIGV4_GENERIC, "/example/"},
      {"/example space/", SIGV4_GENERIC, "/example%20space/"},
      {"/a/b/../c", SIGV4_GENERIC, "/a/c"},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char *o = sigv4_canonical_uri(rows[i].in, rows[i].rules);
    ASSERT_STR_EQ(o, rows[i].out);
    free(o);
  }
  return 0;
}

TEST_IMPL(sigv4_canonical_parts) {
  sigv4_kv q[] = {{"uploadId", "a/b+c"}, {"partNumber", "2"}, {"a", NULL}, {"a", "b"},
                  {"list-type", "2"}};
  char *cq = sigv4_canonical_query(q, 5);
  ASSERT_STR_EQ(cq, "a=&a=b&list-type=2&partNumber=2&uploadId=a%2Fb%2Bc");
  free(cq);
  cq = sigv4_canonical_query(NULL, 0);
  ASSERT_STR_EQ(cq, "");
  free(cq);
  sigv4_kv h[] = {{"X-Amz-Date", "20150830T123600Z"},
                  {"Host", "example.amazonaws.com"},
                  {"My-Header1", "  a   b   c  "},
                  {"my-header1", "second"},
                  {"X-Amz-Content-SHA256", SIGV4_EMPTY_SHA256}};
  char *ch = sigv4_canonical_headers(h, 5);
  ASSERT_STR_EQ(ch, "host:example.amazonaws.com\n"
                    "my-header1:a b c,second\n"
                    "x-amz-content-sha256:" SIGV4_EMPTY_SHA256 "\n"
                    "x-amz-date:20150830T123600Z\n");
  char *sh = sigv4_signed_headers(h, 5);
  ASSERT_STR_EQ(sh, "host;my-header1;x-amz-content-sha256;x-amz-date");
  char *cr = sigv4_canonical_request("GET", "/", "", ch, sh, SIGV4_EMPTY_SHA256);
  ASSERT_STR_EQ(cr, "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:a b c,second\n"
                    "x-amz-content-sha256:" SIGV4_EMPTY_SHA256 "\nx-amz-date:20150830T123600Z\n"
                    "\nhost;my-header1;x-amz-content-sha256;x-amz-date\n" SIGV4_EMPTY_SHA256);
  free(ch);
  free(sh);
  free(cr);
  char *sc = sigv4_scope("20150830T123600Z", "us-east-1", "s3");
  ASSERT_STR_EQ(sc, "20150830/us-east-1/s3/aws4_request");
  free(sc);
  char hex[65];
  ASSERT_EQ(sigv4_sha256_hex("", 0, hex), 0);
  ASSERT_STR_EQ(hex, SIGV4_EMPTY_SHA256);
  char d[17];
  sigv4_amz_date(1440938160, d);
  ASSERT_STR_EQ(d, "20150830T123600Z");
  return 0;
}

/* The AWS documentation's worked example (get-vanilla, step by step). */
TEST_IMPL(sigv4_signing_chain) {
  uint8_t key[32];
  ASSERT_EQ(sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830",
                              "us-east-1", "iam", key), 0);
  char hex[65];
  static const char hexd[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = hexd[key[i] >> 4];
    hex[2 * i + 1] = hexd[key[i] & 15];
  }
  hex[64] = 0;
  ASSERT_STR_EQ(hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
  const char *sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n"
                    "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59";
  ASSERT_EQ(sigv4_signature(key, sts, hex), 0);
  ASSERT_STR_EQ(hex, "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
  char *a = sigv4_authorization("AKIDEXAMPLE", "20150830/us-east-1/iam/aws4_request",
                                "content-type;host;x-amz-date", hex);
  ASSERT_STR_EQ(a, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/"
                   "aws4_request, SignedHeaders=content-type;host;x-amz-date, "
                   "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
  free(a);
  /* the S3 documentation's GET Object example (examplebucket, range) */
  sigv4_kv h[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                  {"Range", "bytes=0-9"},
                  {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
                  {"x-amz-date", "20130524T000000Z"}};
  sigv4_request r = {.method = "GET", .path = "/test.txt", .rules = SIGV4_S3,
                     .headers = h, .nheaders = 4, .payload_sha256 = SIGV4_EMPTY_SHA256,
                     .amz_date = "20130524T000000Z", .region = "us-east-1", .service = "s3"};
  sigv4_result res;
  ASSERT_EQ(sigv4_sign(&r, "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                       &res), 0);
  ASSERT_STR_EQ(res.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  ASSERT(!strstr(res.authorization, "wJalr"));
  sigv4_result_free(&res);
  return 0;
}

/* ---- the AWS SigV4 test suite ---- */

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *p = malloc((size_t)n + 1);
  if (!p) { fclose(f); return NULL; }
  size_t r = fread(p, 1, (size_t)n, f);
  fclose(f);
  p[r] = 0;
  if (len) *len = r;
  return p;
}

/* Runs one case directory DIR/NAME/NAME.{req,creq,sts,authz}; returns 1 if
 * it ran, 0 if it has no .req. */
static int run_case(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.req", dir, name);
  size_t rlen;
  char *req = slurp(path, &rlen);
  if (!req) return 0;
  /* request line: METHOD SP PATH[?QUERY] SP HTTP/1.1 */
  char *eol = strchr(req, '\n');
  ASSERT(eol);
  *eol = 0;
  char *sp = strchr(req, ' ');
  char *http = strstr(req, " HTTP/");
  ASSERT(sp && http && http > sp);
  *sp = 0;
  *http = 0;
  char *target = sp + 1;
  char *qm = strchr(target, '?');
  if (qm) *qm = 0;
  sigv4_kv q[32];
  char *qbuf[64];
  size_t nq = 0, nqb = 0;
  if (qm && qm[1]) {
    char *save = NULL;
    for (char *t = strtok_r(qm + 1, "&", &save); t; t = strtok_r(NULL, "&", &save)) {
      char *eq = strchr(t, '=');
      ASSERT(nq < 32);
      qbuf[nqb] = sigv4_uri_decode(t, eq ? (size_t)(eq - t) : strlen(t));
      q[nq].name = qbuf[nqb++];
      qbuf[nqb] = eq ? sigv4_uri_decode(eq + 1, strlen(eq + 1)) : NULL;
      q[nq++].value = qbuf[nqb++];
    }
  }
  /* headers until a blank line; continuation lines fold into the value */
  sigv4_kv h[32];
  char *hval[32];
  size_t nh = 0;
  char *p = eol + 1, *body = NULL;
  while (p && *p) {
    char *e = strchr(p, '\n');
    if (e) *e = 0;
    if (*p == 0) { body = e ? e + 1 : NULL; break; }
    if ((*p == ' ' || *p == '\t') && nh) {
      while (*p == ' ' || *p == '\t') p++;
      size_t ol = strlen(hval[nh - 1]);
      char *nv = realloc(hval[nh - 1], ol + strlen(p) + 2);
      ASSERT(nv);
      nv[ol] = ',';
      memcpy(nv + ol + 1, p, strlen(p) + 1);
      hval[nh - 1] = nv;
      h[nh - 1].value = nv;
    } else {
      char *colon = strchr(p, ':');
      ASSERT(colon && nh < 32);
      *colon = 0;
      h[nh].name = p;
      hval[nh] = strdup(colon + 1);
      h[nh].value = hval[nh];
      nh++;
    }
    p = e ? e + 1 : NULL;
  }
  const char *date = NULL;
  for (size_t i = 0; i < nh; i++)
    if (strcasecmp(h[i].name, "x-amz-date") == 0) date = h[i].value;
  ASSERT(date);
  char payload[65];
  ASSERT_EQ(sigv4_sha256_hex(body ? body : "", body ? strlen(body) : 0, payload), 0);
  sigv4_request r = {.method = req, .path = target, .rules = SIGV4_GENERIC, .query = q,
                     .nquery = nq, .headers = h, .nheaders = nh, .payload_sha256 = payload,
                     .amz_date = date, .region = "us-east-1", .service = "service"};
  sigv4_result res;
  ASSERT_EQ(sigv4_sign(&r, "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", &res), 0);
  const char *ext[] = {"creq", "sts", "authz"};
  const char *got[] = {res.canonical_request, res.string_to_sign, res.authorization};
  /* Known errata of the suite: these two cases' .sts hash a canonical
   * request other than their own .creq (one signed without content-length).
   * Prove that, then check the .creq only. */
  int nk = 3;
  if (strcmp(name, "post-x-www-form-urlencoded-parameters") == 0 ||
      strcmp(name, "post-x-www-form-urlencoded") == 0) {
    snprintf(path, sizeof path, "%s/%s.creq", dir, name);
    char *wc = slurp(path, NULL);
    snprintf(path, sizeof path, "%s/%s.sts", dir, name);
    char *ws = slurp(path, NULL);
    char hc[65];
    ASSERT(wc && ws && sigv4_sha256_hex(wc, strlen(wc), hc) == 0);
    if (!strstr(ws, hc)) {
      fprintf(stderr, "%s: suite .sts does not hash its .creq (erratum); .creq checked\n", name);
      nk = 1;
    }
    free(wc);
    free(ws);
  }
  for (int k = 0; k < nk; k++) {
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext[k]);
    char *want = slurp(path, NULL);
    ASSERT(want);
    if (strcmp(want, got[k]) != 0) {
      fprintf(stderr, "%s: %s differs\n--- want\n%s\n--- got\n%s\n", name, ext[k], want, got[k]);
      exit(1);
    }
    free(want);
  }
  sigv4_result_free(&res);
  for (size_t i = 0; i < nqb; i++) free(qbuf[i]);
  for (size_t i = 0; i < nh; i++) free(hval[i]);
  free(req);
  return 1;
}

static int walk(const char *dir, int *cases) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *e;
  for (e = readdir(d); e; e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char sub[2048];
    snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(sub, &st) || !S_ISDIR(st.st_mode)) continue;
    *cases += run_case(sub, e->d_name);
    walk(sub, cases);
  }
  closedir(d);
  return 0;
}

TEST_IMPL(sigv4_aws_suite) {
  const char *dir = getenv("PK_SIGV4_SUITE");
  if (!dir) dir = "../shared/testdata/sigv4";
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    char why[512];
    snprintf(why, sizeof why, "AWS SigV4 test suite not found at %s (set PK_SIGV4_SUITE)", dir);
    RETURN_SKIP(why);
  }
  int cases = 0;
  ASSERT_EQ(walk(dir, &cases), 0);
  fprintf(stderr, "%d cases\n", cases);
  ASSERT(cases >= 20); /* the suite has 30; a partial copy is an error */
  return 0;
}

/* s3__parse_responses: how many of the five parsers accept a body, and -1
 * when one breaks its contract (tests/fuzz/fuzz_s3xml.c runs it on hostile
 * bodies). */
TEST_IMPL(s3_response_parsers) {
  static const struct { const char *body; int accepted; } rows[] = {
      /* the uploads and complete parsers read any well-formed document
       * (the request's status was checked before); an <Error> is not a
       * completed upload */
      {"<Error><Code>NoSuchKey</Code><Message>m</Message></Error>", 2},
      /* a listing page, truncated with its token */
      {"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t"
       "</NextContinuationToken><Contents><Key>k</Key><Size>1</Size></Contents>"
       "</ListBucketResult>", 3},
      /* truncated without a token: refused by the listing parser */
      {"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", 2},
      {"<InitiateMultipartUploadResult><UploadId>u</UploadId></InitiateMultipartUploadResult>", 3},
      {"<CompleteMultipartUploadResult><ETag>\"e\"</ETag></CompleteMultipartUploadResult>", 2},
      /* an <Upload> without Key or UploadId is skipped, not given the
       * previous one's (it used to be) */
      {"<ListMultipartUploadsResult><Upload><UploadId>u1</UploadId></Upload>"
       "<Upload><Key>k2</Key><UploadId>u2</UploadId></Upload><Upload><Key>k3</Key></Upload>"
       "</ListMultipartUploadsResult>", 2},
      {"<a", 0},
      {"", 0},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    int n = s3__parse_responses(rows[i].body, strlen(rows[i].body));
    if (n != rows[i].accepted) fprintf(stderr, "row %zu: %d accepted\n", i, n);
    ASSERT_EQ(n, rows[i].accepted);
  }
  return 0;
}

/* A page listed with encoding-type=url: its keys are decoded (form
 * encoding, as S3 writes it), so a key with an ESC or a newline, which XML
 * 1.0 cannot carry, arrives whole; a page without <EncodingType> is taken
 * as it is, '%' and '+' included. */
TEST_IMPL(s3_listing_url_encoded_keys) {
  static const char *enc =
      "<ListBucketResult><Name>b</Name><Prefix>p%2F</Prefix><EncodingType>url</EncodingType>"
      "<IsTruncated>false</IsTruncated>"
      "<Contents><Key>p/a%1B%5B2Jb+c%2Bd%0A%C3%A9</Key><Size>1</Size></Contents>"
      "<Contents><Key>p/plain</Key><Size>2</Size></Contents></ListBucketResult>";
  static const char *raw =
      "<ListBucketResult><IsTruncated>false</IsTruncated>"
      "<Contents><Key>p/a%41+b</Key><Size>1</Size></Contents></ListBucketResult>";
  s3_listing ls;
  memset(&ls, 0, sizeof ls);
  st_error e;
  st_error_clear(&e);
  ASSERT_EQ(s3__list_page(enc, strlen(enc), &ls, "s3://b/p/", &e), 0);
  ASSERT_EQ(ls.n, 2);
  ASSERT_STR_EQ(ls.items[0].key, "p/a\x1b[2Jb c+d\n\xc3\xa9");
  ASSERT_STR_EQ(ls.items[1].key, "p/plain");
  /* the next page says nothing of its encoding: its keys stay as sent */
  ASSERT_EQ(s3__list_page(raw, strlen(raw), &ls, "s3://b/p/", &e), 0);
  ASSERT_EQ(ls.n, 3);
  ASSERT_STR_EQ(ls.items[2].key, "p/a%41+b");
  s3__list_free(&ls);
  return 0;
}

/* The part count of an ETag, and the part sizes tried for a multipart
 * object whose server does not say its layout. */
TEST_IMPL(s3_etag_parts_and_layouts) {
  ASSERT_EQ(s3__etag_parts("d41d8cd98f00b204e9800998ecf8427e"), 0);
  ASSERT_EQ(s3__etag_parts("d41d8cd98f00b204e9800998ecf8427e-3"), 3);
  ASSERT_EQ(s3__etag_parts("d41d8cd98f00b204e9800998ecf8427e-10000"), 10000);
  ASSERT_EQ(s3__etag_parts("d41d8cd98f00b204e9800998ecf8427e-10001"), -1);
  ASSERT_EQ(s3__etag_parts("d41d8cd98f00b204e9800998ecf8427e-0"), -1);
  ASSERT_EQ(s3__etag_parts("d41d8cd98f00b204e9800998ecf8427e-"), -1);
  ASSERT_EQ(s3__etag_parts("D41D8CD98F00B204E9800998ECF8427E"), -1); /* S3 writes lower case */
  ASSERT_EQ(s3__etag_parts("d41d8cd98f00b204e9800998ecf8427"), -1);
  ASSERT_EQ(s3__etag_parts("d41d8cd98f00b204e9800998ecf8427e-3x"), -1);
  ASSERT_EQ(s3__etag_parts(""), -1);

  uint64_t c[8];
  const uint64_t MiB_ = 1u << 20;
  /* 200 MiB in 25 parts: 8 MiB only */
  int n = s3__layout_candidates(200 * MiB_, 25, c, 8);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(c[0], 8 * MiB_);
  /* 20 MiB in 3 parts: 8 MiB first, then the other sizes that give 3 */
  n = s3__layout_candidates(20 * MiB_, 3, c, 8);
  ASSERT(n >= 3 && n <= 8);
  ASSERT_EQ(c[0], 8 * MiB_);
  for (int i = 0; i < n; i++) ASSERT_EQ((20 * MiB_ + c[i] - 1) / c[i], 3);
  /* one part: the whole object */
  n = s3__layout_candidates(12345, 1, c, 8);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(c[0], 12345);
  /* parts below 5 MiB are not S3's (but the last) */
  n = s3__layout_candidates(9 * MiB_, 3, c, 8);
  ASSERT_EQ(n, 0);
  /* 1 GiB in 128 parts: 8 MiB */
  n = s3__layout_candidates(1024 * MiB_, 128, c, 8);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(c[0], 8 * MiB_);
  /* at most max */
  n = s3__layout_candidates(100 * MiB_, 2, c, 3);
  ASSERT_EQ(n, 3);
  return 0;
}
