/*
 * cnn_emu_test.h -- the CUDA emulation's self-tests (test_cuda_emu.cc), for
 * test_cnn.c.
 */
#ifndef PK_CNN_EMU_TEST_H
#define PK_CNN_EMU_TEST_H

#include <stddef.h>

/* Runs self-test WHAT ("blocks", "async", "errors"): 0, or -1 with msg. */
int cnn_emu_selftest(const char *what, char *msg, size_t cap);

/* Runs a faulty kernel WHAT ("divergent": a thread skips a __syncthreads;
 * "host-pointer": a kernel argument in host memory): the emulation aborts
 * the process, so a return means it missed the fault. */
void cnn_emu_fault(const char *what);

#endif
