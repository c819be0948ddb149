/*
 * sigv4.h -- AWS Signature Version 4 as a chain of small functions.
 *
 *   canonical URI  -> canonical query -> canonical headers + signed headers
 *   -> canonical request -> string to sign -> signing key -> signature
 *   -> Authorization header
 *
 * Every step is a pure function of its inputs (OpenSSL EVP/HMAC SHA-256), so
 * each can be checked alone against the AWS test suite and botocore.
 * Returned strings are malloc'd (NULL only when out of memory).
 *
 * Paths. S3 signs the object path as sent on the wire: the raw key is
 * percent-encoded ONCE ('/' kept) and neither normalised nor encoded again
 * (SIGV4_S3). Every other service normalises the path (dot segments, repeated
 * slashes) and encodes the path as sent once more (SIGV4_GENERIC, the AWS test
 * suite's rules).
 */
#ifndef PK_SIGV4_H
#define PK_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum sigv4_path_rules { SIGV4_S3 = 0, SIGV4_GENERIC = 1 };

typedef struct sigv4_kv {
  const char *name;
  const char *value;
} sigv4_kv;

/* SHA-256 of an empty payload. */
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* RFC 3986 percent-encoding: A-Z a-z 0-9 - . _ ~ stay, all else %XX
 * (uppercase). keep_slash: '/' stays (paths). */
char *sigv4_uri_encode(const char *s, size_t len, int keep_slash);
/* Decodes %XX (for parsing queries given encoded); invalid escapes stay. */
char *sigv4_uri_decode(const char *s, size_t len);

/* The canonical URI of a path ("" -> "/"). rules: SIGV4_S3 or SIGV4_GENERIC. */
char *sigv4_canonical_uri(const char *path, int rules);
/* name=value pairs (raw, unencoded): encoded, sorted by name then value,
 * joined with '&'. A NULL value is "". */
char *sigv4_canonical_query(const sigv4_kv *q, size_t n);
/* "name:value\n" per header: names lowercased, values trimmed with inner
 * runs of spaces collapsed, sorted by name, repeated names joined with ','
 * in their original order. */
char *sigv4_canonical_headers(const sigv4_kv *h, size_t n);
/* The lowercased names, sorted, unique, joined with ';'. */
char *sigv4_signed_headers(const sigv4_kv *h, size_t n);
char *sigv4_canonical_request(const char *method, const char *canonical_uri,
                              const char *canonical_query,
                              const char *canonical_headers,
                              const char *signed_headers, const char *payload_sha256);
/* "20150830/us-east-1/service/aws4_request" (date = YYYYMMDD). */
char *sigv4_scope(const char *date8, const char *region, const char *service);
char *sigv4_string_to_sign(const char *amz_date, const char *scope,
                           const char *canonical_request);
/* kSigning = HMAC chain over "AWS4"+secret, date, region, service. */
int sigv4_signing_key(const char *secret, const char *date8, const char *region,
                      const char *service, uint8_t key[32]);
/* Lowercase hex HMAC-SHA256(key, string_to_sign). */
int sigv4_signature(const uint8_t key[32], const char *string_to_sign, char hex[65]);
char *sigv4_authorization(const char *access_key, const char *scope,
                          const char *signed_headers, const char *signature);

/* Helpers. */
int sigv4_sha256_hex(const void *data, size_t len, char hex[65]);
/* "20150830T123600Z" and "20150830" from a UTC time. */
void sigv4_amz_date(time_t t, char out[17]);

/* The whole chain for one request; intermediate results kept for tests and
 * diagnostics (they never hold the secret). */
typedef struct sigv4_request {
  const char *method;
  const char *path;          /* see the rules above */
  int rules;                 /* SIGV4_S3 or SIGV4_GENERIC */
  const sigv4_kv *query;     /* raw pairs */
  size_t nquery;
  const sigv4_kv *headers;   /* all headers to sign, host and x-amz-date included */
  size_t nheaders;
  const char *payload_sha256;/* hex, or "UNSIGNED-PAYLOAD" */
  const char *amz_date;      /* "YYYYMMDDTHHMMSSZ" (the x-amz-date header) */
  const char *region;
  const char *service;       /* "s3" */
} sigv4_request;

typedef struct sigv4_result {
  char *canonical_uri, *canonical_query, *canonical_headers, *signed_headers;
  char *canonical_request, *scope, *string_to_sign, *authorization;
  char signature[65];
} sigv4_result;

/* 0 or -1 (out of memory / bad date). */
int sigv4_sign(const sigv4_request *r, const char *access_key, const char *secret,
               sigv4_result *out);
void sigv4_result_free(sigv4_result *r);

#endif
