/*
 * cache.h -- where a stage's input lives: the page cache and the file system.
 *
 * A stage that reads files keeps one pc_stats. Right after it opens a file
 * (or, through pc_prepare_path, for each of its files before its clock
 * starts) it calls pc_prepare(), which
 *  - counts how many of the file's bytes were resident in the page cache
 *    when the stage found it (mincore over a mapping that faults nothing);
 *  - with --cold, drops them first (fdatasync, then
 *    posix_fadvise(POSIX_FADV_DONTNEED)) and counts what is still resident
 *    afterwards: a file system that keeps its pages anyway (tmpfs, some
 *    network file systems) shows up as a drop that had no effect, and
 *    pc_report says so;
 *  - advises sequential reading (the kernel's read-ahead window doubled), so
 *    a cold read still runs at the device's speed.
 * pc_note_fs() names the file system the data is read from: the statfs type
 * and the mount's source from /proc/self/mountinfo ("ext4 /dev/vda",
 * "nfs4 host:/export", "tmpfs tmpfs"). pc_timing_add() records the stage's
 * timing with both (st_timing.cache, .fs, .resident).
 *
 * pc_prepare may be called from any thread (the counters are atomic);
 * pc_note_fs, pc_report and pc_timing_add only from the stage thread.
 */
#ifndef PK_CACHE_H
#define PK_CACHE_H

#include <stdatomic.h>
#include <stdint.h>

#include "stage.h"

typedef struct pc_stats {
  int cold;                        /* --cold: drop each file's pages before reading it */
  atomic_ullong files;             /* files prepared */
  atomic_ullong bytes;             /* their sizes */
  atomic_ullong resident_found;    /* bytes resident when the stage opened them */
  atomic_ullong resident_read;     /* bytes resident when the read began (after any drop) */
  atomic_ullong unmeasured;        /* bytes mincore could not be asked about */
  char fs[160];                    /* "ext4 /dev/vda"; "" until pc_note_fs */
} pc_stats;

/* The --cold option row every reading stage lists. */
#define PC_COLD_OPTION \
  {"cold", 0, NULL, "drop the input's pages from the page cache before reading it (and say how much was cached)"}

void pc_init(pc_stats *s, int cold);

/* The file open as fd (size bytes, read from the start) is about to be
 * read: measures, drops (cold), advises. Never fails the read: what cannot
 * be measured is counted as such. */
void pc_prepare(pc_stats *s, int fd, uint64_t size);

/* pc_prepare on the regular file at path (opened O_NONBLOCK and closed
 * again; anything else is left for the stage's own open to report): for a
 * stage that prepares its files before its clock starts, so that writing
 * out dirty pages is not counted as reading. */
void pc_prepare_path(pc_stats *s, const char *path);

/* Bytes of fd's first `size` bytes resident in the page cache now; -1 when
 * mincore cannot tell (the file cannot be mapped). */
long long pc_resident(int fd, uint64_t size);

/* Drops fd's pages from the page cache (fdatasync, then
 * POSIX_FADV_DONTNEED over the whole file). 0, or -1 with errno. */
int pc_drop(int fd);

/* "TYPE SOURCE" of the file system path lies on into out ("?" parts where
 * statfs or mountinfo cannot tell). Returns 0, -1 when path cannot be
 * statted. */
int pc_fs_describe(const char *path, char *out, size_t cap);
/* The statfs type name of a magic number ("ext2/3/4", "xfs", "tmpfs",
 * "nfs", "fuse", ...), or NULL when unknown. */
const char *pc_fs_type_name(unsigned long magic);

/* Sets s->fs from the data's path (a file or the folder the files are in);
 * a second call keeps the first answer. */
void pc_note_fs(pc_stats *s, const char *path);

/* Fraction of the bytes read that were resident when their read began, in
 * [0, 1]; -1 when nothing was measured. */
double pc_resident_fraction(const pc_stats *s);
/* "cold" when under half the bytes read were resident when read, "warm"
 * otherwise, "" when nothing was prepared. */
const char *pc_cache_word(const pc_stats *s);

/* The stage's cache line: with --cold, how much was cached, what the drop
 * left, and (when it left most of it) that this file system ignores the
 * hint, so the figures that follow are page-cache figures. Without --cold,
 * nothing. `what` names the stage ("md5"). */
void pc_report(st_ctx *c, const char *what, const pc_stats *s);

/* st_timing_add with the record's cache, fs and resident fields from s. */
void pc_timing_add(st_ctx *c, const pc_stats *s, const char *stage, const char *magic,
                   double seconds, uint64_t bytes, uint64_t items, const char *backend,
                   const char *hash);

#endif
