/*
 * safepath.h -- relative paths from outside (archive members, S3 keys,
 * manifest lines) checked, and walked below a root folder without
 * following a symlink, so nothing they name can lie outside the root.
 */
#ifndef PK_SAFEPATH_H
#define PK_SAFEPATH_H

#include <stddef.h>
#include <sys/stat.h>

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

/* The one rule for symlinks below a root, which %extract (creating them)
 * and %verify (following them) share: the link at rel (its path below the
 * root) may lead to target when target is relative, starts with at most
 * as many ".." as the link's folder is deep, and has no ".." after its
 * first other component. The link's folder is a real folder, so the
 * leading ".." resolve as written, and the rest only goes down, through
 * folders or links that obey the same rule: where it leads stays inside
 * the root whatever the other links are ("a/../../x" with "a" a link to
 * "." would escape: it is refused). 1 when it may, else 0. */
int sp_link_stays(const char *rel, const char *target);

/* What sp_open_below found at a path. */
enum sp_status {
  SP_FOUND = 0,  /* opened: the descriptor is returned, st describes it */
  SP_MISSING,    /* a component is not there, or a file is on the way (err) */
  SP_OUTSIDE,    /* a symlink on the way leads out of the root (link, target) */
  SP_OTHER,      /* there, but not what was wanted (st says what it is) */
  SP_ERROR       /* it could not be looked at or opened (err: an errno) */
};

#define SP_PATH_MAX 4096

typedef struct sp_found {
  int status;                 /* enum sp_status */
  int err;                    /* an errno for SP_MISSING and SP_ERROR */
  struct stat st;             /* SP_FOUND, SP_OTHER: what is there */
  char link[SP_PATH_MAX];     /* SP_OUTSIDE: the link, below the root */
  char target[SP_PATH_MAX];   /* ... and what it points at */
} sp_found;

/* Opens rel (a path sp_check_rel accepts, or "" for the root itself)
 * below the open folder `root`, read-only, one component at a time: every
 * component is looked at with fstatat(AT_SYMLINK_NOFOLLOW) before anything
 * is opened, folders are entered with O_NOFOLLOW, a symlink is followed
 * only when sp_link_stays allows it (at most 40 of them), and the last
 * component is opened only when it is of a kind in want (FIO_FILE, FIO_DIR
 * of stages/lib/fileio.h), without blocking (fio_openat_raw) and checked
 * to be what was looked at. Nothing outside the root is ever opened or
 * read. Returns the descriptor (f->status SP_FOUND), or -1 with f saying
 * why. */
int sp_open_below(int root, const char *rel, unsigned want, sp_found *f);

#endif
