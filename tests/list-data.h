/* C tests of the data area: XX(name, timeout_seconds) */
#define TEST_LIST_DATA(XX)                                                     \
  XX(md5_rfc1321, 10)                                                          \
  XX(md5_file_and_stage, 20)                                                   \
  XX(manifest_parse, 10)                                                       \
  XX(manifest_errors, 10)                                                      \
  XX(manifest_invalid_cases, 10)                                               \
  XX(archive_invalid_cases, 60)                                                \
  XX(mkdata_deterministic, 20)                                                 \
  XX(md5_mapped_steps, 10)                                                     \
  XX(md5_mapped, 10)                                                           \
  XX(mapguard_lost_pages, 10)                                                  \
  XX(pklwrite_opcodes, 10)                                                     \
  XX(ring_order_end_error_stop, 20)                                            \
  XX(extract_member_md5_lookup, 10)                                            \
  XX(download_resumed_answer_checks, 10)
