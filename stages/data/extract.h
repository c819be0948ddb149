/*
 * extract.h -- %extract and the safe extractor that %download --extract
 * feeds while downloading.
 *
 * Members are written by the extractor itself (not archive_write_disk) so
 * that every file goes to a temporary name and is renamed when complete:
 * each path is walked from DIR with openat(O_NOFOLLOW), which refuses
 * absolute paths, ".." components and any write through a symlink (what
 * ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS / _NODOTDOT / _SYMLINKS guard in
 * libarchive's own writer). Symlinks are created only when their target
 * stays inside DIR; hard links only to files already extracted inside DIR;
 * device nodes, fifos and sockets are refused. gzip is inflated by ISA-L's
 * igzip on an inflater thread and the tar stream parsed by libarchive on the
 * thread of dx_run(); other formats and filters go through libarchive alone.
 */
#ifndef PK_EXTRACT_H
#define PK_EXTRACT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/limits.h"
#include "lib/stage.h"
#include "lib/strv.h"

#define DX__STR(x) #x
#define DX__XSTR(x) DX__STR(x)

int dx_extract(st_ctx *c, const st_args *a, st_error *err);
extern const st_option dx_extract_opts[];

/* A pull source of archive bytes: returns > 0 bytes at *buf, 0 at the end,
 * < 0 on error (the source has filled its own error). The bytes stay valid
 * until the next call. For gzip it is called from the inflater thread. */
typedef ssize_t (*dx_pull_fn)(void *ud, const void **buf);
/* An optional seek on the same source (a regular file): moves where the next
 * pull reads to the absolute offset, or to off from the end when from_end;
 * returns that offset, or -1 (the source has filled its own error). Formats
 * whose directory is at the end (zip's modes and links, 7-Zip) need it. */
typedef int64_t (*dx_seek_fn)(void *ud, int64_t off, int from_end);

#define DX_NO_RATIO UINT64_MAX

/* --max-ratio N of %extract and %download (0: no bound) into *ratio. */
int dx_ratio_opt(const st_args *a, uint64_t *ratio, st_error *err);

typedef struct dx_member {
  char *path;     /* relative to DIR */
  char hex[33];   /* md5 of a file's bytes ("" unless hashing, and for links) */
  char *old;      /* with undo: where what it replaced is kept (relative to DIR), or NULL */
} dx_member;

typedef struct dx_job {
  /* in */
  st_ctx *c;             /* for st_cancelled only: safe from any thread */
  const char *where;     /* archive name for errors */
  const char *dest;      /* DIR */
  dx_pull_fn pull;
  dx_seek_fn seek;       /* optional (not used for gzip, which is read in order) */
  void *ud;
  int inflater;          /* 0 auto (ISA-L for gzip), 1 ISA-L, 2 libarchive */
  int hash;              /* md5 each member as it is written */
  int undo;              /* keep what members replace until dx_commit or dx_rollback */
  /* The most bytes the members may hold per archive byte read, once past
   * PK_LIMIT_EXTRACT_RATIO_FREE of them (0: PK_LIMIT_EXTRACT_RATIO;
   * DX_NO_RATIO: no bound): gzip packs zeros up to 1030 to 1 (zlib level 1: 230), a
   * real dataset's tarball a few times at most. */
  uint64_t max_ratio;
  struct pc_stats *cache; /* where the archive is read from, for dx_report (may be NULL) */
  /* Optional: wakes a pull that waits for data once the extractor no longer
   * wants any (gzip is inflated on a thread of its own that calls pull). */
  void (*abort)(void *ud);
  /* Optional: called on the thread of dx_run() whenever the archive reader
   * asks for bytes, with in_bytes (e.g. to report progress). */
  void (*tick)(void *tick_ud, uint64_t in_bytes);
  void *tick_ud;
  /* out (atomics may be read by another thread while it runs) */
  atomic_uint_fast64_t in_bytes;   /* archive bytes consumed */
  atomic_uint_fast64_t out_bytes;  /* member bytes written */
  atomic_uint_fast64_t files;
  dx_member *members;      /* files and links written, in archive order */
  size_t nmembers, capmembers;
  strv dirs;            /* folders this run created (not those already there) */
  int made_dest;           /* DIR itself was created by this run */
  int needs_file;          /* dx_run stopped at once: the archive (zip, 7-Zip) keeps its
                              directory at the end and the source cannot seek; run it
                              again on the whole file (dx_extract_file) */
  uint64_t token;          /* names what undo keeps aside (random, made on first use) */
  int ended;               /* dx_commit or dx_rollback has run (the other does nothing) */
  size_t *index, nindex;   /* members sorted by path, for dx_member_md5 */
  char backend[32];
  st_error err;
} dx_job;

/* Runs the whole extraction (any thread); 0 or an ST_E* code in job->err. */
int dx_run(dx_job *j);
/* dx_run on the file at path (read with seeks), with a progress bar labelled
 * "extract NAME" on c; job's c, where, dest, inflater, hash and undo are set
 * by the caller, the source by this. 0 or an ST_E* code in job->err. */
int dx_extract_file(st_ctx *c, dx_job *j, const char *path, const char *name);
/* The summary line of a finished job that took dt seconds ("extract: SIZE, N
 * files[ into into] in T s (RATE[; note])") and its timing record. */
void dx_report(st_ctx *c, const dx_job *j, double dt, const char *into, const char *note);
/* The md5 of the file last written at path by the finished job (a later
 * member of the same name replaces an earlier one), or NULL. Not for use
 * while dx_run runs (it indexes the members on its first call). */
const char *dx_member_md5(dx_job *j, const char *path);
/* Removes what the finished job wrote (files and links, then the folders it
 * created, when empty) and, with undo, puts back what they replaced: for a
 * download whose bytes turned out wrong. Returns the number of files and
 * links removed. */
size_t dx_rollback(dx_job *j);
/* With undo: the job's output stays; what its members replaced is removed.
 * One of dx_commit and dx_rollback must follow dx_run when undo is set;
 * whichever comes first decides (the later call does nothing). */
void dx_commit(dx_job *j);
void dx_job_free(dx_job *j);

#define DX_EXTRACT_ROWS                                                                  \
  {"extract", dx_extract, 1, 1, ST_F_SLOW, "data",                                       \
   "%extract ARCHIVE --to DIR [--inflater auto|isal|libarchive] [--max-ratio N]",       \
   "Extract a tar/tar.gz (or anything libarchive reads) safely into DIR.",              \
   "Refuses absolute paths, \"..\", writes through symlinks, symlinks and hard links\n" \
   "leading out of DIR, device nodes, fifos and sockets; limits the member count and\n" \
   "total size (a member larger than the limit or the free space is refused before\n"  \
   "anything is written) and how much the archive expands: past 64 MiB, at most N\n"  \
   "bytes per archive byte (--max-ratio, default " DX__XSTR(PK_LIMIT_EXTRACT_RATIO) "; 0: no bound). Runs of zeros\n"  \
   "(4 KiB blocks) are written as holes. ARCHIVE is a regular file or a pipe.\n"      \
   "Each file is written under a temporary name and renamed\n"    \
   "when complete; an error or interrupt removes the partial file. gzip is inflated\n"  \
   "by ISA-L igzip on a thread of its own feeding libarchive's tar reader, so\n"        \
   "inflating overlaps writing (--inflater libarchive uses libarchive's zlib\n"         \
   "instead). Example: %extract data/cifar-10-python.tar.gz --to work",                 \
   dx_extract_opts},

#endif
