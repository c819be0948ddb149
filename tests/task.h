/*
 * task.h -- what a C test needs: TEST_IMPL, ASSERT*, RETURN_SKIP.
 * A test returns 0 (pass), TEST_SKIP (with a reason printed) or fails an
 * assertion (prints file:line and exits 1 in its own forked process).
 */
#ifndef PK_TASK_H
#define PK_TASK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_SKIP 77

#define TEST_IMPL(name) int run_test_##name(void); int run_test_##name(void)

#define ASSERT(expr)                                                          \
  do {                                                                        \
    if (!(expr)) {                                                            \
      fprintf(stderr, "Assertion failed in %s:%d: %s\n", __FILE__, __LINE__, \
              #expr);                                                         \
      fflush(stderr);                                                         \
      exit(1);                                                                \
    }                                                                         \
  } while (0)

#define ASSERT_EQ(a, b)                                                        \
  do {                                                                         \
    long long a_ = (long long)(a), b_ = (long long)(b);                        \
    if (a_ != b_) {                                                            \
      fprintf(stderr, "Assertion failed in %s:%d: %s == %s (%lld != %lld)\n",  \
              __FILE__, __LINE__, #a, #b, a_, b_);                             \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                                    \
  do {                                                                         \
    const char *a_ = (a), *b_ = (b);                                           \
    if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                   \
      fprintf(stderr, "Assertion failed in %s:%d: %s == %s (\"%s\" != \"%s\")\n", \
              __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define ASSERT_CONTAINS(hay, needle)                                           \
  do {                                                                         \
    const char *h_ = (hay), *n_ = (needle);                                    \
    if (!h_ || !strstr(h_, n_)) {                                              \
      fprintf(stderr, "Assertion failed in %s:%d: \"%s\" contains \"%s\"\n",   \
              __FILE__, __LINE__, h_ ? h_ : "(null)", n_);                     \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define RETURN_SKIP(why)                                                       \
  do {                                                                         \
    fprintf(stderr, "SKIP: %s\n", why);                                        \
    return TEST_SKIP;                                                          \
  } while (0)

#endif
