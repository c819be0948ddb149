/*
 * conn.c -- the connection file (jupyter_client/connect.py writes it).
 * Unknown keys are ignored; a missing port or a bad value is an error that
 * names the key.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "conn.h"

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

int conn_load(const char *path, pk_conn *c, char *why, size_t cap) {
  memset(c, 0, sizeof *c);
  json_error_t jerr;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
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
