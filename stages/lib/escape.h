/*
 * escape.h -- names from outside shown as text, never acted on.
 *
 * Archive members, manifest paths, S3 keys, URLs, class names and server
 * messages come from outside; printed raw, a newline in one forges an
 * output line ("verify: ... all OK") and an ESC sequence moves the cursor
 * or clears the terminal. Everything that shows such a name goes through
 * esc_text (or a helper below): st_error_set (stages/lib/error.c) escapes
 * every error's where and text, tbl_add (table.c) every cell and caption,
 * st_progress_begin (context.c) every progress label, the chart its
 * labels; the stages escape the names in the lines they print.
 *
 * What is escaped, and how:
 *   C0 control bytes (0x00-0x1f) and DEL (0x7f)     \xHH  (also newline, tab)
 *   bytes that are not part of valid UTF-8          \xHH
 *   C1 controls (U+0080-U+009F), the bidirectional  \uHHHH
 *   marks, embeddings, overrides and isolates (U+200E, U+200F,
 *   U+202A-U+202E, U+2066-U+2069) and the line and paragraph
 *   separators (U+2028, U+2029)
 * Everything else, backslash included, is shown as it is: the escaped text
 * never holds a byte that is escaped, so escaping twice changes nothing
 * (an error's text may be quoted into another error). A name that holds
 * the four characters "\x1b" therefore reads like one that held an ESC; it
 * can never act like one.
 */
#ifndef PK_ESCAPE_H
#define PK_ESCAPE_H

#include <stddef.h>

/* Writes s[0..n) escaped into out (cap > 0 bytes, always NUL-terminated);
 * an escape that does not fit whole is left out, and so is the rest.
 * Returns the bytes written (not counting the NUL). */
size_t esc_text(char *out, size_t cap, const char *s, size_t n);
/* Nonzero when s[0..n) holds something esc_text would escape. */
int esc_needed(const char *s, size_t n);
/* Escapes the string in buf (cap bytes) in place (through a copy when it
 * must grow; cut at cap like esc_text). */
void esc_inplace(char *buf, size_t cap);
/* A malloc'd escaped copy of s (NULL: out of memory). */
char *esc_dup(const char *s);

/* For a name in a printf-style line: esc_name(&b, name) returns name
 * escaped in b (longer names are cut, with "..." at the end). */
typedef struct esc_buf {
  char s[2048];
} esc_buf;
const char *esc_name(esc_buf *b, const char *s);

#endif
