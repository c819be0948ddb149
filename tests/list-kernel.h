/* C tests of the kernel area: XX(name, timeout_seconds) */
#define TEST_LIST_KERNEL(XX)
