/*
 * test-report.c -- %timings: order, totals, labels, JSON records, compare.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../kernel/magic.h"
#include "lib/cache.h"
#include "lib/session.h"
#include "task.h"

typedef struct {
  char out[65536];
  size_t len;
} rcap;

static void w(st_ctx *c, int stream, const char *buf, size_t len) {
  (void)stream;
  rcap *k = c->fe;
  if (k->len + len >= sizeof k->out) len = sizeof k->out - k->len - 1;
  memcpy(k->out + k->len, buf, len);
  k->len += len;
  k->out[k->len] = 0;
}
static void d(st_ctx *c, const st_mime *m, int n, const char *id, int up) {
  (void)id;
  (void)up;
  for (int i = 0; i < n; i++)
    if (strcmp(m[i].type, "text/plain") == 0) w(c, 1, m[i].data, m[i].len);
}
static const char *lk(void *ud, const char *name) { return ss_session_get(ud, name); }

static int run(st_ctx *c, const char *cell, st_error *e) {
  int line;
  st_error_clear(e);
  return mg_run_cell(c, cell, strlen(cell), lk, c->session, &line, e);
}

static void setup(st_ctx *c, rcap *k) {
  memset(c, 0, sizeof *c);
  memset(k, 0, sizeof *k);
  c->fe = k;
  c->write = w;
  c->display = d;
  c->session = ss_session_new();
}

TEST_IMPL(timings_table_order) {
  st_ctx c;
  rcap k;
  setup(&c, &k);
  st_timing_add(&c, "train", "train", 12.5, 0, 50000, "cpu", NULL);
  st_timing_add(&c, "download", "download", 2.0, 170000000, 1, "libcurl", "abc");
  st_timing_add(&c, "verify", "verify", 1.0, 186000000, 8, "openssl", NULL);
  st_error e;
  ASSERT_EQ(run(&c, "%timings", &e), 0);
  char *dl = strstr(k.out, "download"), *vf = strstr(k.out, "verify"),
       *tr = strstr(k.out, "train"), *tot = strstr(k.out, "total");
  ASSERT(dl && vf && tr && tot);
  ASSERT(dl < vf && vf < tr && tr < tot);
  ASSERT_CONTAINS(k.out, "15.50"); /* total seconds */
  ASSERT_CONTAINS(k.out, "186.0");  /* verify MB/s */
  ASSERT_EQ(run(&c, "%timings --clear", &e), 0);
  ASSERT_EQ(c.session->n_timings, 0);
  /* a stage outside the nine stays behind the stage that ran before it
   * (mkdata ran first: it is listed first) */
  k.len = 0;
  k.out[0] = 0;
  st_timing_add(&c, "mkdata", "mkdata", 3.0, 186000000, 8, "isa-l", NULL);
  st_timing_add(&c, "verify", "verify", 1.0, 186000000, 8, "openssl", NULL);
  st_timing_add(&c, "download", "download", 2.0, 170000000, 1, "libcurl", "abc");
  st_timing_add(&c, "warmup", "warmup", 0.5, 186000000, 6, "mmap", NULL);
  ASSERT_EQ(run(&c, "%timings", &e), 0);
  char *mk = strstr(k.out, "mkdata"), *ld = strstr(k.out, "warmup");
  dl = strstr(k.out, "download");
  vf = strstr(k.out, "verify");
  ASSERT(mk && dl && vf && ld);
  ASSERT(mk < dl && dl < ld && ld < vf); /* warmup ran after the download */
  ASSERT_EQ(run(&c, "%timings --clear", &e), 0);
  ASSERT_EQ(c.session->n_timings, 0);
  ss_session_free(c.session);
  return 0;
}

TEST_IMPL(timings_json_roundtrip) {
  st_ctx c;
  rcap k;
  setup(&c, &k);
  char dir[] = "/tmp/pk-timings-XXXXXX";
  ASSERT(mkdtemp(dir));
  char cell[512];
  st_timing_add(&c, "download", "download", 4.0, 100, 1, "libcurl", "deadbeef");
  /* a stage that read files: its cache and file system go with the record */
  pc_stats cold;
  pc_init(&cold, 1);
  snprintf(cold.fs, sizeof cold.fs, "nfs4 filer:/export");
  atomic_store(&cold.files, 8);
  atomic_store(&cold.bytes, 100);
  atomic_store(&cold.resident_found, 100);
  atomic_store(&cold.resident_read, 0);
  pc_timing_add(&c, &cold, "verify", "verify", 2.0, 100, 8, "openssl", NULL);
  st_error e;
  snprintf(cell, sizeof cell, "%%timings --label slow --json %s/slow.json --clear", dir);
  ASSERT_EQ(run(&c, cell, &e), 0);
  st_timing_add(&c, "download", "download", 1.0, 100, 1, "libcurl", "deadbeef");
  pc_stats warm;
  pc_init(&warm, 0);
  snprintf(warm.fs, sizeof warm.fs, "ext4 /dev/nvme0n1p1");
  atomic_store(&warm.files, 8);
  atomic_store(&warm.bytes, 100);
  atomic_store(&warm.resident_found, 100);
  atomic_store(&warm.resident_read, 100);
  pc_timing_add(&c, &warm, "verify", "verify", 0.5, 100, 8, "openssl", NULL);
  snprintf(cell, sizeof cell, "%%timings --label fast --json %s/fast.json", dir);
  ASSERT_EQ(run(&c, cell, &e), 0);
  /* the table's cache and file-system columns */
  ASSERT_CONTAINS(k.out, "file system");
  ASSERT_CONTAINS(k.out, "ext4 /dev/nvme0n1p1");
  /* compare by label and by record file: 4x on download, 4x in total */
  k.len = 0;
  ASSERT_EQ(run(&c, "%timings --compare slow fast", &e), 0);
  ASSERT_CONTAINS(k.out, "4.00x");
  k.len = 0;
  snprintf(cell, sizeof cell, "%%timings --compare %s/slow.json %s/fast.json", dir, dir);
  ASSERT_EQ(run(&c, cell, &e), 0);
  ASSERT_CONTAINS(k.out, "slow");
  ASSERT_CONTAINS(k.out, "download");
  ASSERT_CONTAINS(k.out, "4.00x");
  /* read back from the files: each run's verify says where it read from */
  ASSERT_CONTAINS(k.out, "slow read from");
  ASSERT_CONTAINS(k.out, "cold nfs4 filer:/export");
  ASSERT_CONTAINS(k.out, "warm ext4 /dev/nvme0n1p1");
  char path[600];
  snprintf(path, sizeof path, "%s/slow.json", dir);
  FILE *f = fopen(path, "r");
  ASSERT(f);
  char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  ASSERT_CONTAINS(buf, "\"pipekernel_record\": 1");
  ASSERT_CONTAINS(buf, "\"hash\": \"deadbeef\"");
  ASSERT_CONTAINS(buf, "\"cache\": \"cold\"");
  ASSERT_CONTAINS(buf, "\"fs\": \"nfs4 filer:/export\"");
  ASSERT_CONTAINS(buf, "\"resident\": 0.0");
  ASSERT_CONTAINS(buf, "\"cache\": null"); /* the download read no file */
  ASSERT_CONTAINS(buf, "\"cores\"");
  ASSERT_CONTAINS(buf, "\"openssl\"");
  snprintf(cell, sizeof cell, "rm -rf %s", dir);
  ASSERT_EQ(system(cell), 0);
  ss_session_free(c.session);
  return 0;
}

TEST_IMPL(timings_compare_errors) {
  st_ctx c;
  rcap k;
  setup(&c, &k);
  st_error e;
  ASSERT_EQ(run(&c, "%timings --compare nope paper:test1-weka", &e), ST_ENOENT);
  ASSERT_CONTAINS(e.text, "no run with this label");
  ASSERT_EQ(run(&c, "%timings --compare paper:test2-weka", &e), ST_EINVAL);
  ASSERT_EQ(run(&c, "%timings --label paper:x", &e), ST_EINVAL);
  /* a file that is not a record */
  char p[] = "/tmp/pk-notrec-XXXXXX";
  int fd = mkstemp(p);
  ASSERT(fd >= 0);
  ASSERT(write(fd, "{\"a\": 1}", 8) == 8);
  close(fd);
  char cell[256];
  snprintf(cell, sizeof cell, "%%timings --compare %s current", p);
  ASSERT_EQ(run(&c, cell, &e), ST_EFORMAT);
  ASSERT_CONTAINS(e.text, "expected a %timings --json record");
  unlink(p);
  /* a FIFO: refused at once, never waited on (this test would time out) */
  char dir[] = "/tmp/pk-fifo-XXXXXX";
  ASSERT(mkdtemp(dir) != NULL);
  char fifo[64];
  snprintf(fifo, sizeof fifo, "%s/record.json", dir);
  ASSERT(mkfifo(fifo, 0600) == 0);
  snprintf(cell, sizeof cell, "%%timings --compare %s current", fifo);
  ASSERT_EQ(run(&c, cell, &e), ST_EINVAL);
  ASSERT_CONTAINS(e.text, "the run record is a FIFO, not a regular file");
  unlink(fifo);
  rmdir(dir);
  /* the whitepaper's totals (docs/workflow.md) */
  k.len = 0;
  ASSERT_EQ(run(&c, "%timings --compare paper:test2-s3nvme paper:test2-weka", &e), 0);
  ASSERT_CONTAINS(k.out, "3.14x");
  ss_session_free(c.session);
  return 0;
}
