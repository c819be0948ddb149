/*
 * verify.h -- %verify: check every file of an md5sum manifest (stage 4,
 * "verify"), on all cores. Also the checking/reporting core that
 * %download --verify uses for the members it hashed while writing them.
 */
#ifndef PK_VERIFY_H
#define PK_VERIFY_H

#include "manifest.h"
#include "lib/stage.h"

int vf_verify(st_ctx *c, const st_args *a, st_error *err);
extern const st_option vf_verify_opts[];

/* Lookup of digests already known (path relative to root -> hex), e.g. the
 * members %download --extract hashed while writing; may be NULL. */
typedef const char *(*vf_known_fn)(void *ud, const char *path);

/* Check manifest `mf` against root with `jobs` threads (0: all cores),
 * using `known` first; reports a table of problems and a summary line,
 * records the "verify" timing. `manifest` names the manifest file (it is
 * never reported as extra). cold: drop each file's pages from the page
 * cache before hashing it (stages/lib/cache.h). Returns 0 or ST_ECHECKSUM /
 * ST_ECANCELED ... */
int vf_run(st_ctx *c, const char *manifest, mf_list *mf, const char *root, int jobs, int cold,
                  vf_known_fn known, void *ud, const char *backend, st_error *err);

#define VF_VERIFY_ROWS                                                                   \
  {"verify", vf_verify, 1, 1, ST_F_SLOW, "data", "%verify MANIFEST [--root DIR] [--jobs N] [--cold]", \
   "md5-check every file of an md5sum manifest (stage 4, \"verify\").",                \
   "MANIFEST is in md5sum format (\"<md5>  <relative path>\" per line, as md5sum and\n" \
   "%mkdata write it). Files are hashed by N worker threads (default: all cores),\n"   \
   "largest first, with OpenSSL EVP md5 straight from a read-only mapping (a file\n"  \
   "that shrinks meanwhile is reported, not fatal); progress counts bytes. Every\n"   \
   "missing, mismatching or unreadable file, and every extra file (a file in a\n"     \
   "folder the manifest covers that the manifest does not list) is reported by\n"     \
   "name in a table; any of them makes the stage fail with ChecksumError. Paths\n"  \
   "are walked from the root one folder at a time: a symlink is followed only when\n" \
   "it stays inside the root (the rule %extract makes links by); one that leads\n"   \
   "out is reported as \"outside\" and nothing behind it is read or listed. A\n"   \
   "folder, FIFO, socket or device in a file's place is unreadable, named as what\n" \
   "it is (a FIFO is never opened). --root defaults to the manifest's folder.\n"    \
   "Example:\n"                                                                       \
   "  %verify data/MANIFEST.md5 --root work",                                          \
   vf_verify_opts},

#endif
