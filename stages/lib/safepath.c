/*
 * safepath.c -- relative paths checked and walked below a root (safepath.h).
 */
#include "safepath.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
