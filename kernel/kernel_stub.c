/* Placeholder until the protocol layer lands. */
#include <stdio.h>
#include "kernel.h"
int kernel_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "pipekernel: kernel not built yet\n");
  return 2;
}
