/*
 * safepath.h -- relative paths from outside (archive members, S3 keys,
 * manifest lines) checked, and walked below a root folder without
 * following a symlink, so nothing they name can lie outside the root.
 */
#ifndef PK_SAFEPATH_H
#define PK_SAFEPATH_H

#include <stddef.h>

/* 0 when rel is a path below a root: not empty, not absolute, no empty,
 * "." or ".." component, at most max_depth components. Else -1 and *why
 * ("an absolute path", "a '..' component", ...). */
int sp_check_rel(const char *rel, int max_depth, const char **why);

/* Opens the folder that holds rel (a checked relative path) below the open
 * folder `root`, one component at a time with O_NOFOLLOW, making the
 * missing ones when mk is set (made(ud, rel, len) is told of each folder
 * made: rel[0..len)). *leaf points at rel's last component. Returns a
 * dirfd, or -1 with errno set: ELOOP or ENOTDIR when a symlink or a file
 * is on the way. rel is restored before returning. */
int sp_open_parent(int root, char *rel, const char **leaf, int mk,
                   void (*made)(void *ud, const char *rel, size_t len), void *ud);

#endif
