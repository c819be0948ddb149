/* C tests of the report area: XX(name, timeout_seconds) */
#define TEST_LIST_REPORT(XX)
