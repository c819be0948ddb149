"""Writes CIFAR batch folders with the numpy this interpreter has (the load
tests run it from .venv-numpy2, so numpy 2) and prints, as JSON, the md5s
numpy itself gives for each folder's pixels and labels.

usage: numpy2_writer.py OUTDIR  ->  OUTDIR/<case>/cifar-10-batches-py/...
Cases: protocols 2..5 x (str keys + int labels | bytes keys + numpy int64
scalar labels | str keys + an int64 label array), with a uint8 label
array at protocol 5 too.
"""
import hashlib
import json
import os
import pickle
import sys

import numpy as np

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def labels_as(kind, lab):
    if kind == "int":
        return [int(x) for x in lab]
    if kind == "np64":
        return [np.int64(x) for x in lab]
    if kind == "arr64":
        return lab.astype(np.int64)
    return lab.astype(np.uint8)  # "arr8"


def write_case(root, proto, kind, bytes_keys, rng):
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d)
    sums = {}
    for split, files in (("train", [("data_batch_1", 37), ("data_batch_2", 21)]),
                         ("test", [("test_batch", 15)])):
        px, lb = hashlib.md5(), hashlib.md5()
        for name, n in files:
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            lab = rng.integers(0, 10, n)
            b = {"batch_label": f"{name} of numpy {np.__version__}", "labels": labels_as(kind, lab),
                 "data": data, "filenames": [f"img_{i}.png" for i in range(n)]}
            if bytes_keys:
                b = {k.encode(): v for k, v in b.items()}
            with open(os.path.join(d, name), "wb") as f:
                pickle.dump(b, f, protocol=proto)
            px.update(data.tobytes())
            lb.update(lab.astype(np.uint8).tobytes())
        sums[split] = [px.hexdigest(), lb.hexdigest(), len(files), sum(n for _, n in files)]
    with open(os.path.join(d, "batches.meta"), "wb") as f:
        pickle.dump({"num_cases_per_batch": 37, "label_names": NAMES, "num_vis": 3072}, f, protocol=proto)
    return sums


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(2024)
    cases = {}
    for proto in (2, 3, 4, 5):
        for kind, bytes_keys in (("int", False), ("np64", True), ("arr64", False)) + \
                                ((("arr8", False),) if proto == 5 else ()):
            name = f"p{proto}-{kind}{'-bkeys' if bytes_keys else ''}"
            cases[name] = write_case(os.path.join(out, name), proto, kind, bytes_keys, rng)
    print(json.dumps({"numpy": np.__version__, "cases": cases}))


if __name__ == "__main__":
    main()
