#!/usr/bin/env python3
"""Regenerate the committed pickle test files:

  tests/data/pickle/invalid/<case>/input.pkl + error (expected substring)
  tests/fuzz/corpus/pickle/*  (seeds: small valid files + a few invalid; other
                              files there, merged by fuzzing, are kept)

Run from the repository root: .venv/bin/python tests/load/make_cases.py
"""
import os
import pickle
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cifargen  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
INVALID = ROOT / "tests/data/pickle/invalid"
CORPUS = ROOT / "tests/fuzz/corpus/pickle"


def small_batch(n=2, labels=None, data=None, protocol=2):
    rng = np.random.default_rng(7)
    if data is None:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    if labels is None:
        labels = [1] * n
    return pickle.dumps({"labels": labels, "data": data}, protocol=protocol)


def u64(n):
    return struct.pack("<Q", n)


CASES = {
    # globals outside the allow-list, however they are reached
    "global_os_system": (b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.",
                         "global os.system is not in the allow-list"),
    "stack_global_eval": (b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R.",
                          "global builtins.eval is not in the allow-list"),
    "global_subprocess": (b"csubprocess\ncheck_output\n(X\x02\x00\x00\x00lstR.",
                          "global subprocess.check_output"),
    # REDUCE and BUILD on what is not allowed
    "reduce_on_list": (b"\x80\x02])R.", "REDUCE on a list is not allowed"),
    "reduce_on_ndarray": (b"\x80\x02cnumpy\nndarray\n)R.", "numpy.ndarray is accepted only"),
    "reduce_bytes_with_args": (b"\x80\x02c__builtin__\nbytes\nK\x05\x85R.",
                               "bytes is accepted only with no arguments"),
    "codecs_utf8": (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8\x86R.",
                    "_codecs.encode is accepted only as (str, 'latin1')"),
    "codecs_codepoint_256": (b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00\xc4\x80X\x06\x00\x00\x00latin1\x86R.",
                             "code point above 255"),
    "build_on_dict": (b"\x80\x02}}b.", "BUILD on a dict is not allowed"),
    # opcodes outside the subset
    "inst": (b"(i__main__\nX\n.", "INST (0x69)"),
    "obj": (b"\x80\x02(o.", "OBJ (0x6f)"),
    "newobj": (b"\x80\x02))\x81.", "NEWOBJ (0x81)"),
    "newobj_ex": (b"\x80\x04)}}\x92.", "NEWOBJ_EX (0x92)"),
    "persid": (b"Pfoo\n.", "PERSID (0x50)"),
    "binpersid": (b"\x80\x02NQ.", "BINPERSID (0x51)"),
    "ext1": (b"\x80\x02\x82\x01.", "EXT1 (0x82)"),
    "ext4": (b"\x80\x02\x84\x01\x00\x00\x00.", "EXT4 (0x84)"),
    "text_string": (b"S'abc'\np0\n.", "STRING (0x53)"),
    "text_int": (b"I42\n.", "INT (0x49)"),
    "next_buffer": (b"\x80\x05\x97.", "NEXT_BUFFER (0x97)"),
    "readonly_buffer": (b"\x80\x05N\x98.", "READONLY_BUFFER (0x98)"),
    "protocol_6": (b"\x80\x06N.", "protocol 6 is not supported"),
    # lengths larger than the file
    "binbytes_too_long": (b"\x80\x03B\xff\xff\xff\x7fabc.", "larger than the"),
    "binstring_negative": (b"\x80\x02T\xff\xff\xff\xffabc.", "negative BINSTRING length"),
    "binunicode8_huge": (b"\x80\x04\x8d" + b"\xff" * 8 + b"ab.", "larger than the"),
    "bytearray8_too_long": (b"\x80\x05\x96" + u64(1 << 40) + b"xyz.", "larger than the"),
    "frame_too_long": (b"\x80\x04\x95" + u64(1 << 40) + b"N.", "frame of"),
    "short_binstring_cut": (b"\x80\x02U\x10abc", "truncated"),
    "long1_too_wide": (b"\x80\x02\x8a\x09" + b"\x01" * 9 + b".", "integer of 9 bytes"),
    # structure
    "deep_marks": (b"\x80\x02" + b"(" * 100000 + b".", "nested MARKs"),
    "memo_get_undefined": (b"\x80\x02h\x05.", "memo index 5 was never stored"),
    "memo_long_get_undefined": (b"\x80\x02Nq\x00j\x00\x00\x01\x00.", "memo index 65536 was never stored"),
    "memo_put_huge": (b"\x80\x02Nr\xff\xff\xff\x7f.", "memo index 2147483647 out of range"),
    "stack_underflow": (b"\x80\x02a.", "stack underflow"),
    "appends_without_list": (b"\x80\x02(K\x01e.", "no container below the MARK"),
    "setitems_odd": (b"\x80\x02}(K\x01u.", "odd number of keys and values"),
    "no_stop": (b"\x80\x02N", "truncated: end of data"),
    "empty": (b"", "truncated: end of data at byte 0"),
    "trailing_bytes": (b"\x80\x02N.N", "1 bytes after the end of the pickle"),
    "two_values_at_stop": (b"\x80\x02NN.", "2 values on the stack"),
    "invalid_utf8": (b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", "invalid UTF-8"),
    "dtype_object": (pickle.dumps(np.array([1, "a"], dtype=object), protocol=2),
                     "dtype 'O8' is not supported"),
    # well-formed pickles that are not CIFAR batches
    "wrong_dtype": (small_batch(data=np.zeros((2, 3072), dtype=np.int64)),
                    "dtype <i8, expected uint8"),
    "wrong_shape": (small_batch(data=np.zeros((2, 32, 32, 3), dtype=np.uint8)),
                    "has shape (2, 32, 32, 3), expected (N, 3072)"),
    "wrong_shape_1d": (small_batch(data=np.zeros(3072, dtype=np.uint8)),
                       "has shape (3072,), expected (N, 3072)"),
    "fortran_order": (small_batch(data=np.asfortranarray(np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)), protocol=4),
                      "Fortran order"),
    "labels_count": (small_batch(labels=[1, 2, 3]), "3 labels for 2 images"),
    "label_out_of_range": (small_batch(labels=[1, 300]), "labels[1] = 300 is outside 0..9"),
    "label_not_int": (small_batch(labels=[1, "x"]), "labels[1] is a str"),
    "data_missing": (pickle.dumps({"labels": []}, protocol=2), "key 'data' is missing"),
    "labels_missing": (pickle.dumps({"data": np.zeros((1, 3072), np.uint8)}, protocol=3),
                       "key 'labels' is missing"),
    "top_not_dict": (pickle.dumps([1, 2, 3], protocol=2), "expected a dict at the top, got list"),
    "array_never_built": (b"\x80\x02}(X\x04\x00\x00\x00datacnumpy.core.multiarray\n_reconstruct\n"
                          b"cnumpy\nndarray\nK\x00\x85C\x01b\x87Ru.", "never given its contents"),
    "array_size_mismatch": (b"\x80\x03cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
                            b"(K\x01K\x02M\x00\x0c\x86cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R"
                            b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
                            b"\x89C\x05hellotb.", "array data is 5 bytes but its shape and dtype need 6144"),
}


def main():
    if INVALID.exists():
        shutil.rmtree(INVALID)
    for name, (blob, err) in sorted(CASES.items()):
        d = INVALID / name
        d.mkdir(parents=True)
        (d / "input.pkl").write_bytes(blob)
        (d / "error").write_text(err + "\n")
    # the seeds are rewritten in place: what fuzzing merged into the corpus
    # and the regression cases (regress-*) stay
    CORPUS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
    labels = [3, 7]
    names = ["a_s_000001.png", "b_s_000002.png"]
    (CORPUS / "py2_batch").write_bytes(cifargen.py2_batch_bytes("training batch 1 of 1", labels, data, names))
    (CORPUS / "py2_meta").write_bytes(cifargen.py2_meta_bytes())
    for p in (2, 3, 4, 5):
        obj = {"batch_label": "b", "labels": list(np.array(labels)), "data": data, "filenames": names}
        (CORPUS / f"p{p}_batch").write_bytes(cifargen.dumps(obj, p))
        (CORPUS / f"p{p}_np2_batch").write_bytes(cifargen.dumps(obj, p, np2=True))
    (CORPUS / "p4_meta_bytes_keys").write_bytes(pickle.dumps(
        {b"label_names": [n.encode() for n in cifargen.CIFAR_NAMES]}, protocol=4))
    for name in ("global_os_system", "memo_get_undefined", "codecs_codepoint_256", "wrong_shape"):
        (CORPUS / f"invalid_{name}").write_bytes(CASES[name][0])
    print(f"{len(CASES)} invalid cases, {len(os.listdir(CORPUS))} corpus files")


if __name__ == "__main__":
    main()
