/*
 * conn.c -- the connection file (jupyter_client/connect.py writes it).
 * Unknown keys are ignored; a missing port or a bad value is an error that
 * names the key.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "conn.h"
#include "lib/limits.h"

static const char *const port_keys[CONN__COUNT] = {"shell_port", "iopub_port", "stdin_port",
                                                    "control_port", "hb_port"};

const char *conn_channel_name(int channel) {
  static const char *const names[CONN__COUNT] = {"shell", "iopub", "stdin", "control", "hb"};
  return channel >= 0 && channel < CONN__COUNT ? names[channel] : "?";
}

static int fail(char *why, size_t cap, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *why, size_t cap, const char *path, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(why, cap, "connection file %s: %s", path, msg);
  return -1;
}

static int copy_str(json_t *root, const char *key, const char *dflt, char *out, size_t cap,
                    const char *path, char *why, size_t wcap) {
  json_t *v = json_object_get(root, key);
  if (!v || json_is_null(v)) {
    if (!dflt) return fail(why, wcap, path, "missing key \"%s\"", key);
    snprintf(out, cap, "%s", dflt);
    return 0;
  }
  if (!json_is_string(v)) return fail(why, wcap, path, "\"%s\" must be a string", key);
  if (json_string_length(v) >= cap) return fail(why, wcap, path, "\"%s\" is too long", key);
  if (strlen(json_string_value(v)) != json_string_length(v))
    return fail(why, wcap, path, "\"%s\" contains a NUL byte", key);
  memcpy(out, json_string_value(v), json_string_length(v) + 1);
  return 0;
}

/* The file's bytes: opened without blocking (a FIFO named as the connection
 * file must not hang the start), a regular file of at most
 * PK_LIMIT_CONN_FILE_BYTES. */
static char *read_conn_file(const char *path, size_t *len, char *why, size_t cap) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    fail(why, cap, path, "cannot open: %s", strerror(errno));
    return NULL;
  }
  struct stat sb;
  char *buf = NULL;
  if (fstat(fd, &sb) != 0) fail(why, cap, path, "cannot stat: %s", strerror(errno));
  else if (!S_ISREG(sb.st_mode)) fail(why, cap, path, "not a regular file");
  else if ((uint64_t)sb.st_size > PK_LIMIT_CONN_FILE_BYTES)
    fail(why, cap, path, "%lld bytes, more than the %u a connection file may have",
         (long long)sb.st_size, (unsigned)PK_LIMIT_CONN_FILE_BYTES);
  else {
    buf = malloc(PK_LIMIT_CONN_FILE_BYTES + 1);
    if (!buf) fail(why, cap, path, "out of memory");
  }
  size_t n = 0;
  while (buf) {
    ssize_t k = read(fd, buf + n, PK_LIMIT_CONN_FILE_BYTES + 1 - n);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      fail(why, cap, path, "cannot read: %s", strerror(errno));
      free(buf);
      buf = NULL;
    } else if (k == 0) {
      break;
    } else if (n + (size_t)k > PK_LIMIT_CONN_FILE_BYTES) {
      fail(why, cap, path, "grew past the %u bytes a connection file may have",
           (unsigned)PK_LIMIT_CONN_FILE_BYTES);
      free(buf);
      buf = NULL;
    } else {
      n += (size_t)k;
    }
  }
  close(fd);
  *len = n;
  return buf;
}

int conn_load(const char *path, pk_conn *c, char *why, size_t cap) {
  memset(c, 0, sizeof *c);
  size_t len = 0;
  char *text = read_conn_file(path, &len, why, cap);
  if (!text) return -1;
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  free(text);
  if (!root) {
    snprintf(why, cap, "connection file %s: %s (line %d, column %d)", path, jerr.text,
             jerr.line, jerr.column);
    return -1;
  }
  int rc = 0;
  if (!json_is_object(root)) rc = fail(why, cap, path, "expected a JSON object");
  if (!rc) rc = copy_str(root, "transport", "tcp", c->transport, sizeof c->transport, path, why, cap);
  if (!rc && strcmp(c->transport, "tcp") != 0 && strcmp(c->transport, "ipc") != 0)
    rc = fail(why, cap, path, "transport must be \"tcp\" or \"ipc\", not \"%s\"", c->transport);
  if (!rc) rc = copy_str(root, "ip", "127.0.0.1", c->ip, sizeof c->ip, path, why, cap);
  if (!rc && !c->ip[0]) rc = fail(why, cap, path, "\"%s\" is empty", "ip");
  for (int i = 0; !rc && i < CONN__COUNT; i++) {
    json_t *v = json_object_get(root, port_keys[i]);
    if (!v) rc = fail(why, cap, path, "missing key \"%s\"", port_keys[i]);
    else if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 65535)
      rc = fail(why, cap, path, "\"%s\" must be a port number 1..65535", port_keys[i]);
    else c->port[i] = (int)json_integer_value(v);
  }
  if (!rc) rc = copy_str(root, "key", "", c->key, sizeof c->key, path, why, cap);
  if (!rc) c->key_len = strlen(c->key);
  char scheme[64];
  if (!rc) rc = copy_str(root, "signature_scheme", "hmac-sha256", scheme, sizeof scheme, path, why, cap);
  if (!rc) {
    if (strncmp(scheme, "hmac-", 5) != 0 || !scheme[5] || strlen(scheme + 5) >= sizeof c->digest) {
      rc = fail(why, cap, path, "signature_scheme \"%s\" is not hmac-<digest>", scheme);
    } else {
      size_t i = 0;
      for (; scheme[5 + i]; i++) c->digest[i] = (char)toupper((unsigned char)scheme[5 + i]);
      c->digest[i] = 0;
    }
  }
  if (!rc) rc = copy_str(root, "kernel_name", "", c->kernel_name, sizeof c->kernel_name, path, why, cap);
  json_decref(root);
  return rc;
}

void conn_endpoint(const pk_conn *c, int channel, char *buf, size_t cap) {
  if (strcmp(c->transport, "ipc") == 0)
    snprintf(buf, cap, "ipc://%s-%d", c->ip, c->port[channel]);
  else
    snprintf(buf, cap, "tcp://%s:%d", c->ip, c->port[channel]);
}
