#!/usr/bin/env python3
"""pipekernel.load(dir) against pickle.load(f, encoding='bytes') + np.vstack,
in the same Python process, on the same files (in the page cache), in the
same run.

Sets: those of bench_load.py (written once under $PK_BUILD/bench/load-data
and shared with it): py2-6 (the original layout, Python 2 protocol 2),
p2-6 (CPython 3, protocol 2), p4-6 (protocol 4), p4-40 (40 batch files);
PK_BENCH_QUICK=1 leaves p4-40 out.

Each figure is the best of REPEAT calls. "load" is the whole call as a
notebook cell sees it: the %load stage (parse, copy, XXH3-128 of pixels
and labels), the bridge that shows its output, and dataset(), which hands
out numpy views of the session's memory (no copy). "load(md5=False)" is
load(hash=None), --no-hash, the like-for-like comparison (the Python
reference computes no checksum). "stage" is the %load stage's own time (its timing record); the
rest of a call is freeing the dataset it replaces (the previous call's),
the bridge that shows the output, and dataset(). The Python reference makes
the same two uint8 arrays per split (pixels N x 3072, labels N) from the
unpickled batches.
"""
import contextlib
import gc
import io
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import bench_load  # noqa: E402

BUILD = Path(os.environ.get("PK_BUILD", ROOT / "build"))
sys.path.insert(0, str(BUILD / "python"))
import pipekernel  # noqa: E402

REPEAT = bench_load.REPEAT


def pk_call(d, md5):
    """(seconds of pipekernel.load, seconds of its %load stage, images)."""
    gc.collect()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        t0 = time.perf_counter()
        ds = pipekernel.load(d.parent, hash="xxh3" if md5 else None)
        dt = time.perf_counter() - t0
    stage = pipekernel.timings()[-1]["seconds"]
    n = ds.train.n + (ds.test.n if ds.test else 0)
    assert ds.train.data.ctypes.data == pipekernel._core.session_pixels(None, "train")
    del ds
    return dt, stage, n


def best(fn, *a):
    runs = [fn(*a) for _ in range(REPEAT)]
    return tuple(min(r[i] for r in runs) for i in range(len(runs[0]) - 1)) + (runs[0][-1],)


def main():
    sets = [("py2-6", "py2", 5), ("p2-6", 2, 5), ("p4-6", 4, 5), ("p4-40", 4, 40)]
    if os.environ.get("PK_BENCH_QUICK"):
        sets = sets[:3]
    print(f"pipekernel.load vs pickle.load(encoding='bytes') + np.vstack in one process, best of {REPEAT}")
    rows = []
    for name, style, ntrain in sets:
        d = bench_load.write_set(name, style, ntrain, test=ntrain <= 5)
        bench_load.warm(d)
        py_t, py_n = bench_load.best(bench_load.python_ref, d)
        gc.collect()
        pk_t, pk_stage, pk_n = best(pk_call, d, True)
        nm_t, nm_stage, _ = best(pk_call, d, False)
        assert py_n == pk_n, (py_n, pk_n)
        px = pk_n * 3072
        row = dict(bench="python", set=name, images=pk_n, python_s=py_t, load_s=pk_t,
                   load_stage_s=pk_stage, nomd5_s=nm_t, nomd5_stage_s=nm_stage,
                   ratio=py_t / pk_t, ratio_nomd5=py_t / nm_t,
                   bridge_ms=(nm_t - nm_stage) * 1e3)
        rows.append(row)
        print(f"\n{name}: {pk_n} images, {px / 1e6:.0f} MB of pixels")
        print(f"  pickle.load + np.vstack   {py_t:7.3f} s  {px / py_t / 1e9:6.2f} GB/s")
        print(f"  pipekernel.load           {pk_t:7.3f} s  {px / pk_t / 1e9:6.2f} GB/s  "
              f"{row['ratio']:5.1f}x  (stage {pk_stage:.3f} s; XXH3-128 of pixels and labels included)")
        print(f"  pipekernel.load(md5=False){nm_t:7.3f} s  {px / nm_t / 1e9:6.2f} GB/s  "
              f"{row['ratio_nomd5']:5.1f}x  (stage {nm_stage:.3f} s; the rest, "
              f"{row['bridge_ms']:.1f} ms: freeing the dataset it replaced, the bridge, dataset())")
    out = os.environ.get("PK_BENCH_OUT")
    if out:
        with open(Path(out) / "results.jsonl", "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
