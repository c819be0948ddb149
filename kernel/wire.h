/*
 * wire.h -- the Jupyter wire format: frames around "<IDS|MSG>", the HMAC
 * signature over the exact received bytes, message headers. Knows no
 * sockets: the server hands it frames and sends what it builds.
 */
#ifndef PK_WIRE_H
#define PK_WIRE_H

#include <stddef.h>

#include <jansson.h>

#define WIRE_PROTOCOL_VERSION "5.3"
#define WIRE_DELIM "<IDS|MSG>"

/* A borrowed frame. */
typedef struct wire_frame {
  const void *p;
  size_t len;
} wire_frame;

/* An owned frame (malloc'd). */
typedef struct wire_buf {
  unsigned char *p;
  size_t len;
} wire_buf;

/* A parsed message. Owns everything; free with wire_msg_free. */
typedef struct wire_msg {
  wire_buf *idents;      /* routing identities (frames before the delimiter) */
  size_t n_idents;
  json_t *header, *parent, *metadata, *content;
  const char *msg_type;  /* borrowed from header */
  const char *msg_id;    /* borrowed from header */
  size_t oversize;       /* WIRE_OVERSIZE: the bytes of all frames; else 0 */
} wire_msg;

#define WIRE_OVERSIZE 1  /* wire_parse: verified, but over PK_LIMIT_MSG_BYTES */

/* The signing key: raw bytes of the connection file's `key`, and the digest
 * named by signature_scheme ("SHA256"). An empty key signs nothing. */
typedef struct wire_key {
  const char *key;
  size_t len;
  const char *digest;
} wire_key;

/* Lowercase hex HMAC over the four frames in order into hex (room for
 * 2 * EVP_MAX_MD_SIZE + 1). Returns the hex length (0 for an empty key),
 * or -1 when the digest is unknown or OpenSSL fails. */
int wire_sign(const wire_key *k, const wire_frame f[4], char *hex, size_t cap);

/* Splits and verifies a received message: at most PK_LIMIT_MSG_FRAMES frames,
 * a delimiter, signature, header, parent, metadata and content (extra buffer
 * frames are ignored), a signature of the right length that matches in
 * constant time, four JSON objects, a header with string msg_type and
 * msg_id. Returns 0, or -1 with the reason in why.
 *
 * A message over PK_LIMIT_MSG_BYTES (all frames together) whose signature
 * matches is not read further, so that it can still be answered: it returns
 * WIRE_OVERSIZE with the identities, header and parent in *out, metadata and
 * content empty objects, out->oversize its size, and the size and the limit
 * in why; -1 when its header or parent frame is itself over
 * PK_LIMIT_CELL_BYTES. */
int wire_parse(const wire_frame *frames, size_t n, const wire_key *k, wire_msg *out,
               char *why, size_t cap);
void wire_msg_free(wire_msg *m);

/* A new header: msg_id (uuid4), session, username, date, msg_type, version.
 * Returns a new reference or NULL. */
json_t *wire_header_new(const char *msg_type, const char *session);

/* Frames to send: the identities (or the iopub topic), the delimiter, the
 * signature, and the four JSON parts dumped compact. The json arguments are
 * borrowed. Returns 0 or -1; free the frames with wire_frames_free. */
int wire_build(const wire_buf *idents, size_t n_idents, json_t *header, json_t *parent,
               json_t *metadata, json_t *content, const wire_key *k, wire_buf **frames,
               size_t *n);
void wire_frames_free(wire_buf *frames, size_t n);

/* A fresh lowercase uuid4 (37 bytes with the NUL). */
void wire_new_id(char out[37]);
/* Now as ISO-8601 UTC with microseconds: 2026-01-01T12:00:00.000000Z. */
void wire_now_iso(char *out, size_t cap);
/* A header date (ISO 8601: YYYY-MM-DD[T ]HH:MM:SS, optional fraction, then
 * Z, +HH:MM, -HH:MM, +HHMM or nothing for UTC) as microseconds since the
 * epoch. Returns 0, or -1 when s is not such a date. */
int wire_date_us(const char *s, long long *us);

#endif
