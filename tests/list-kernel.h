/* C tests of the kernel area: XX(name, timeout_seconds) */
#define TEST_LIST_KERNEL(XX)                                                   \
  XX(wire_sign_vector, 10)                                                     \
  XX(wire_verify_good, 10)                                                     \
  XX(wire_bad_signature, 10)                                                   \
  XX(wire_signature_length, 10)                                                \
  XX(wire_truncated_frames, 10)                                                \
  XX(wire_missing_delimiter, 10)                                               \
  XX(wire_oversized, 10)                                                       \
  XX(wire_bad_json, 10)                                                        \
  XX(wire_invalid_cases, 10)                                                   \
  XX(wire_empty_key, 10)                                                       \
  XX(wire_header, 10)                                                          \
  XX(utf8_clean_split, 10)                                                     \
  XX(utf8_clean_invalid, 10)                                                   \
  XX(utf8_offsets, 10)                                                         \
  XX(conn_load_files, 10)                                                      \
  XX(kernel_complete, 10)                                                      \
  XX(kernel_main_errors, 20)
