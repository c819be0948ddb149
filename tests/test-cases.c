/*
 * test-cases.c -- the refusal case folders of tests/data (written by
 * tests/data/make_cases.py; a new case is two new files):
 *
 *   tests/data/<kind>/invalid/<case>/input   bytes that must be refused
 *   tests/data/<kind>/invalid/<case>/error   lines that must each appear in
 *                                            the error ("Ename: where: text")
 *
 * archive: %extract through the registry into a scratch folder, then nothing
 * outside DIR, no temporary file and no link out of it; manifest: mf_parse;
 * s3xml: the parser of the request the case name starts with; wire:
 * wire_parse of frames joined by "\n--\n", a "SIGNED" frame replaced by the
 * right signature first. The pickle cases are read by tests/test-load.c.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../kernel/wire.h"
#include "data/manifest.h"
#include "lib/escape.h"
#include "lib/limits.h"
#include "lib/session.h"
#include "lib/stage.h"
#include "s3/s3.h"
#include "task.h"

#define DATA "tests/data"

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *b = malloc(cap + 1);
  while (b) {
    size_t k = fread(b + n, 1, cap - n, f);
    if (k == 0) break;
    n += k;
    if (n == cap) {
      char *nb = realloc(b, (cap *= 2) + 1);
      if (!nb) free(b);
      b = nb;
    }
  }
  fclose(f);
  if (b) b[n] = 0;
  *len = n;
  return b;
}

typedef struct {
  char name[256];
  char dir[512];
  char *input;
  size_t len;
  char *error; /* the expected lines, NUL-terminated */
} tcase;

/* Calls fn on every case of kind in name order; returns how many, or -1
 * when the folder is missing (not run from the repository root). */
static int each_case(const char *kind, void (*fn)(tcase *t, void *ud), void *ud) {
  char root[256];
  snprintf(root, sizeof root, DATA "/%s/invalid", kind);
  struct dirent **names;
  int n = scandir(root, &names, NULL, alphasort);
  if (n < 0) return -1;
  int cases = 0;
  for (int i = 0; i < n; i++) {
    if (names[i]->d_name[0] != '.') {
      tcase t;
      memset(&t, 0, sizeof t);
      snprintf(t.name, sizeof t.name, "%s", names[i]->d_name);
      snprintf(t.dir, sizeof t.dir, "%s/%s", root, t.name);
      char path[600];
      size_t elen;
      snprintf(path, sizeof path, "%s/input", t.dir);
      t.input = slurp(path, &t.len);
      snprintf(path, sizeof path, "%s/error", t.dir);
      t.error = slurp(path, &elen);
      if (!t.input || !t.error) {
        fprintf(stderr, "case %s/%s: input or error missing\n", kind, t.name);
        ASSERT(0);
      }
      fn(&t, ud);
      free(t.input);
      free(t.error);
      cases++;
    }
    free(names[i]);
  }
  free(names);
  return cases;
}

/* Every non-empty line of the case's error file appears in msg. */
static void expect_error(const tcase *t, const char *kind, const char *msg) {
  const char *p = t->error;
  while (*p) {
    size_t n = strcspn(p, "\r\n");
    if (n) {
      char want[1024];
      snprintf(want, sizeof want, "%.*s", (int)n, p);
      if (!strstr(msg, want)) {
        fprintf(stderr, "case %s/%s: error \"%s\" does not contain \"%s\"\n", kind, t->name,
                msg, want);
        ASSERT(0);
      }
    }
    p += n;
    p += strspn(p, "\r\n");
  }
}

/* No byte of an error a terminal would act on: names from the input are
 * shown escaped (stages/lib/escape.h). */
static void expect_escaped(const tcase *t, const char *kind, const char *msg) {
  if (!esc_needed(msg, strlen(msg))) return;
  fprintf(stderr, "case %s/%s: the error shows a control byte: \"%s\"\n", kind, t->name, msg);
  ASSERT(0);
}

/* "Ename: where: text (at byte N)", as `pipekernel run` prints it. */
static void format_error(int rc, const st_error *e, char *out, size_t cap) {
  char text[3000];
  st_error_format(e, text, sizeof text);
  snprintf(out, cap, "%s: %s", st_errname(rc), text);
}

/* ---- manifests ------------------------------------------------------- */
static void manifest_case(tcase *t, void *ud) {
  (void)ud;
  mf_list m;
  st_error e;
  st_error_clear(&e);
  int rc = mf_parse(t->input, t->len, "input", &m, &e);
  char msg[4096];
  format_error(rc, &e, msg, sizeof msg);
  if (rc == 0) fprintf(stderr, "case manifest/%s: accepted\n", t->name);
  ASSERT(rc < 0 && e.code == rc);
  ASSERT_EQ(m.n, 0); /* a refused manifest lists nothing */
  expect_error(t, "manifest", msg);
  expect_escaped(t, "manifest", msg);
}

TEST_IMPL(manifest_invalid_cases) {
  int n = each_case("manifest", manifest_case, NULL);
  if (n < 0) RETURN_SKIP("run from the repository root (" DATA " not found)");
  ASSERT(n >= 10);
  return 0;
}

/* ---- S3 response bodies --------------------------------------------- */
static void s3xml_case(tcase *t, void *ud) {
  (void)ud;
  char request[64];
  snprintf(request, sizeof request, "%.*s", (int)strcspn(t->name, "-"), t->name);
  st_error e;
  st_error_clear(&e);
  int rc = s3__parse_response(request, t->input, t->len, "s3://bucket/", &e);
  char msg[4096];
  format_error(rc, &e, msg, sizeof msg);
  if (rc >= 0) fprintf(stderr, "case s3xml/%s: %s accepted it (%d)\n", t->name, request, rc);
  ASSERT(rc < 0 && e.code == rc);
  ASSERT(strcmp(e.text, "no parser for the answer to ") != 0);
  expect_error(t, "s3xml", msg);
}

TEST_IMPL(s3xml_invalid_cases) {
  int n = each_case("s3xml", s3xml_case, NULL);
  if (n < 0) RETURN_SKIP("run from the repository root (" DATA " not found)");
  ASSERT(n >= 6);
  return 0;
}

/* ---- Jupyter messages ------------------------------------------------ */
static void wire_case(tcase *t, void *ud) {
  (void)ud;
  static const wire_key key = {"secret-key", 10, "SHA256"};
  wire_frame f[PK_LIMIT_MSG_FRAMES + 1];
  size_t n = 0, start = 0;
  for (size_t i = 0; i + 4 <= t->len && n < PK_LIMIT_MSG_FRAMES; i++)
    if (memcmp(t->input + i, "\n--\n", 4) == 0) {
      f[n++] = (wire_frame){t->input + start, i - start};
      start = i + 4;
      i += 3;
    }
  f[n++] = (wire_frame){t->input + start, t->len - start};
  char hex[2 * 64 + 1];
  for (size_t i = 0; i < n; i++)
    if (f[i].len == 6 && memcmp(f[i].p, "SIGNED", 6) == 0) {
      ASSERT(i + 4 < n);
      ASSERT_EQ(wire_sign(&key, &f[i + 1], hex, sizeof hex), 64);
      f[i] = (wire_frame){hex, 64};
    }
  wire_msg m;
  char why[1024];
  int rc = wire_parse(f, n, &key, &m, why, sizeof why);
  if (rc == 0) {
    fprintf(stderr, "case wire/%s: accepted\n", t->name);
    wire_msg_free(&m);
  }
  ASSERT_EQ(rc, -1);
  ASSERT(m.header == NULL && m.idents == NULL); /* nothing is kept of a dropped message */
  expect_error(t, "wire", why);
}

TEST_IMPL(wire_invalid_cases) {
  int n = each_case("wire", wire_case, NULL);
  if (n < 0) RETURN_SKIP("run from the repository root (" DATA " not found)");
  ASSERT(n >= 8);
  return 0;
}

/* ---- archives ------------------------------------------------------- */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* What a folder holds outside `skip`: "path kind [size]" per entry, in the
 * order nftw walks it (the same for the same tree). */
static struct {
  const char *root, *skip;
  char *out;
  size_t cap, len;
} g_snap;

static int snapshot_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)ftw;
  const char *rel = path + strlen(g_snap.root);
  if (strncmp(rel, g_snap.skip, strlen(g_snap.skip)) == 0) return 0;
  char line[4200];
  if (flag == FTW_SL) snprintf(line, sizeof line, "%s link\n", rel);
  else if (S_ISDIR(st->st_mode)) snprintf(line, sizeof line, "%s folder\n", rel);
  else snprintf(line, sizeof line, "%s file %lld\n", rel, (long long)st->st_size);
  size_t n = strlen(line);
  if (g_snap.len + n < g_snap.cap) {
    memcpy(g_snap.out + g_snap.len, line, n + 1);
    g_snap.len += n;
  }
  return 0;
}

static void snapshot(const char *root, const char *skip, char *out, size_t cap) {
  g_snap.root = root;
  g_snap.skip = skip;
  g_snap.out = out;
  g_snap.cap = cap;
  g_snap.len = 0;
  out[0] = 0;
  nftw(root, snapshot_entry, 16, FTW_PHYS);
}

typedef struct {
  const st_stage *extract;
  char scratch[256];
} arc_ud;

/* Links DIR holds must stay inside it; no temporary file is left. */
static const char *g_out;
static int check_inside(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  ASSERT(!strstr(path, ".pk-tmp"));
  if (flag == FTW_SL) {
    char real[4096], root[4096];
    ASSERT(realpath(g_out, root) != NULL);
    if (realpath(path, real)) ASSERT(strncmp(real, root, strlen(root)) == 0);
  }
  return 0;
}

static void archive_case(tcase *t, void *ud) {
  arc_ud *a = ud;
  char work[300], out[320], victim[300], arc[600];
  snprintf(work, sizeof work, "%s/extract", a->scratch);
  snprintf(out, sizeof out, "%s/out", work);
  snprintf(victim, sizeof victim, "%s/victim", a->scratch);
  snprintf(arc, sizeof arc, "%s/%s", t->dir, "input");
  ASSERT(mkdir(work, 0755) == 0);
  FILE *v = fopen(victim, "w");
  ASSERT(v && fputs("victim", v) >= 0 && fclose(v) == 0);
  char before[8192], after[8192];
  snapshot(a->scratch, "/extract/out", before, sizeof before); /* DIR, relative to the scratch folder */

  st_ctx c;
  memset(&c, 0, sizeof c);
  c.session = ss_session_new();
  char to[] = "--to", name[] = "extract";
  char *argv[] = {name, arc, to, out, NULL};
  st_error e;
  st_error_clear(&e);
  int rc = st_run(&c, a->extract, 4, argv, NULL, NULL, &e);
  char msg[4096];
  format_error(rc, &e, msg, sizeof msg);
  if (rc == 0) fprintf(stderr, "case archive/%s: extracted\n", t->name);
  ASSERT(rc < 0);
  expect_error(t, "archive", msg);
  expect_escaped(t, "archive", msg);
  ASSERT_CONTAINS(msg, arc); /* the error names the archive */
  /* nothing changed outside DIR; DIR, when it stays, is not empty */
  snapshot(a->scratch, "/extract/out", after, sizeof after);
  if (strcmp(before, after) != 0) {
    fprintf(stderr, "case archive/%s: outside DIR before:\n%safter:\n%s", t->name, before, after);
    ASSERT(0);
  }
  DIR *d = opendir(out);
  if (d) {
    int entries = 0;
    for (struct dirent *x = readdir(d); x; x = readdir(d)) entries += x->d_name[0] != '.';
    closedir(d);
    ASSERT(entries > 0);
    g_out = out;
    nftw(out, check_inside, 16, FTW_PHYS);
  }
  struct stat st;
  ASSERT(stat("/tmp/pipekernel-case-absolute", &st) != 0);
  ss_session_free(c.session);
  nftw(work, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  ASSERT(remove(victim) == 0);
}

TEST_IMPL(archive_invalid_cases) {
  arc_ud a;
  a.extract = st_registry_find("extract");
  ASSERT(a.extract != NULL);
  const char *tmp = getenv("TMPDIR");
  snprintf(a.scratch, sizeof a.scratch, "%s/pk-cases-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  ASSERT(mkdtemp(a.scratch) != NULL);
  int n = each_case("archive", archive_case, &a);
  rmdir(a.scratch);
  if (n < 0) RETURN_SKIP("run from the repository root (" DATA " not found)");
  ASSERT(n >= 20);
  return 0;
}
