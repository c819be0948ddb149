/* C tests of the load area: XX(name, timeout_seconds) */
#define TEST_LIST_LOAD(XX)                                                     \
  XX(pickle_invalid_cases, 30)                                                 \
  XX(pickle_formats_agree, 30)                                                 \
  XX(load_file_outlives_other_parses, 30)                                      \
  XX(pickle_truncation_every_offset, 120)                                      \
  XX(pickle_limits, 60)                                                        \
  XX(pickle_scalars_and_keys, 10)                                              \
  XX(latin1_utf8_paths, 30)                                                    \
  XX(preview_grid_layout, 10)                                                  \
  XX(chart_render, 30)                                                         \
  XX(font_descenders, 10)
