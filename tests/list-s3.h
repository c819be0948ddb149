/* C tests of the s3 area: XX(name, timeout_seconds) */
#define TEST_LIST_S3(XX)                                                       \
  XX(sigv4_uri_encode, 10)                                                     \
  XX(sigv4_canonical_uri_rules, 10)                                            \
  XX(sigv4_canonical_parts, 10)                                                \
  XX(sigv4_signing_chain, 10)                                                  \
  XX(sigv4_aws_suite, 30)                                                      \
  XX(s3_response_parsers, 10)                                                  \
  XX(s3_listing_url_encoded_keys, 10)                                          \
  XX(s3_etag_parts_and_layouts, 10)                                            \
  XX(s3xml_invalid_cases, 10)
