/*
 * cnn_int.h -- shared between the trainer core files and its tests.
 */
#ifndef PK_CNN_INT_H
#define PK_CNN_INT_H

#include "cnn.h"

/* Gradient (batch mean) and loss of the CPU backend for the bound images
 * idx[0..n-1], without updating anything. */
int cnn_cpu_grad(void *st, const uint32_t *idx, int n, float *grad, float *loss);

/* Switches the CPU kernels to "generic", "avx2" or "avx512" (tests): 0,
 * or -1 when this CPU lacks it or the name is unknown. Not while a step
 * or an evaluation runs. */
int cnn_cpu_use_isa(const char *name);

/* cnn_cuda.cu compiled as host C++ under cnn_cuda_emu.h: its kernels run
 * on the CPU. Linked into the trainer's tests only. */
const cnn_backend *cnn_cuda_emu_backend(void);

/* 0 when a step may take idx[0..n-1]: 0 < n <= max, every index below
 * n_bound and its label a class; else -1. Both backends check with it. */
int cnn_batch_check(const uint8_t *labels, size_t n_bound, const uint32_t *idx, int n, int max);

/* Formats msg like snprintf (never NULL-terminated beyond cap). */
void cnn_msg(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
