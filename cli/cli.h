/*
 * cli.h -- the shell front end: `pipekernel run CELL...` runs magics through
 * the same registry as the kernel, with progress on the terminal;
 * `pipekernel help [--markdown] [NAME]` prints the registry's help.
 */
#ifndef PK_CLI_H
#define PK_CLI_H

int cli_main(int argc, char **argv);      /* argv[0] is "run" */
int cli_help_main(int argc, char **argv); /* argv[0] is "help" */
/* The magic reference (docs/magics.md) as Markdown, malloc'd; NULL when
 * out of memory. */
char *cli_help_markdown(void);

#endif
