/*
 * kernel.h -- entry point of the Jupyter kernel.
 */
#ifndef PK_KERNEL_H
#define PK_KERNEL_H

/* `pipekernel -f CONNECTION_FILE`; returns the process exit status. */
int kernel_main(int argc, char **argv);

#endif
