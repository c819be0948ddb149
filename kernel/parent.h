/*
 * parent.h -- the orphan rule: the kernel exits when the process that
 * started it is gone.
 *
 * That process is JPY_PARENT_PID when it is set (every Jupyter client sets
 * it to its own pid), else the kernel's parent process. JPY_PARENT_PID=0 or
 * 1 turns the watch off (a kernel meant to outlive its launcher). "Gone"
 * is: the watched process has exited (a pidfd on Linux, else kill(pid, 0)),
 * or it was the kernel's parent and the kernel was re-parented (getppid()
 * changed: Linux's parent-death case, whoever the new parent is).
 */
#ifndef PK_PARENT_H
#define PK_PARENT_H

#include <stddef.h>
#include <sys/types.h>

typedef struct pk_parent {
  pid_t pid;       /* the process watched; 0: none */
  int direct;      /* it was getppid() when the watch began */
  int pidfd;       /* readable once it exits; -1 when unavailable */
} pk_parent;

/* Begins the watch (call it first thing: a parent already gone counts). */
void parent_watch(pk_parent *p);
/* 1 when the watched process is gone, with its pid in why; else 0. */
int parent_gone(const pk_parent *p, char *why, size_t cap);
void parent_unwatch(pk_parent *p);

#endif
