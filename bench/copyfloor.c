/*
 * copyfloor.c -- the copy floor of %load: the least time to move the bytes
 * of the batch files from the page cache into fresh memory, with nothing
 * parsed or checked. Each FILE is mapped (read-only, private, read-ahead
 * advised) and copied whole into one anonymous mapping (huge pages
 * advised), one file at a time per thread on THREADS threads, as %load's
 * copy threads do. Prints the best seconds of REPEAT runs.
 *
 *   copyfloor THREADS REPEAT FILE...
 *
 * Built and run by bench/bench_load.py; not part of pipekernel.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  const char *path;
  size_t size, off;
} file;

static file *files;
static int nfiles;
static unsigned char *dst;
static atomic_int next_file;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    int i = atomic_fetch_add(&next_file, 1);
    if (i >= nfiles) return NULL;
    int fd = open(files[i].path, O_RDONLY);
    if (fd < 0) exit(1);
    void *m = mmap(NULL, files[i].size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) exit(1);
    madvise(m, files[i].size, MADV_WILLNEED);
    memcpy(dst + files[i].off, m, files[i].size);
    munmap(m, files[i].size);
  }
}

int main(int argc, char **argv) {
  if (argc < 4) return 64;
  int nt = atoi(argv[1]), rep = atoi(argv[2]);
  nfiles = argc - 3;
  files = calloc((size_t)nfiles, sizeof *files);
  size_t total = 0;
  for (int i = 0; i < nfiles; i++) {
    struct stat st;
    if (stat(argv[3 + i], &st)) return 1;
    files[i] = (file){argv[3 + i], (size_t)st.st_size, total};
    total += (size_t)st.st_size;
  }
  double best = 1e30;
  for (int r = 0; r < rep; r++) {
    double t0 = now();
    dst = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (dst == MAP_FAILED) return 1;
    madvise(dst, total, MADV_HUGEPAGE);
    atomic_store(&next_file, 0);
    pthread_t th[64];
    int k = nt < 64 ? nt : 64;
    for (int t = 0; t < k; t++) pthread_create(&th[t], NULL, worker, NULL);
    for (int t = 0; t < k; t++) pthread_join(th[t], NULL);
    double dt = now() - t0;
    munmap(dst, total);
    if (dt < best) best = dt;
  }
  printf("%.6f %zu\n", best, total);
  return 0;
}
