/*
 * fileio.c -- opening the files a user names without blocking (fileio.h).
 */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *fio_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISLNK(mode)) return "a symlink";
  return "a file of unknown type";
}

int fio_is(mode_t mode, unsigned want) {
  return ((want & FIO_FILE) && S_ISREG(mode)) || ((want & FIO_DIR) && S_ISDIR(mode)) ||
         ((want & FIO_FIFO) && S_ISFIFO(mode));
}

int fio_openat_raw(int dirfd, const char *name, int flags, mode_t mode, struct stat *st) {
  memset(st, 0, sizeof *st);
  int fd = openat(dirfd, name, flags | O_NONBLOCK | O_CLOEXEC, mode ? mode : 0644);
  if (fd < 0) {
    int e = errno;
    struct stat there;
    /* what refused to open without a peer, or is not the folder asked
     * for: say what it is */
    if ((e == ENXIO || (e == ENOTDIR && (flags & O_DIRECTORY))) &&
        fstatat(dirfd, name, &there, flags & O_NOFOLLOW ? AT_SYMLINK_NOFOLLOW : 0) == 0)
      st->st_mode = there.st_mode;
    errno = e;
    return -1;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fstat(fd, st) != 0 || fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    int e = errno;
    close(fd);
    memset(st, 0, sizeof *st);
    errno = e;
    return -1;
  }
  return fd;
}

static const char *want_name(unsigned want) {
  return want == FIO_DIR ? "a folder" : want == (FIO_FILE | FIO_DIR) ? "a regular file or a folder"
         : want & FIO_FIFO ? "a regular file or a FIFO" : "a regular file";
}

int fio_openat(int dirfd, const char *name, const char *shown, int flags, mode_t mode,
               unsigned want, const char *what, struct stat *st, st_error *err) {
  struct stat own;
  if (!st) st = &own;
  const char *w = what ? what : "the file";
  int fd = fio_openat_raw(dirfd, name, flags, mode, st);
  if (fd < 0 && (errno == ENXIO || errno == ENOTDIR) && st->st_mode && !fio_is(st->st_mode, want))
    return st_error_set(err, ST_EINVAL, shown, -1, "%s is %s, not %s", w, fio_kind(st->st_mode),
                        want_name(want));
  if (fd < 0) {
    int e = errno;
    char why[96]; /* "cannot open" alone for a file that needs no name */
    snprintf(why, sizeof why, "cannot open%s%s", what ? " " : "", what ? what : "");
    return st_error_errno(err, e, shown, why);
  }
  if (!fio_is(st->st_mode, want)) {
    close(fd);
    return st_error_set(err, ST_EINVAL, shown, -1, "%s is %s, not %s", w, fio_kind(st->st_mode),
                        want_name(want));
  }
  int fl = fcntl(fd, F_GETFL);
  if (S_ISFIFO(st->st_mode) && (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)) {
    int e = errno; /* a pipe is only ever read with fio_read_wait */
    close(fd);
    return st_error_errno(err, e, shown, "cannot make the FIFO non-blocking");
  }
  return fd;
}

int fio_open(const char *path, int flags, unsigned want, const char *what, struct stat *st,
             st_error *err) {
  return fio_openat(AT_FDCWD, path, path, flags, 0, want, what, st, err);
}

int fio_read_all(const char *path, size_t max, const char *limit, const char *what, char **out,
                 size_t *len, st_error *err) {
  *out = NULL;
  *len = 0;
  struct stat st;
  int fd = fio_open(path, O_RDONLY, FIO_FILE, what, &st, err);
  if (fd < 0) return fd;
  if ((unsigned long long)st.st_size > max) {
    close(fd);
    return st_error_set(err, ST_E2BIG, path, -1, "%s is %lld bytes; the limit is %zu (%s)",
                        what ? what : "the file", (long long)st.st_size, max, limit);
  }
  size_t size = (size_t)st.st_size;
  char *buf = malloc(size + 1);
  if (!buf) {
    close(fd);
    return st_error_set(err, ST_ENOMEM, path, -1, "out of memory");
  }
  size_t got = 0;
  int rc = 0;
  while (got < size) { /* a file that shrinks meanwhile is read as it is now */
    ssize_t k = read(fd, buf + got, size - got);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      rc = st_error_errno(err, errno, path, "read failed");
      break;
    }
    if (k == 0) break;
    got += (size_t)k;
  }
  close(fd);
  if (rc) {
    free(buf);
    return rc;
  }
  buf[got] = 0;
  *out = buf;
  *len = got;
  return 0;
}

ssize_t fio_read_wait(int fd, void *buf, size_t n, int (*stop)(void *ud), void *ud) {
  for (;;) {
    if (stop && stop(ud)) {
      errno = ECANCELED;
      return -1;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, 100);
    if (r < 0 && errno != EINTR) return -1;
    if (r <= 0) continue;
    ssize_t k = read(fd, buf, n);
    if (k >= 0 || (errno != EAGAIN && errno != EINTR)) return k;
  }
}

FILE *fio_fopen_write(const char *path, const char *what, st_error *err) {
  int fd = fio_open(path, O_WRONLY | O_CREAT | O_TRUNC, FIO_FILE, what, NULL, err);
  if (fd < 0) return NULL;
  FILE *f = fdopen(fd, "w");
  if (!f) {
    int e = errno;
    close(fd);
    st_error_errno(err, e, path, "cannot open");
  }
  return f;
}
