/* C tests of the data area: XX(name, timeout_seconds) */
#define TEST_LIST_DATA(XX)
