/*
 * parent.c -- the orphan rule (parent.h).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "parent.h"

void parent_watch(pk_parent *p) {
  memset(p, 0, sizeof *p);
  p->pidfd = -1;
  pid_t ppid = getppid();
  const char *env = getenv("JPY_PARENT_PID");
  if (env && *env) {
    char *end;
    errno = 0;
    long v = strtol(env, &end, 10);
    if (errno || *end || v <= 1 || v != (pid_t)v) return; /* 0, 1 or not a pid: no watch */
    p->pid = (pid_t)v;
  } else {
    if (ppid <= 1) return; /* started by init: nothing to watch */
    p->pid = ppid;
  }
  p->direct = p->pid == ppid;
#ifdef SYS_pidfd_open
  p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
  if (p->pidfd < 0) p->pidfd = -1;
#endif
}

int parent_gone(const pk_parent *p, char *why, size_t cap) {
  if (!p->pid) return 0;
  int gone = 0;
  if (p->direct && getppid() != p->pid) {
    gone = 1;
  } else if (p->pidfd >= 0) {
    struct pollfd fd = {p->pidfd, POLLIN, 0};
    gone = poll(&fd, 1, 0) > 0;
  } else {
    gone = kill(p->pid, 0) != 0 && errno == ESRCH;
  }
  if (gone) snprintf(why, cap, "the process that started the kernel (pid %d) is gone", (int)p->pid);
  return gone;
}

void parent_unwatch(pk_parent *p) {
  if (p->pidfd >= 0) close(p->pidfd);
  p->pidfd = -1;
  p->pid = 0;
}
