/* C tests of the report area: XX(name, timeout_seconds) */
#define TEST_LIST_REPORT(XX)                                                   \
  XX(timings_table_order, 10)                                                  \
  XX(timings_json_roundtrip, 10)                                               \
  XX(timings_compare_errors, 10)
