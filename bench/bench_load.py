#!/usr/bin/env python3
"""%load against pickle.load(f, encoding='bytes') + np.vstack on the same files,
in the same run, with the files in the page cache.

Sets (written once under $PK_BUILD/bench/load-data, reused afterwards):
  py2-6   the original layout: 5 data_batch + test_batch of 10,000 images,
          Python 2 protocol-2 byte stream (docs/workflow.md)
  p2-6    the same data written by CPython 3 pickle protocol 2 (bytes as
          _codecs.encode(str, 'latin1'): the pixels are UTF-8 text)
  p4-6    the same data written by CPython 3 pickle protocol 4
  p4-40   40 data_batch files of 10,000 images (protocol 4), an augmented set

Times are the best of REPEAT runs. "stage" is the %load stage's own time
(its timing record: parse, copy, and the fingerprint of pixels and labels:
XXH3-128 by default, md5 with --md5), what a cell takes in a running
kernel; "run" is the whole `pipekernel run` process (start included). The
Python reference is timed inside its interpreter (numpy already imported),
so the like-for-like ratio is the stage's; both are shown. "%load --no-hash"
computes no fingerprint. The copy floor is bench/copyfloor.c (built here
with cc): the files mapped and copied whole into fresh memory on as many
threads as %load uses, nothing parsed; --no-hash against it is how close the
stage comes to moving bytes and nothing else (target >= 0.9x).
"""
import gc
import json
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests/load"))
import cifargen  # noqa: E402

BUILD = Path(os.environ.get("PK_BUILD", ROOT / "build"))
PK = os.environ.get("PK_BIN", str(BUILD / "pipekernel"))
DATA = Path(os.environ.get("PK_BENCH_DATA", BUILD / "bench" / "load-data"))
REPEAT = int(os.environ.get("PK_BENCH_REPEAT", "3"))
N = 10000


def write_set(name, style, n_train, test=True):
    d = DATA / name / "cifar-10-batches-py"
    done = d / ".complete"
    if done.exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    files = [f"data_batch_{i + 1}" for i in range(n_train)] + (["test_batch"] if test else [])
    print(f"  writing {name}: {len(files)} files", flush=True)
    for i, fname in enumerate(files):
        data, labels, filenames = cifargen.make_batch(rng, N, i * N)
        label = f"training batch {i + 1} of {n_train}" if fname != "test_batch" else "testing batch 1 of 1"
        if style == "py2":
            blob = cifargen.py2_batch_bytes(label, labels, data, filenames)
        else:
            blob = pickle.dumps({"batch_label": label, "labels": labels, "data": data,
                                 "filenames": filenames}, protocol=style)
        tmp = d / (fname + ".tmp")
        tmp.write_bytes(blob)
        tmp.rename(d / fname)
    (d / "batches.meta").write_bytes(cifargen.py2_meta_bytes())
    done.write_text("ok\n")
    return d


def warm(d):
    for p in sorted(d.iterdir()):
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def python_ref(d):
    """What a notebook does: unpickle every batch, stack the pixels."""
    def files():
        tr = sorted((p for p in d.iterdir() if p.name.startswith("data_batch_")),
                    key=lambda p: int(p.name.rsplit("_", 1)[1]))
        return tr, [d / "test_batch"] if (d / "test_batch").exists() else []
    t0 = time.perf_counter()
    out = []
    for group in files():
        if not group:
            continue
        datas, labels = [], []
        for p in group:
            with open(p, "rb") as f:
                b = pickle.load(f, encoding="bytes")
            datas.append(b[b"data"] if b"data" in b else b["data"])
            labels += b[b"labels"] if b"labels" in b else b["labels"]
        out.append((np.vstack(datas), np.array(labels, dtype=np.uint8)))
    dt = time.perf_counter() - t0
    n = sum(x[0].shape[0] for x in out)
    del out
    gc.collect()
    return dt, n


def copy_floor(d):
    """Best seconds of bench/copyfloor.c on d's files (built once)."""
    out = Path(os.environ.get("PK_BENCH_OUT", "/tmp"))
    exe = out / "copyfloor"
    src = HERE / "copyfloor.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["cc", "-O2", "-pthread", "-o", str(exe), str(src)], check=True)
    files = [str(p) for p in sorted(d.iterdir()) if p.name.startswith(("data_batch_", "test_batch"))]
    threads = min(os.cpu_count() or 1, 8)
    p = subprocess.run([str(exe), str(threads), str(max(REPEAT, 3)), *files],
                       capture_output=True, text=True, check=True)
    return float(p.stdout.split()[0])


def pk_load(d, extra=""):
    """(wall time of the `pipekernel run` process, the %load stage's own time
    from its timing record, images loaded)."""
    rec = Path(os.environ.get("PK_BENCH_OUT", "/tmp")) / "bench-load-timings.json"
    t0 = time.perf_counter()
    p = subprocess.run([PK, "run", "--quiet", f"%load {d} {extra}".strip(), f"%timings --json {rec}"],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"pipekernel failed: {p.stderr}")
    stage = sum(s["seconds"] for s in json.loads(rec.read_text())["stages"])
    n = sum(int(x) for x in re.findall(r"(\d+) images", p.stdout))
    return dt, stage, n


def best(fn, *a):
    """The run with the least wall time of REPEAT."""
    return min((fn(*a) for _ in range(REPEAT)), key=lambda r: r[0])


def best_pk(d, extra=""):
    """pk_load REPEAT times: (least wall time, least stage time, images)."""
    runs = [pk_load(d, extra) for _ in range(REPEAT)]
    return min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2]


def main():
    sets = [("py2-6", "py2", 5), ("p2-6", 2, 5), ("p4-6", 4, 5), ("p4-40", 4, 40)]
    if os.environ.get("PK_BENCH_QUICK"):
        sets = sets[:3]
    print(f"pipekernel %load vs pickle.load(encoding='bytes') + np.vstack, best of {REPEAT}")
    rows = []
    for name, style, ntrain in sets:
        d = write_set(name, style, ntrain, test=ntrain <= 5)
        warm(d)
        size = sum(p.stat().st_size for p in d.iterdir() if p.name != ".complete")
        py_t, py_n = best(python_ref, d)
        pk_t, pk_stage, pk_n = best_pk(d)
        md_t, md_stage, _ = best_pk(d, "--md5")
        nm_t, nm_stage, _ = best_pk(d, "--no-hash")
        floor = copy_floor(d)
        assert py_n == pk_n, (py_n, pk_n)
        px = pk_n * 3072
        row = dict(bench="load", set=name, files=len([p for p in d.iterdir() if p.name != ".complete"]),
                   images=pk_n, file_bytes=size, python_s=py_t, load_s=pk_t, load_stage_s=pk_stage,
                   md5_s=md_t, md5_stage_s=md_stage, ratio_md5_stage=py_t / md_stage,
                   nohash_s=nm_t, nohash_stage_s=nm_stage, copy_floor_s=floor,
                   nohash_vs_floor=floor / nm_stage,
                   ratio=py_t / pk_t, ratio_nohash=py_t / nm_t,
                   ratio_stage=py_t / pk_stage, ratio_nohash_stage=py_t / nm_stage,
                   load_gbps=px / pk_t / 1e9, nohash_gbps=px / nm_t / 1e9,
                   nohash_stage_gbps=px / nm_stage / 1e9 if nm_stage else None)
        rows.append(row)
        print(f"\n{name}: {row['files']} files, {pk_n} images, {size / 1e6:.0f} MB on disk")
        print(f"  python pickle+vstack  {py_t:8.3f} s  {px / py_t / 1e9:6.2f} GB/s")
        print(f"  %load                 stage {pk_stage:6.3f} s {px / pk_stage / 1e9:6.2f} GB/s "
              f"ratio {row['ratio_stage']:5.1f}x | run {pk_t:6.3f} s ratio {row['ratio']:5.1f}x"
              f"  (XXH3-128 of pixels and labels included)")
        print(f"  %load --md5           stage {md_stage:6.3f} s {px / md_stage / 1e9:6.2f} GB/s "
              f"ratio {row['ratio_md5_stage']:5.1f}x")
        print(f"  %load --no-hash       stage {nm_stage:6.3f} s {px / nm_stage / 1e9:6.2f} GB/s "
              f"ratio {row['ratio_nohash_stage']:5.1f}x | run {nm_t:6.3f} s ratio {row['ratio_nohash']:5.1f}x")
        print(f"  copy floor            {floor:12.3f} s {size / floor / 1e9:6.2f} GB/s  "
              f"--no-hash at {row['nohash_vs_floor']:.2f}x of it")
    out = os.environ.get("PK_BENCH_OUT")
    if out:
        with open(Path(out) / "results.jsonl", "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
