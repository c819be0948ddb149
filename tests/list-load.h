/* C tests of the load area: XX(name, timeout_seconds) */
#define TEST_LIST_LOAD(XX)
