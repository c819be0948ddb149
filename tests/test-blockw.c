/*
 * test-blockw.c -- lib/blockw.h: blocks written past the page cache by
 * threads of their own, the fallback where O_DIRECT is refused, and a
 * failure kept by its stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/blockw.h"
#include "lib/cache.h"
#include "task.h"

#define BS (64u * 1024u)

static uint8_t byte_at(uint64_t off) { return (uint8_t)(off * 2654435761u >> 13); }

TEST_IMPL(blockw_writes_and_errors) {
  char path[] = "/tmp/pk-blockw-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  int dio = open(self, O_WRONLY | O_DIRECT | O_CLOEXEC);
  if (dio < 0) {
    close(fd);
    unlink(path);
    fprintf(stderr, "skip: /tmp does not take O_DIRECT\n");
    return TEST_SKIP;
  }
  blockw w;
  ASSERT_EQ(blockw_open(&w, 2, 4, BS, 4096), 0);
  blockw_stream s = {0};
  /* 64 blocks out of order (more than the writer holds: blockw_get waits) */
  int nb = 64;
  for (int k = 0; k < nb; k++) {
    int i = (k * 37) % nb;
    uint8_t *b = blockw_get(&w);
    for (size_t j = 0; j < BS; j++) b[j] = byte_at((uint64_t)i * BS + j);
    blockw_put(&w, &s, b, BS, dio, fd, (uint64_t)i * BS);
  }
  ASSERT_EQ(blockw_wait(&w, &s), 0);
  ASSERT_EQ(s.pending, 0);
  size_t size = (size_t)nb * BS;
  /* past the page cache: none of it is resident */
  ASSERT(pc_resident(fd, size) < (long long)size / 100);
  /* a block that O_DIRECT refuses (a length off the alignment) goes through
   * the other descriptor */
  uint8_t *b = blockw_get(&w);
  for (size_t j = 0; j < 1000; j++) b[j] = byte_at(size + j);
  blockw_put(&w, &s, b, 1000, dio, fd, size);
  ASSERT_EQ(blockw_wait(&w, &s), 0);
  uint8_t *back = malloc(size + 1000);
  ASSERT(back);
  ASSERT_EQ(pread(fd, back, size + 1000, 0), (long long)(size + 1000));
  for (size_t j = 0; j < size + 1000; j++)
    if (back[j] != byte_at(j)) ASSERT_EQ(j, -1);
  free(back);
  /* a failed write is kept by its stream, and by no other */
  blockw_stream bad = {0}, good = {0};
  blockw_put(&w, &bad, blockw_get(&w), BS, -1, -1, 0);
  blockw_put(&w, &good, blockw_get(&w), BS, dio, fd, 0);
  ASSERT_EQ(blockw_wait(&w, &bad), EBADF);
  ASSERT_EQ(blockw_failed(&w, &bad), EBADF);
  ASSERT_EQ(blockw_wait(&w, &good), 0);
  blockw_reset(&bad);
  ASSERT_EQ(blockw_failed(&w, &bad), 0);
  /* a block taken and given back unwritten, and what is queued at the
   * close is written */
  blockw_drop(&w, blockw_get(&w));
  b = blockw_get(&w);
  memset(b, 0xab, BS);
  blockw_put(&w, &s, b, BS, dio, fd, size + BS);
  blockw_close(&w);
  uint8_t last[BS];
  ASSERT_EQ(pread(fd, last, BS, (off_t)(size + BS)), (long long)BS);
  for (size_t j = 0; j < BS; j++) ASSERT_EQ(last[j], 0xab);
  close(dio);
  close(fd);
  unlink(path);
  return 0;
}
