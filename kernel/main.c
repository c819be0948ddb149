/*
 * main.c -- `pipekernel -f CONNECTION_FILE` runs the Jupyter kernel;
 * `pipekernel run CELL...` runs magics from a shell and `pipekernel help`
 * prints their help (cli/).
 */
#include <stdio.h>
#include <string.h>

#include "../cli/cli.h"
#include "kernel.h"


int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "run") == 0) return cli_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "help") == 0) return cli_help_main(argc - 1, argv + 1);
  return kernel_main(argc, argv);
}
