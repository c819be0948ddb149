/*
 * server.h -- the ZeroMQ transport: sockets, threads and signals of the
 * kernel process (server.c).
 */
#ifndef PK_SERVER_H
#define PK_SERVER_H

#include "conn.h"
#include "state.h"

/* Binds every socket of conn, points k->tr at the ZeroMQ transport, starts
 * the threads, serves shell on the calling thread until k->shutdown, then
 * closes everything (k->tr is NULL again). Returns the exit status. */
int server_run(pk_kernel *k, const pk_conn *conn);

#endif
