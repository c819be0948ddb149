/*
 * fuzz_wire.c -- hostile Jupyter messages: the input is split into frames
 * at each "\n--\n" and parsed by wire_parse unsigned and with a key; then
 * once more with the signature frame replaced by the right HMAC, which must
 * give the same verdict as the unsigned parse, so the fuzzer reaches the
 * JSON and header checks behind the signature. What is accepted must
 * round-trip through wire_build and parse again to equal JSON. The same
 * bytes also go through utf8_clean, the cursor conversions and, as text,
 * the header-date reader (stop_on_error's grace window), whose dates must
 * read the same with "Z" added when they had no zone.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/utf8.h"
#include "../../kernel/wire.h"
#include "lib/limits.h"

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
  /* unsigned, and with a key (the fuzzer cannot forge the signature) */
  int plain = wire_parse(f, n, &none, &m, why, sizeof why);
  if (plain >= 0) wire_msg_free(&m); /* 0 or WIRE_OVERSIZE */
  if (wire_parse(f, n, &key, &m, why, sizeof why) >= 0) wire_msg_free(&m);
  /* the same frames signed properly must parse exactly as without a key,
   * and what they give must round-trip through wire_build */
  size_t d = 0;
  while (d < n && !(f[d].len == 9 && memcmp(f[d].p, "<IDS|MSG>", 9) == 0)) d++;
  if (d + 6 <= n) {
    char hex[2 * 64 + 1];
    if (wire_sign(&key, &f[d + 2], hex, sizeof hex) != 64) abort();
    f[d + 1] = (wire_frame){hex, 64};
    int signed_rc = wire_parse(f, n, &key, &m, why, sizeof why);
    if (signed_rc != plain) abort();
    if (signed_rc == WIRE_OVERSIZE) wire_msg_free(&m);
    if (signed_rc == 0) {
      if (!m.msg_type || !*m.msg_type || !m.msg_id || m.n_idents != d) abort();
      wire_buf *out;
      size_t no;
      if (wire_build(m.idents, m.n_idents, m.header, m.parent, m.metadata, m.content, &key, &out,
                     &no) == 0) {
        wire_frame g[PK_LIMIT_MSG_FRAMES];
        if (no > PK_LIMIT_MSG_FRAMES) abort();
        for (size_t i = 0; i < no; i++) g[i] = (wire_frame){out[i].p, out[i].len};
        wire_msg m2;
        if (wire_parse(g, no, &key, &m2, why, sizeof why)) abort();
        if (m2.n_idents != m.n_idents || !json_equal(m2.header, m.header) ||
            !json_equal(m2.parent, m.parent) || !json_equal(m2.metadata, m.metadata) ||
            !json_equal(m2.content, m.content))
          abort();
        for (size_t i = 0; i < m.n_idents; i++)
          if (m2.idents[i].len != m.idents[i].len ||
              memcmp(m2.idents[i].p, m.idents[i].p, m.idents[i].len))
            abort();
        wire_msg_free(&m2);
        wire_frames_free(out, no);
      }
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
  char *text = malloc(size + 2);
  if (text) {
    memcpy(text, data, size);
    text[size] = 0;
    long long us, us2;
    if (wire_date_us(text, &us) == 0 && strlen(text) == size && !strpbrk(text + 19, "+-Z")) {
      text[size] = 'Z';
      text[size + 1] = 0;
      if (wire_date_us(text, &us2) != 0 || us2 != us) abort();
    }
    free(text);
  }
  size_t cp = utf8_byte_to_cp((const char *)data, size, size);
  if (utf8_cp_to_byte((const char *)data, size, cp) != size) abort();
  return 0;
}
