/*
 * fuzz_wire.c -- hostile Jupyter messages: the input is split into frames
 * at each "\n--\n"; wire_parse must refuse or accept without crashing, and
 * whatever it accepts round-trips through wire_build. The same bytes also
 * go through utf8_clean and the cursor conversions.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/utf8.h"
#include "../../kernel/wire.h"
#include "../../stages/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const wire_key key = {"fuzz-key", 8, "SHA256"};
  static const wire_key none = {"", 0, "SHA256"};
  wire_frame f[PK_LIMIT_MSG_FRAMES + 2];
  size_t n = 0, start = 0;
  for (size_t i = 0; i + 4 <= size && n < PK_LIMIT_MSG_FRAMES + 1; i++)
    if (memcmp(data + i, "\n--\n", 4) == 0) {
      f[n++] = (wire_frame){data + start, i - start};
      start = i + 4;
      i += 3;
    }
  f[n++] = (wire_frame){data + start, size - start};
  char why[512];
  wire_msg m;
  for (int pass = 0; pass < 2; pass++) {
    if (wire_parse(f, n, pass ? &key : &none, &m, why, sizeof why) == 0) {
      wire_buf *out;
      size_t no;
      if (wire_build(m.idents, m.n_idents, m.header, m.parent, m.metadata, m.content, &key, &out,
                     &no) == 0)
        wire_frames_free(out, no);
      wire_msg_free(&m);
    }
  }
  char *clean = malloc(size * 3 + 1);
  if (clean) {
    size_t used;
    utf8_clean((const char *)data, size, 0, clean, &used);
    utf8_clean((const char *)data, size, 1, clean, &used);
    free(clean);
  }
  size_t cp = utf8_byte_to_cp((const char *)data, size, size);
  if (utf8_cp_to_byte((const char *)data, size, cp) != size) abort();
  return 0;
}
