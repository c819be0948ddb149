/* C tests of the stage contract and the magic language. */
#define TEST_LIST_CORE(XX)                                                     \
  XX(errors_table, 10)                                                         \
  XX(error_first_wins, 10)                                                     \
  XX(args_parse, 10)                                                           \
  XX(args_errors, 10)                                                          \
  XX(registry_find_suggest, 10)                                                \
  XX(magic_split, 10)                                                          \
  XX(magic_split_errors, 10)                                                   \
  XX(magic_cell_parse, 10)                                                     \
  XX(magic_is_complete, 10)                                                    \
  XX(builtins_run, 10)                                                         \
  XX(progress_throttle, 10)                                                    \
  XX(table_render, 10)                                                         \
  XX(format_bytes_and_rates, 10)                                               \
  XX(dynbuf_caps, 10)                                                         \
  XX(safepath_check_and_walk, 10)                                             \
  XX(safepath_open_below, 10)                                                 \
  XX(escape_names, 10)                                                        \
  XX(fileio_never_blocks, 10)                                                 \
  XX(progress_label_short, 10)                                                \
  XX(session_shared_split, 10)                                                \
  XX(cache_drop_and_resident, 30)                                              \
  XX(cache_fs_describe, 10)                                                   \
  XX(blockw_writes_and_errors, 30)
