/*
 * cli.h -- the shell front end: `pipekernel run CELL...` runs magics through
 * the same registry as the kernel, with progress on the terminal.
 */
#ifndef PK_CLI_H
#define PK_CLI_H

int cli_main(int argc, char **argv);

#endif
