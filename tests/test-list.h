/*
 * test-list.h -- the one list of C tests: XX(name, timeout_seconds).
 * Each area keeps its rows in tests/list-<area>.h; a test named foo is
 * TEST_IMPL(foo) in some tests/test-*.c.
 */
#include "list-core.h"
#include "list-kernel.h"
#include "list-data.h"
#include "list-load.h"
#include "list-s3.h"
#include "list-report.h"

#define TEST_LIST(XX)                                                          \
  TEST_LIST_CORE(XX)                                                           \
  TEST_LIST_KERNEL(XX)                                                         \
  TEST_LIST_DATA(XX)                                                           \
  TEST_LIST_LOAD(XX)                                                           \
  TEST_LIST_S3(XX)                                                             \
  TEST_LIST_REPORT(XX)
