/*
 * conn.h -- the Jupyter connection file: transport, address, the five
 * ports, the signing key and scheme.
 */
#ifndef PK_CONN_H
#define PK_CONN_H

#include <stddef.h>

enum conn_channel { CONN_SHELL, CONN_IOPUB, CONN_STDIN, CONN_CONTROL, CONN_HB, CONN__COUNT };

#define CONN_KEY_MAX 1024

typedef struct pk_conn {
  char transport[8];        /* "tcp" or "ipc" */
  char ip[256];             /* tcp: an address; ipc: a path prefix */
  int port[CONN__COUNT];
  char key[CONN_KEY_MAX + 1]; /* used as raw bytes; "" = no signing */
  size_t key_len;
  char digest[32];          /* OpenSSL digest name from signature_scheme: "SHA256" */
  char kernel_name[128];
} pk_conn;

/* Reads and checks a connection file. Returns 0, or -1 with a message that
 * names the file and the key at fault in why (never the key's value). */
int conn_load(const char *path, pk_conn *c, char *why, size_t cap);

/* "tcp://127.0.0.1:5555" or "ipc://kernel-ipc-5555" into buf. */
void conn_endpoint(const pk_conn *c, int channel, char *buf, size_t cap);

/* "shell", "iopub", ... */
const char *conn_channel_name(int channel);

#endif
