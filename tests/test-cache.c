/*
 * test-cache.c -- stages/lib/cache.h: what is resident in the page cache,
 * the drop of --cold, and the file system a path lies on.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/cache.h"
#include "task.h"

/* A file of `size` bytes in dir, written, synced and read back once (so
 * every page is cached); returns its fd, open for reading. */
static int cached_file(const char *dir, char *path, size_t cap, size_t size) {
  snprintf(path, cap, "%s/pk-cache-test.%ld", dir, (long)getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  char *buf = malloc(1 << 20);
  for (size_t i = 0; i < (1 << 20); i++) buf[i] = (char)(i * 31 + 7);
  for (size_t done = 0; done < size; done += 1 << 20)
    if (write(fd, buf, size - done < (1 << 20) ? size - done : 1 << 20) < 0) break;
  fsync(fd);
  for (off_t o = 0; pread(fd, buf, 1 << 20, o) > 0; o += 1 << 20) {
  }
  free(buf);
  return fd;
}

/* On a disk file system the drop leaves nothing resident (what the read
 * of a --cold stage then starts from); on tmpfs the pages stay, and the
 * stats say so: the read is "warm". */
TEST_IMPL(cache_drop_and_resident) {
  const char *dirs[] = {"/tmp", "/dev/shm"};
  for (int k = 0; k < 2; k++) {
    struct stat st;
    if (stat(dirs[k], &st) != 0) continue;
    char fs[160];
    ASSERT_EQ(pc_fs_describe(dirs[k], fs, sizeof fs), 0);
    int tmpfs = strncmp(fs, "tmpfs", 5) == 0;
    char path[256];
    size_t size = (8u << 20) + 1234; /* a partial last page */
    int fd = cached_file(dirs[k], path, sizeof path, size);
    ASSERT(fd >= 0);
    ASSERT_EQ(pc_resident(fd, size), (long long)size);
    pc_stats s;
    pc_init(&s, 1);
    pc_note_fs(&s, path);
    ASSERT_STR_EQ(s.fs, fs);
    pc_prepare(&s, fd, size);
    ASSERT_EQ(s.files, 1);
    ASSERT_EQ(s.bytes, size);
    ASSERT_EQ(s.resident_found, size);
    long long left = pc_resident(fd, size);
    if (tmpfs) {
      ASSERT_EQ(left, (long long)size);
      ASSERT_STR_EQ(pc_cache_word(&s), "warm");
    } else {
      ASSERT(left < (long long)size / 100); /* a page the kernel is still reading back, at most */
      ASSERT_STR_EQ(pc_cache_word(&s), "cold");
      ASSERT(pc_resident_fraction(&s) < 0.01);
    }
    /* without --cold nothing is dropped, only measured */
    char buf[4096];
    ASSERT(pread(fd, buf, sizeof buf, 0) > 0);
    pc_stats w;
    pc_init(&w, 0);
    long long before = pc_resident(fd, size);
    pc_prepare(&w, fd, size);
    ASSERT_EQ(pc_resident(fd, size), before);
    ASSERT_EQ(w.resident_read, (unsigned long long)before);
    close(fd);
    unlink(path);
  }
  pc_stats none;
  pc_init(&none, 0);
  ASSERT_STR_EQ(pc_cache_word(&none), "");
  ASSERT(pc_resident_fraction(&none) < 0);
  return 0;
}

/* The file system of a path: the statfs type named as mountinfo names it,
 * and the mount's source. */
TEST_IMPL(cache_fs_describe) {
  char fs[160];
  ASSERT_EQ(pc_fs_describe("/proc/self", fs, sizeof fs), 0);
  ASSERT_STR_EQ(fs, "proc proc");
  ASSERT_EQ(pc_fs_describe("/", fs, sizeof fs), 0);
  ASSERT(strchr(fs, ' ') && fs[0] != '?');
  ASSERT(pc_fs_describe("/nonexistent/x", fs, sizeof fs) < 0);
  struct stat st;
  if (stat("/dev/shm", &st) == 0) {
    ASSERT_EQ(pc_fs_describe("/dev/shm", fs, sizeof fs), 0);
    ASSERT_CONTAINS(fs, "tmpfs");
  }
  ASSERT_STR_EQ(pc_fs_type_name(0xEF53), "ext2/3/4");
  ASSERT_STR_EQ(pc_fs_type_name(0x01021994), "tmpfs");
  ASSERT(pc_fs_type_name(0x12345) == NULL);
  return 0;
}
