/*
 * server.h -- sockets, threads and signals of the kernel process.
 */
#ifndef PK_SERVER_H
#define PK_SERVER_H

#include "core.h"

/* Binds every socket of k->conn, starts the threads, serves shell on the
 * calling thread until shutdown, then closes everything. Returns the exit
 * status. */
int server_run(pk_kernel *k);

#endif
