/*
 * test-data-units.c -- hashing from a mapping (any step size, a file cut
 * short under the reader), the py2 pickle writer's opcodes and the
 * producer/consumer ring of the fused download.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/extract.h"
#include "lib/limits.h"
#include "data/manifest.h"
#include "lib/mapguard.h"
#include "data/md5.h"
#include "data/mkdata.h"
#include "data/pklwrite.h"
#include "lib/ring.h"
#include "task.h"

/* A file hashes the same from its mapping whatever the step size. */
TEST_IMPL(md5_mapped_steps) {
  char path[] = "/tmp/pk-md5-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  unlink(path);
  const char *s = "12345678901234567890123456789012345678901234567890123456789012345678901234567890";
  for (int i = 0; i < 1000; i++) ASSERT_EQ(write(fd, s, 80), 80);
  size_t n = 80000;
  char *all = malloc(n);
  for (int i = 0; i < 1000; i++) memcpy(all + i * 80, s, 80);
  char want[33];
  md5_hex_of(all, n, want);
  static const size_t caps[] = {1, 7, 64, 4096, 1 << 20};
  for (size_t k = 0; k < 5; k++) {
    atomic_uint_fast64_t bytes = 0;
    char hex[33];
    st_error err;
    st_error_clear(&err);
    ASSERT_EQ(md5_mapped(fd, n, "t", caps[k], NULL, &bytes, hex, &err), 0);
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
    md5_hex_of(all, sizes[k], want);
    atomic_uint_fast64_t bytes = 0;
    st_error err;
    st_error_clear(&err);
    ASSERT_EQ(md5_mapped(fd, sizes[k], "t", 1u << 20, NULL, &bytes, hex, &err), 0);
    ASSERT_STR_EQ(hex, want);
    ASSERT_EQ(atomic_load(&bytes), (long long)sizes[k]);
  }
  /* measured at 3 MiB, then cut to one page: the pages past it are gone */
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  for (int round = 0; round < 2; round++) {
    char hex[33] = "";
    st_error err;
    st_error_clear(&err);
    ASSERT_EQ(md5_mapped(fd, n, "cut-short", 1u << 20, NULL, NULL, hex, &err), ST_EIO);
    ASSERT_STR_EQ(err.where, "cut-short");
    ASSERT_CONTAINS(err.text, "shrank while it was being read");
    ASSERT_EQ(err.offset, 4096);
  }
  char want[33], hex[33];
  md5_hex_of(all, 4096, want);
  st_error err;
  st_error_clear(&err);
  ASSERT_EQ(md5_mapped(fd, 4096, "t", 1u << 20, NULL, NULL, hex, &err), 0);
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
  mapguard g;
  ASSERT_EQ(mapguard_begin(&g, (const void *)m, n), 0);
  ASSERT_EQ(m[4999], 0xab);  /* still in the file */
  ASSERT_EQ(m[5000], 0);     /* the page that holds the new end: zeros after it */
  ASSERT_EQ(m[3 * 4096], 0); /* a lost page: SIGBUS absorbed */
  ASSERT_EQ(m[n - 1], 0);    /* and every page after it */
  ASSERT_EQ(m[2 * 4096], 0);
  size_t lost = 0;
  ASSERT_EQ(mapguard_end(&g, &lost), -1);
  ASSERT_EQ(lost, 2 * 4096); /* the first address that faulted */
  /* a guard that saw nothing lost */
  ASSERT_EQ(mapguard_begin(&g, (const void *)m, 4096), 0);
  ASSERT_EQ(m[0], 0xab);
  ASSERT_EQ(mapguard_end(&g, &lost), 0);
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

TEST_IMPL(pklwrite_opcodes) {
  pw_buf w;
  pw_init(&w, 1u << 20);
  pw_int(&w, 5);
  pw_int(&w, 300);
  pw_int(&w, -1);
  pw_int(&w, 70000);
  static const uint8_t ints[] = {'K', 5, 'M', 0x2c, 0x01, 'J', 0xff, 0xff, 0xff, 0xff,
                                 'J', 0x70, 0x11, 0x01, 0x00};
  ASSERT_EQ(w.b.len, sizeof ints);
  ASSERT(memcmp(pw_bytes(&w), ints, sizeof ints) == 0);
  dyn_reset(&w.b);
  pw_cstr(&w, "ab");
  static const uint8_t s1[] = {'U', 2, 'a', 'b', 'q', 0};
  ASSERT(memcmp(pw_bytes(&w), s1, sizeof s1) == 0 && w.b.len == sizeof s1);
  dyn_reset(&w.b);
  w.memo = 256;
  char big[300];
  memset(big, 'z', sizeof big);
  pw_str(&w, big, sizeof big);
  ASSERT_EQ(pw_bytes(&w)[0], 'T');
  ASSERT_EQ(pw_bytes(&w)[1] | pw_bytes(&w)[2] << 8, 300);
  ASSERT_EQ(pw_bytes(&w)[5 + 300], 'r'); /* LONG_BINPUT past 255 */
  ASSERT_EQ(pw_bytes(&w)[5 + 301], 0);
  ASSERT_EQ(pw_bytes(&w)[5 + 302], 1);
  /* 2001 ints: groups of 1000, 1000, then a single APPEND */
  dyn_reset(&w.b);
  w.memo = 0;
  int32_t v[2001] = {0};
  pw_list_ints(&w, v, 2001);
  size_t marks = 0, appends = 0, append1 = 0;
  for (size_t i = 0; i < w.b.len; i++) {
    if (pw_bytes(&w)[i] == PW_MARK) marks++;
    if (pw_bytes(&w)[i] == PW_APPENDS) appends++;
    if (pw_bytes(&w)[i] == PW_APPEND) append1++;
  }
  ASSERT_EQ(marks, 2);
  ASSERT_EQ(appends, 2);
  ASSERT_EQ(append1, 1);
  pw_free(&w);
  return 0;
}

/* ---- the producer/consumer ring of %download --extract and the inflater ---- */
typedef struct {
  ring_buf *r;
  int n;        /* slots to send */
  int swap;     /* every other slot by publish_swap */
  int close_how;
} ring_prod;

static void *ring_producer(void *arg) {
  ring_prod *p = arg;
  uint8_t *own = malloc(p->r->size);
  for (int i = 0; i < p->n; i++) {
    uint8_t *slot = ring_acquire(p->r, NULL, NULL);
    if (!slot) break;
    size_t n = 1 + (size_t)(i * 7) % p->r->size; /* lengths 1..size */
    if (p->swap && (i & 1)) {
      memset(own, i & 0xff, n);
      ring_publish_swap(p->r, &own, n);
    } else {
      memset(slot, i & 0xff, n);
      ring_publish(p->r, n);
    }
  }
  ring_close(p->r, p->close_how);
  free(own);
  return NULL;
}

static int ring_never(void *ud) { (void)ud; return 0; }
static int ring_always(void *ud) { (void)ud; return 1; }

TEST_IMPL(ring_order_end_error_stop) {
  /* every slot arrives, in order, with its bytes; then the end (0) or the error (-1) */
  for (int how = 1; how >= -1; how -= 2)
    for (int swap = 0; swap <= 1; swap++) {
      ring_buf r;
      ASSERT_EQ(ring_init(&r, 3, 64), 0);
      ring_prod p = {&r, 500, swap, how};
      pthread_t th;
      ASSERT_EQ(pthread_create(&th, NULL, ring_producer, &p), 0);
      for (int i = 0; i < 500; i++) {
        const void *b;
        ssize_t n = ring_take(&r, &b);
        ASSERT_EQ(n, (long long)(1 + (size_t)(i * 7) % 64));
        for (ssize_t k = 0; k < n; k++) ASSERT_EQ(((const uint8_t *)b)[k], i & 0xff);
      }
      const void *b;
      ASSERT_EQ(ring_take(&r, &b), how > 0 ? 0 : -1);
      ASSERT_EQ(ring_take(&r, &b), how > 0 ? 0 : -1); /* and stays so */
      pthread_join(th, NULL);
      ring_free(&r);
    }
  /* a consumer that stops wakes the producer waiting for room */
  ring_buf r;
  ASSERT_EQ(ring_init(&r, 2, 16), 0);
  ring_prod p = {&r, 1000000, 0, 1};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, ring_producer, &p), 0);
  const void *b;
  ASSERT(ring_take(&r, &b) > 0);
  ASSERT_EQ(ring_stop(&r), 1); /* it had not closed: it waits for room */
  pthread_join(th, NULL);         /* ... and is woken (NULL), then closes */
  ASSERT_EQ(ring_take(&r, &b), 0);
  ASSERT(ring_acquire(&r, NULL, NULL) == NULL);
  ring_free(&r);
  /* a full ring: acquire gives up when cancelled, keeps the slots otherwise */
  ASSERT_EQ(ring_init(&r, 2, 16), 0);
  ASSERT(ring_acquire(&r, ring_never, NULL) != NULL);
  ring_publish(&r, 1);
  ASSERT(ring_acquire(&r, ring_never, NULL) != NULL);
  ring_publish(&r, 2);
  ASSERT(ring_acquire(&r, ring_always, NULL) == NULL);
  ASSERT_EQ(ring_take(&r, &b), 1);
  ASSERT(ring_acquire(&r, ring_always, NULL) == NULL); /* the taken slot is still held */
  ASSERT_EQ(ring_take(&r, &b), 2);                     /* releases the first */
  ASSERT(ring_acquire(&r, ring_always, NULL) != NULL);
  ring_free(&r);
  /* bad sizes are refused */
  ASSERT_EQ(ring_init(&r, 1, 16), -1);
  ASSERT_EQ(ring_init(&r, RING_MAX + 1, 16), -1);
  ASSERT_EQ(ring_init(&r, 2, 0), -1);
  return 0;
}

/* The md5 the fused verify takes for a path: the last member of that name
 * (the one on disk), none for links, none for names not extracted; the
 * index follows members added after a lookup. */
TEST_IMPL(extract_member_md5_lookup) {
  dx_job j;
  memset(&j, 0, sizeof j);
  static const struct { const char *path, *hex; } m[] = {
      {"d/a", "11111111111111111111111111111111"}, {"d/b", "22222222222222222222222222222222"},
      {"d/a", "33333333333333333333333333333333"}, {"d/c", ""},
      {"d/b", ""},                                 {"d/aa", "44444444444444444444444444444444"}};
  j.members = calloc(16, sizeof *j.members);
  ASSERT(j.members);
  j.capmembers = 16;
  for (size_t i = 0; i < 6; i++) {
    j.members[i].path = strdup(m[i].path);
    snprintf(j.members[i].hex, sizeof j.members[i].hex, "%s", m[i].hex);
  }
  j.nmembers = 6;
  ASSERT_STR_EQ(dx_member_md5(&j, "d/a"), "33333333333333333333333333333333");
  ASSERT(dx_member_md5(&j, "d/b") == NULL); /* replaced by a link: hashed from the disk */
  ASSERT(dx_member_md5(&j, "d/c") == NULL);
  ASSERT_STR_EQ(dx_member_md5(&j, "d/aa"), "44444444444444444444444444444444");
  ASSERT(dx_member_md5(&j, "d") == NULL);
  ASSERT(dx_member_md5(&j, "d/zz") == NULL);
  ASSERT(dx_member_md5(&j, "") == NULL);
  j.members[6].path = strdup("d/a");
  snprintf(j.members[6].hex, sizeof j.members[6].hex, "55555555555555555555555555555555");
  j.nmembers = 7;
  ASSERT_STR_EQ(dx_member_md5(&j, "d/a"), "55555555555555555555555555555555");
  dx_job_free(&j);
  return 0;
}

/* A resumed answer: only exactly the rest of the same file is taken. */
#include "data/download.h"
static int answer(const char *headers, unsigned long long from, long long total, const char *etag,
                  const char *lastmod, char *why, size_t cap) {
  dl_answer a;
  memset(&a, 0, sizeof a);
  int ended = 0;
  for (const char *p = headers; *p;) { /* lines as curl hands them over, "\r\n" included */
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
    ended = dl__answer_line(&a, p, n);
    p += n;
  }
  ASSERT(ended);
  dl_resource r = {.total = total};
  snprintf(r.etag, sizeof r.etag, "%s", etag);
  snprintf(r.lastmod, sizeof r.lastmod, "%s", lastmod);
  return dl__check_answer(&a, from, &r, why, cap);
}

TEST_IMPL(download_resumed_answer_checks) {
  static const struct {
    const char *headers;
    unsigned long long from;
    long long total;
    const char *etag;
    int verdict;
    const char *why;
  } rows[] = {
      {"HTTP/1.1 206 Partial\r\nContent-Range: bytes 500-999/1000\r\nContent-Length: 500\r\n"
       "ETag: \"v1\"\r\n\r\n", 500, 1000, "\"v1\"", DL_TAKE, ""},
      {"HTTP/1.1 206 Partial\r\ncontent-range: bytes 500-999/1000\r\n\r\n", 500, -1, "", DL_TAKE, ""},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 0, -1, "", DL_TAKE, ""},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 500, 1000, "", DL_WHOLE, ""},
      {"HTTP/1.1 206 P\r\nContent-Range: bytes 0-999/1000\r\n\r\n", 500, 1000, "", DL_RESTART,
       "(it starts at byte 0, not at 500)"},
      {"HTTP/1.1 206 P\r\nContent-Range: bytes 600-999/1000\r\n\r\n", 500, 1000, "", DL_RESTART,
       "(it starts at byte 600, not at 500)"},
      {"HTTP/1.1 206 P\r\nContent-Range: bytes 500-1999/2000\r\n\r\n", 500, 1000, "", DL_RESTART,
       "the file is 2000 bytes long, the first answer's was 1000: another file"},
      {"HTTP/1.1 206 P\r\nContent-Range: bytes 500-799/1000\r\n\r\n", 500, 1000, "", DL_RESTART,
       "it ends at byte 799, not at the last byte, 999"},
      {"HTTP/1.1 206 P\r\nContent-Range: bytes 500-490/1000\r\n\r\n", 500, 1000, "", DL_RESTART,
       "it ends before it starts"},
      {"HTTP/1.1 206 P\r\nContent-Range: bytes 500-999/1000\r\nContent-Length: 1500\r\n\r\n", 500, 1000,
       "", DL_RESTART, "its Content-Length 1500 is not the 500 bytes of that range"},
      {"HTTP/1.1 206 P\r\nContent-Range: bytes 500-999/1000\r\nETag: \"v2\"\r\n\r\n", 500, 1000,
       "\"v1\"", DL_RESTART, "its ETag \"v2\" is not the first answer's \"v1\": another file"},
      {"HTTP/1.1 206 P\r\nContent-Range: bytes 500-999/*\r\n\r\n", 500, 1000, "", DL_RESTART,
       "it does not say the file's length"},
      {"HTTP/1.1 206 P\r\nContent-Range: items 1-2/3\r\n\r\n", 500, 1000, "", DL_RESTART,
       "no range that can be checked"},
      {"HTTP/1.1 206 P\r\n\r\n", 500, 1000, "", DL_RESTART, "Content-Range none (no range"},
      {"HTTP/1.1 206 P\r\nContent-Range: bytes 0-9/10\r\n\r\n", 0, -1, "", DL_FAIL,
       "asked for the whole file and the server answered 206"},
      {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 P\r\nContent-Range: bytes 500-999/1000\r\n\r\n", 500,
       1000, "", DL_TAKE, ""},
  };
  char why[600];
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    int v = answer(rows[i].headers, rows[i].from, rows[i].total, rows[i].etag, "", why, sizeof why);
    if (v != rows[i].verdict) fprintf(stderr, "row %zu: verdict %d, expected %d (%s)\n", i, v, rows[i].verdict, why);
    ASSERT_EQ(v, rows[i].verdict);
    ASSERT_CONTAINS(why, rows[i].why);
  }
  /* If-Range: a strong ETag, else Last-Modified, else none */
  dl_resource r = {.total = 1};
  ASSERT(dl__if_range(&r) == NULL);
  snprintf(r.etag, sizeof r.etag, "W/\"weak\"");
  ASSERT(dl__if_range(&r) == NULL);
  snprintf(r.lastmod, sizeof r.lastmod, "Wed, 21 Oct 2015 07:28:00 GMT");
  ASSERT_STR_EQ(dl__if_range(&r), "Wed, 21 Oct 2015 07:28:00 GMT");
  snprintf(r.etag, sizeof r.etag, "\"v1\"");
  ASSERT_STR_EQ(dl__if_range(&r), "\"v1\"");
  /* the Last-Modified is the validator when there is no ETag */
  ASSERT_EQ(answer("HTTP/1.1 206 P\r\nContent-Range: bytes 5-9/10\r\nLast-Modified: Thu\r\n\r\n", 5, 10,
                   "", "Wed", why, sizeof why), DL_RESTART);
  ASSERT_CONTAINS(why, "its Last-Modified Thu is not the first answer's Wed");
  return 0;
}
