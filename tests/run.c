/*
 * run.c -- the C test runner. Every test runs in its own forked process
 * under a timeout. Output is TAP, closing with "N passed, N failed, N skipped".
 *
 *   test-runner            run all
 *   test-runner NAME...    run the named tests
 *   test-runner --list     list the names
 *
 * PK_TEST_TIMEOUT_MULTIPLIER=N (a whole number, default 1) multiplies every
 * test's timeout: `make check` sets it for the sanitizer build, where
 * everything runs several times slower.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "task.h"
#include "test-list.h"

#define XX(name, timeout) int run_test_##name(void);
TEST_LIST(XX)
#undef XX

typedef struct {
  const char *name;
  int (*fn)(void);
  int timeout;
} test_entry;

static const test_entry tests[] = {
#define XX(name, timeout) {#name, run_test_##name, timeout},
    TEST_LIST(XX)
#undef XX
    {NULL, NULL, 0}};

static unsigned g_multiplier = 1;

/* PK_TEST_TIMEOUT_MULTIPLIER, or 1 when unset; 0 when it is not a whole
 * number from 1 to 1000. */
static unsigned timeout_multiplier(void) {
  const char *s = getenv("PK_TEST_TIMEOUT_MULTIPLIER");
  if (!s || !*s) return 1;
  char *end;
  errno = 0;
  unsigned long m = strtoul(s, &end, 10);
  if (errno || *end || s[0] == '-' || m < 1 || m > 1000) return 0;
  return (unsigned)m;
}

static int run_one(const test_entry *t, char *why, size_t cap) {
  unsigned timeout = (unsigned)t->timeout * g_multiplier;
  int pipefd[2];
  if (pipe(pipefd) != 0) return 1;
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    close(pipefd[0]);
    dup2(pipefd[1], 2);
    setpgid(0, 0);
    alarm(timeout);
    int rc = t->fn();
    fflush(NULL);
    _exit(rc);
  }
  close(pipefd[1]);
  /* collect stderr (last part kept) */
  size_t len = 0;
  char buf[4096];
  ssize_t n;
  why[0] = 0;
  for (;;) {
    n = read(pipefd[0], buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; i++) {
      if (len + 1 >= cap) { memmove(why, why + cap / 2, cap / 2); len -= cap / 2; }
      why[len++] = buf[i];
    }
  }
  why[len] = 0;
  close(pipefd[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0) {}
  kill(-pid, SIGKILL); /* anything the test left behind */
  if (WIFSIGNALED(status)) {
    if (WTERMSIG(status) == SIGALRM) {
      snprintf(why + len, cap - len, "timed out after %u s", timeout);
    } else {
      snprintf(why + len, cap - len, "killed by signal %d", WTERMSIG(status));
    }
    return 1;
  }
  int code = WEXITSTATUS(status);
  return code == 0 ? 0 : code == TEST_SKIP ? TEST_SKIP : 1;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--list") == 0) {
    for (const test_entry *t = tests; t->name; t++) printf("%s\n", t->name);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    const test_entry *t = tests;
    while (t->name && strcmp(argv[i], t->name)) t++;
    if (!t->name) {
      fprintf(stderr, "no test named \"%s\" (--list shows them)\n", argv[i]);
      return 2;
    }
  }
  g_multiplier = timeout_multiplier();
  if (!g_multiplier) {
    fprintf(stderr, "PK_TEST_TIMEOUT_MULTIPLIER=%s: expected a whole number from 1 to 1000\n",
            getenv("PK_TEST_TIMEOUT_MULTIPLIER"));
    return 2;
  }
  size_t total = 0;
  for (const test_entry *t = tests; t->name; t++) {
    int selected = argc == 1;
    for (int i = 1; i < argc; i++) selected |= strcmp(argv[i], t->name) == 0;
    total += (size_t)selected;
  }
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("1..%zu\n", total);
  if (g_multiplier != 1)
    printf("# timeouts multiplied by %u (PK_TEST_TIMEOUT_MULTIPLIER)\n", g_multiplier);
  size_t n = 0, passed = 0, failed = 0, skipped = 0;
  static char why[8192];
  for (const test_entry *t = tests; t->name; t++) {
    int selected = argc == 1;
    for (int i = 1; i < argc; i++) selected |= strcmp(argv[i], t->name) == 0;
    if (!selected) continue;
    n++;
    int rc = run_one(t, why, sizeof why);
    if (rc == 0) {
      passed++;
      printf("ok %zu - %s\n", n, t->name);
    } else if (rc == TEST_SKIP) {
      skipped++;
      char *nl = strchr(why, '\n');
      if (nl) *nl = 0;
      printf("ok %zu - %s # SKIP %s\n", n, t->name, why);
    } else {
      failed++;
      printf("not ok %zu - %s\n# %s\n", n, t->name, why);
    }
  }
  printf("c-tests: %zu passed, %zu failed, %zu skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}
