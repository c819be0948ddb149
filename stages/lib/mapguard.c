/*
 * mapguard.c -- see mapguard.h.
 *
 * The SIGBUS handler is installed once. It looks at this thread's guard
 * only (a thread-local pointer: the signal is delivered to the thread whose
 * read faulted), maps anonymous zero pages over the lost part of the range
 * with MAP_FIXED (a plain system call, safe in a handler on Linux), records
 * the address and returns, so the faulting read runs again and finds zeros.
 */
#include "mapguard.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static _Thread_local mapguard *volatile tl_guard;
static struct sigaction g_prev;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_ok;
static uintptr_t g_page = 4096;

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
  mapguard *g = tl_guard;
  const char *a = si ? (const char *)si->si_addr : NULL;
  if (g && a && a >= g->lo && a < g->hi) {
    /* the faulting page lies wholly past the end of the file, and so does
     * every page after it: replace them all up to the end of the range */
    uintptr_t from = (uintptr_t)a & ~(g_page - 1);
    uintptr_t to = ((uintptr_t)g->hi + g_page - 1) & ~(g_page - 1);
    void *r = mmap((void *)from, to - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (r != MAP_FAILED) {
      if (!g->lost || a < g->lost) g->lost = a;
      return;
    }
  }
  if ((g_prev.sa_flags & SA_SIGINFO) && g_prev.sa_sigaction)
    g_prev.sa_sigaction(sig, si, uc);
  else if (g_prev.sa_handler != SIG_DFL && g_prev.sa_handler != SIG_IGN)
    g_prev.sa_handler(sig);
  else
    signal(SIGBUS, SIG_DFL); /* the read faults again and ends the process, as it would have */
}

static void install(void) {
  long pg = sysconf(_SC_PAGESIZE);
  if (pg > 0) g_page = (uintptr_t)pg;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  g_ok = sigaction(SIGBUS, &sa, &g_prev) == 0;
}

int mapguard_begin(mapguard *g, const void *p, size_t len) {
  pthread_once(&g_once, install);
  g->lo = p;
  g->hi = (const char *)p + len;
  g->lost = NULL;
  if (!g_ok) return -1;
  tl_guard = g;
  return 0;
}

int mapguard_end(mapguard *g, size_t *lost_off) {
  if (tl_guard == g) tl_guard = NULL;
  if (!g->lost) return 0;
  if (lost_off) *lost_off = (size_t)(g->lost - g->lo);
  return -1;
}
