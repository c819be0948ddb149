/*
 * kernel.c -- kernel_main: the command line, the connection file and the
 * signing key, the kernel's state, then the ZeroMQ server until shutdown.
 */
#include <stdio.h>
#include <string.h>

#include "conn.h"
#include "core.h"
#include "kernel.h"
#include "server.h"
#include "wire.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: pipekernel -f CONNECTION_FILE\n"
          "       pipekernel run [--quiet] [--display-dir DIR] CELL...\n\n"
          "The first form is the Jupyter kernel (started by a Jupyter client from the\n"
          "kernelspec); the second runs magics from a shell (`pipekernel run --help`).\n");
}

int kernel_main(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
      path = argv[++i];
    } else if (strncmp(argv[i], "--f=", 4) == 0) {
      path = argv[i] + 4;
    } else {
      fprintf(stderr, "pipekernel: unexpected argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (!path) {
    fprintf(stderr, "pipekernel: no connection file given\n");
    usage(stderr);
    return 2;
  }
  static pk_conn conn; /* zeroed; holds the key */
  static pk_kernel k;
  char why[1024];
  if (conn_load(path, &conn, why, sizeof why) != 0) {
    fprintf(stderr, "pipekernel: %s\n", why);
    return 2;
  }
  k.key = (wire_key){conn.key, conn.key_len, conn.digest};
  /* An unknown digest must fail now, not on the first message. */
  wire_frame empty[4] = {{"", 0}, {"", 0}, {"", 0}, {"", 0}};
  char hex[2 * 64 + 1];
  if (k.key.len && wire_sign(&k.key, empty, hex, sizeof hex) < 0) {
    fprintf(stderr, "pipekernel: connection file %s: signature_scheme digest '%s' is not "
            "supported by OpenSSL\n", path, conn.digest);
    return 2;
  }
  wire_new_id(k.session);
  k.sess = ss_session_new();
  if (!k.sess) {
    fprintf(stderr, "pipekernel: out of memory\n");
    return 1;
  }
  int status = server_run(&k, &conn);
  core_free(&k);
  ss_session_free(k.sess);
  return status;
}
