/*
 * safepath.c -- relative paths checked and walked below a root (safepath.h).
 */
#include "safepath.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"

int sp_check_rel(const char *rel, int max_depth, const char **why) {
  const char *w = NULL;
  int depth = 0;
  if (!rel[0]) w = "an empty path";
  else if (rel[0] == '/') w = "an absolute path";
  for (const char *s = rel; !w && *s;) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 0) w = "an empty component ('//' or a trailing '/')";
    else if (n == 1 && s[0] == '.') w = "a '.' component";
    else if (n == 2 && s[0] == '.' && s[1] == '.') w = "a '..' component";
    else if (++depth > max_depth) w = "too many components";
    if (!e) break;
    s = e + 1;
    if (!*s) w = "an empty component ('//' or a trailing '/')";
  }
  if (why) *why = w;
  return w ? -1 : 0;
}

int sp_open_parent(int root, char *rel, const char **leaf, int mk,
                   void (*made)(void *ud, const char *rel, size_t len), void *ud) {
  int fd = dup(root);
  if (fd < 0) return -1;
  char *s = rel;
  for (;;) {
    char *e = strchr(s, '/');
    if (!e) break;
    *e = 0;
    if (mk) {
      if (mkdirat(fd, s, 0755) == 0) {
        if (made) made(ud, rel, (size_t)(e - rel));
      } else if (errno != EEXIST) {
        int er = errno;
        *e = '/';
        close(fd);
        errno = er;
        return -1;
      }
    }
    int nfd = openat(fd, s, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int er = errno;
    *e = '/';
    close(fd);
    if (nfd < 0) {
      errno = er;
      return -1;
    }
    fd = nfd;
    s = e + 1;
  }
  *leaf = s;
  return fd;
}

int sp_link_stays(const char *rel, const char *target) {
  if (!*target || target[0] == '/') return 0;
  int depth = 0, down = 0;
  for (const char *p = rel; *p; p++) depth += *p == '/';
  const char *s = target;
  while (*s) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 2 && s[0] == '.' && s[1] == '.') {
      if (down || --depth < 0) return 0;
    } else if (n && !(n == 1 && s[0] == '.')) {
      down = 1;
    }
    if (!e) break;
    s = e + 1;
  }
  return 1;
}

#define SP_MAX_LINKS 40 /* symlinks followed for one path, as the kernel's own limit */

/* Ends sp_open_below without a descriptor: closes dfd, says why. */
static int sp_fail(sp_found *f, int dfd, int status, int err) {
  if (dfd >= 0) close(dfd);
  f->status = status;
  f->err = err;
  return -1;
}

/* Opens the folder pos below root again (pos: real folders, "" the root). */
static int sp_reopen(int root, const char *pos) {
  if (!*pos) return openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  char buf[SP_PATH_MAX + 2];
  snprintf(buf, sizeof buf, "%s/.", pos);
  const char *leaf;
  return sp_open_parent(root, buf, &leaf, 0, NULL, NULL);
}

int sp_open_below(int root, const char *rel, unsigned want, sp_found *f) {
  memset(f, 0, sizeof *f);
  char rest[SP_PATH_MAX], pos[SP_PATH_MAX] = "";
  if ((size_t)snprintf(rest, sizeof rest, "%s", rel) >= sizeof rest) return sp_fail(f, -1, SP_ERROR, ENAMETOOLONG);
  int dfd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return sp_fail(f, -1, SP_ERROR, errno);
  int links = 0;
  size_t off = 0;
  for (;;) {
    const char *s = rest + off;
    while (*s == '/') s++;
    if (!*s) { /* nothing left: the folder reached is what rel names */
      if (fstat(dfd, &f->st)) return sp_fail(f, dfd, SP_ERROR, errno);
      if (!(want & FIO_DIR)) return sp_fail(f, dfd, SP_OTHER, 0);
      return dfd;
    }
    size_t n = strcspn(s, "/");
    char name[256];
    if (n >= sizeof name) return sp_fail(f, dfd, SP_ERROR, ENAMETOOLONG);
    memcpy(name, s, n);
    name[n] = 0;
    const char *after = s + n;
    while (*after == '/') after++;
    off = (size_t)(after - rest);
    int last = !*after;
    if (!strcmp(name, ".")) continue;
    if (!strcmp(name, "..")) { /* only from a link target that sp_link_stays allowed */
      if (!pos[0]) return sp_fail(f, dfd, SP_ERROR, EPERM);
      char *sl = strrchr(pos, '/');
      *(sl ? sl : pos) = 0;
      close(dfd);
      dfd = sp_reopen(root, pos);
      if (dfd < 0) return sp_fail(f, -1, SP_ERROR, errno);
      continue;
    }
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW)) {
      int e = errno;
      return sp_fail(f, dfd, e == ENOENT ? SP_MISSING : SP_ERROR, e);
    }
    if (S_ISLNK(st.st_mode)) {
      char target[SP_PATH_MAX];
      ssize_t tl = readlinkat(dfd, name, target, sizeof target - 1);
      if (tl < 0) return sp_fail(f, dfd, SP_ERROR, errno);
      if ((size_t)tl >= sizeof target - 1 || ++links > SP_MAX_LINKS)
        return sp_fail(f, dfd, SP_ERROR, (size_t)tl >= sizeof target - 1 ? ENAMETOOLONG : ELOOP);
      target[tl] = 0;
      if ((size_t)snprintf(f->link, sizeof f->link, "%s%s%s", pos, *pos ? "/" : "", name) >= sizeof f->link)
        return sp_fail(f, dfd, SP_ERROR, ENAMETOOLONG);
      if (!sp_link_stays(f->link, target)) {
        snprintf(f->target, sizeof f->target, "%s", target);
        return sp_fail(f, dfd, SP_OUTSIDE, 0);
      }
      f->link[0] = 0;
      char next[SP_PATH_MAX];
      if ((size_t)snprintf(next, sizeof next, "%s%s%s", target, *after ? "/" : "", after) >= sizeof next)
        return sp_fail(f, dfd, SP_ERROR, ENAMETOOLONG);
      memcpy(rest, next, strlen(next) + 1);
      off = 0; /* the target, from the link's folder (pos) */
      continue;
    }
    if (!last) {
      if (!S_ISDIR(st.st_mode)) return sp_fail(f, dfd, SP_MISSING, ENOTDIR);
      size_t pl = strlen(pos);
      if (pl + n + 2 > sizeof pos) return sp_fail(f, dfd, SP_ERROR, ENAMETOOLONG);
      int nfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      int e = errno;
      close(dfd);
      if (nfd < 0) return sp_fail(f, -1, SP_ERROR, e);
      dfd = nfd;
      snprintf(pos + pl, sizeof pos - pl, "%s%s", pl ? "/" : "", name);
      continue;
    }
    if (!fio_is(st.st_mode, want)) { /* a FIFO, a device ...: never opened */
      f->st = st;
      return sp_fail(f, dfd, SP_OTHER, 0);
    }
    int fd = fio_openat_raw(dfd, name, O_RDONLY | O_NOFOLLOW | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0), 0,
                            &f->st);
    int e = errno;
    close(dfd);
    if (fd < 0) return sp_fail(f, -1, e == ENOENT ? SP_MISSING : SP_ERROR, e);
    if (f->st.st_dev != st.st_dev || f->st.st_ino != st.st_ino || !fio_is(f->st.st_mode, want)) {
      close(fd); /* replaced between the look and the open */
      return sp_fail(f, -1, fio_is(f->st.st_mode, want) ? SP_ERROR : SP_OTHER, ESTALE);
    }
    return fd;
  }
}
