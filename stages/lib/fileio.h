/*
 * fileio.h -- opening the files a user names without ever blocking on one.
 *
 * open(2) of a FIFO waits for a writer (for a reader, when opened to
 * write), and of some devices for a carrier; a stage thread that waits
 * there never sees an interrupt, so the cell and every cell after it hang
 * until the kernel is restarted. Every stage opens what a user or a file
 * from outside names through this module: the open adds O_NONBLOCK (which
 * makes those opens return at once) and O_CLOEXEC, fstat says what was
 * opened, anything but what is wanted is refused, naming what it is ("a
 * FIFO", "a socket", "a character device", "a folder", ...), and only then
 * is O_NONBLOCK cleared again, so reads and writes behave as usual.
 * Errors are ST_E* codes with an st_error naming the path.
 */
#ifndef PK_FILEIO_H
#define PK_FILEIO_H

#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "stage.h"

/* What an open accepts (any of them: FIO_FILE | FIO_DIR). FIO_FIFO is for
 * the one reader that takes a pipe (%extract): the FIFO stays
 * non-blocking, and is read with fio_read_wait. */
enum { FIO_FILE = 1, FIO_DIR = 2, FIO_FIFO = 4 };

/* "a regular file", "a folder", "a FIFO", "a socket", "a character
 * device", "a block device", "a symlink", or "a file of unknown type". */
const char *fio_kind(mode_t mode);
/* Nonzero when mode is one of want. */
int fio_is(mode_t mode, unsigned want);

/* The one open: openat(dirfd, name, flags | O_NONBLOCK | O_CLOEXEC, mode),
 * fstat into *st, O_NONBLOCK cleared. Returns the descriptor, or -1 with
 * errno; there is no check of the type here (the caller looks at *st).
 * When the open fails with ENXIO (a FIFO opened to write with no reader,
 * a socket) or, with O_DIRECTORY, ENOTDIR, st->st_mode is what is there,
 * else 0 after a failure. */
int fio_openat_raw(int dirfd, const char *name, int flags, mode_t mode, struct stat *st);

/* fio_openat_raw, then the type check: returns the descriptor, or a
 * negative ST_E* code with err set, naming `shown` (the path the user
 * knows) and `what` ("the manifest", "the CA bundle"; NULL: "cannot open"
 * and "the file is ..."):
 *   "cannot open the manifest: No such file or directory"
 *   "the manifest is a FIFO, not a regular file"               (ST_EINVAL)
 * mode is used with O_CREAT (0644 when 0). st may be NULL. */
int fio_openat(int dirfd, const char *name, const char *shown, int flags, mode_t mode,
               unsigned want, const char *what, struct stat *st, st_error *err);
/* fio_openat relative to the working folder; path names itself. */
int fio_open(const char *path, int flags, unsigned want, const char *what, struct stat *st,
             st_error *err);

/* Reads the whole regular file at path (at most max bytes; a larger one is
 * ST_E2BIG naming `limit`, the limit's name) into a malloc'd buffer *out,
 * NUL-terminated (not counted in *len). 0 or an ST_E* code. */
int fio_read_all(const char *path, size_t max, const char *limit, const char *what, char **out,
                 size_t *len, st_error *err);

/* Reads up to n bytes of a non-blocking descriptor (a FIFO from fio_open
 * with FIO_FIFO), waiting for them in steps of 100 ms: every step asks
 * stop(ud) (may be NULL), and a nonzero answer ends the wait (-1, errno
 * ECANCELED). Returns what read(2) returns otherwise (0: the writer closed
 * it); EINTR is retried. */
ssize_t fio_read_wait(int fd, void *buf, size_t n, int (*stop)(void *ud), void *ud);

/* A stdio stream on the regular file at path, created or truncated (mode
 * "w" or "wb"), opened as fio_open opens. NULL with err set. */
FILE *fio_fopen_write(const char *path, const char *what, st_error *err);

#endif
