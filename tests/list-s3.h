/* C tests of the s3 area: XX(name, timeout_seconds) */
#define TEST_LIST_S3(XX)
