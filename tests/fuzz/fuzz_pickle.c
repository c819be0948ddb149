/*
 * fuzz_pickle.c -- libFuzzer harness over the pickle reader and the checks
 * %load and %meta run on its result. `make fuzz`; corpus in
 * tests/fuzz/corpus/pickle (regenerate with tests/load/make_cases.py).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "load/load.h"
#include "load/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  st_error err;
  st_error_clear(&err);
  pkl_doc *d = pkl_parse(data, size, "fuzz", &err);
  if (!d) {
    if (!err.code) abort(); /* a failure must say why */
    return 0;
  }
  ld_batch b;
  st_error_clear(&err);
  if (ld_batch_check(pkl_root(d), "fuzz", 0, &b, &err) == 0) {
    uint8_t *px = malloc(b.data.len ? b.data.len : 1);
    if (px) pkl_array_copy(&b.data, px);
    free(px);
    free(b.labels);
  }
  char **names;
  int n;
  st_error_clear(&err);
  if (ld_meta_names(pkl_root(d), "fuzz", &names, &n, &err) == 0) ld_names_free(names, n);
  pkl_free(d);
  return 0;
}
