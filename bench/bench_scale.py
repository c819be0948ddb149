#!/usr/bin/env python3
"""The whitepaper's scale: Test 1 (%pipeline --mode copy) and Test 2
(--mode inplace, and inplace --stream) with --cold at 6, 41 and 1283 files,
against a Python reference of the same stages in the same run, and
%train --from against %load + %train.

Sets (written once by %mkdata under $PK_BENCH_OUT/scale-data, reused):
  N files = N - 1 data_batch files + test_batch, PK_BENCH_SCALE_IMAGES
  images each (default 1000: 1283 files are 3.9 GB); PK_BENCH_SCALE_FILES
  lists the sizes (default "6,41,1283").

For each size it prints per stage the seconds, seconds per GB and per file
(how the cost grows with the work) of Test 1, Test 2 and Test 2 --stream,
all cold (every stage that reads files drops their pages first and says
how much was cached), and the Python reference where the set fits in memory
(a quarter of RAM): hashlib md5 with 1 MiB reads, tarfile.extractall,
hashlib per manifest line, pickle.load + np.vstack, each file dropped from
the page cache first as --cold does (fdatasync + POSIX_FADV_DONTNEED).
Training is the same tutorial CNN in every pipekernel run
(PK_BENCH_SCALE_EPOCHS, default 1); PyTorch's own speed is bench_train's.

Then, on %mkdata's default set (5 x 10,000 images): %load + %train vs
%train --from, images/s, files cached (best of PK_BENCH_REPEAT, default 2),
and the data stall of --from --cold.

PK_BENCH_SCALE_BIG=GB adds one streaming run on a set of that size (files of
10,000 images; %mkdata also writes its tarball, so it needs twice that on
disk): %train --from --cold --epochs 1 --batch-size 128, its peak RSS (from
wait4, outside the process) and data stall. Meant for a set larger than
RAM; nothing checks that it is.

PK_BENCH_SCALE_CGROUP=MiB runs the same streaming run on a set of 41 files
of 10,000 images (1.26 GB) inside a cgroup-v1 memory cgroup of that limit (page cache included; needs
root and /sys/fs/cgroup/memory), then %load of the same set there, which
cannot hold it: out of core on a machine of any size.
"""
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import peak_rss  # noqa: E402  (the peak of a program, from a fresh launcher)

PK = Path(os.environ.get("PK_BIN", ROOT / "build" / "pipekernel"))
OUT = Path(os.environ.get("PK_BENCH_OUT", ROOT / "build" / "bench"))
DATA = OUT / "scale-data"
SIZES = [int(x) for x in os.environ.get("PK_BENCH_SCALE_FILES", "6,41,1283").split(",") if x]
IPB = int(os.environ.get("PK_BENCH_SCALE_IMAGES", "1000"))
EPOCHS = int(os.environ.get("PK_BENCH_SCALE_EPOCHS", "1"))
REPEAT = int(os.environ.get("PK_BENCH_REPEAT", "2"))
BIG = os.environ.get("PK_BENCH_SCALE_BIG")
RAM = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
STAGES = ["download", "integrity", "extract", "verify", "pickled", "meta", "upload", "preview", "train"]


def pk(*cells, check=True):
    """`pipekernel run CELLS` then its timing record: (stdout, record)."""
    rec = OUT / "bench-scale-timings.json"
    r = subprocess.run([str(PK), "run", "--quiet", *cells, f"%timings --json {rec}"],
                       capture_output=True, text=True)
    if check and r.returncode:
        raise SystemExit(f"pipekernel failed: {cells}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout, json.loads(rec.read_text())


def make_set(n, ipb=IPB):
    d = DATA / f"{n}x{ipb}"
    if not (d / ".complete").exists():
        shutil.rmtree(d, ignore_errors=True)
        print(f"  writing {n} files of {ipb} images with %mkdata", flush=True)
        pk(f"%mkdata {d} --train-batches {n - 1} --images-per-batch {ipb} --seed 1")
        (d / ".complete").write_text("ok\n")
    return d


# ---- the Python reference, each file dropped from the page cache first ----
def drop(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def py_md5(path):
    drop(path)
    h = hashlib.md5()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def py_extract(tgz, dest):
    drop(tgz)
    with tarfile.open(tgz) as t:
        t.extractall(dest)


def py_verify(manifest, root):
    for line in Path(manifest).read_text().splitlines():
        hexd, rel = line.split(None, 1)
        p = Path(root) / rel.strip()
        drop(p)
        assert py_md5(p) == hexd, p


def py_load(folder):
    tr = sorted((p for p in folder.iterdir() if p.name.startswith("data_batch_")),
                key=lambda p: int(p.name.rsplit("_", 1)[1]))
    out = []
    for group in (tr, [folder / "test_batch"]):
        datas, labels = [], []
        for p in group:
            drop(p)
            with open(p, "rb") as f:
                b = pickle.load(f, encoding="bytes")
            datas.append(b[b"data"])
            labels += b[b"labels"]
        out.append((np.vstack(datas), np.array(labels, dtype=np.uint8)))
    return sum(x[0].shape[0] for x in out)


def python_ref(src, work):
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    times = {}
    t = time.perf_counter()
    shutil.copyfile(src / "cifar-10-python.tar.gz", work / "data.tgz")
    times["download"] = time.perf_counter() - t
    for stage, fn in (("integrity", lambda: py_md5(work / "data.tgz")),
                      ("extract", lambda: py_extract(work / "data.tgz", work)),
                      ("verify", lambda: py_verify(src / "MANIFEST.md5", work)),
                      ("pickled", lambda: py_load(work / "cifar-10-batches-py"))):
        os.sync()
        t = time.perf_counter()
        fn()
        times[stage] = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    return times


# ---- one size ------------------------------------------------------------------
def stage_times(record):
    out = {}
    for s in record["stages"]:
        out.setdefault(s["stage"], [0.0, s.get("cache"), s.get("fs")])
        out[s["stage"]][0] += s["seconds"]
    return out


def bench_size(n):
    src = make_set(n)
    work = OUT / "scale-work"
    shutil.rmtree(work, ignore_errors=True)
    nbytes = sum(p.stat().st_size for p in (src / "cifar-10-batches-py").iterdir())
    common = f"--epochs {EPOCHS} --seed 1 --cold"
    os.sync()
    _, r1 = pk(f"%pipeline --mode copy --source {src}/cifar-10-python.tar.gz --work {work} {common}")
    os.sync()
    _, r2 = pk(f"%pipeline --mode inplace --source {work} --manifest {src}/MANIFEST.md5 {common}")
    os.sync()
    out3, r3 = pk(f"%pipeline --mode inplace --source {work} --manifest {src}/MANIFEST.md5 {common} "
                  f"--stream")
    stall = re.search(r"data stall ([\d.]+) s \(([\d.]+) % of the run\)", out3)
    shutil.rmtree(work, ignore_errors=True)
    py = python_ref(src, OUT / "scale-py") if nbytes * 4 < RAM else None
    t1, t2, t3 = stage_times(r1), stage_times(r2), stage_times(r3)
    gb = nbytes / 1e9
    print(f"\n{n} files, {n * IPB} images, {gb:.2f} GB of batch files (cold: every reading "
          f"stage dropped its input from the page cache first)")
    print(f"  {'stage':10} {'Test 1 s':>9} {'s/GB':>7} {'ms/file':>8} {'Test 2 s':>9} {'s/GB':>7} "
          f"{'--stream':>9} {'Python s':>9}  cache, file system (Test 1)")
    rows = []
    for st in STAGES:
        if st not in t1 and st not in t2:
            continue
        a = t1.get(st, [None, None, None])
        b = t2.get(st, [None])[0]
        c = t3.get(st, [None])[0]
        p = py.get(st) if py else None
        f = lambda x, w=9, d=3: f"{x:{w}.{d}f}" if x is not None else f"{'-':>{w}}"
        spg = a[0] / gb if a[0] is not None else None
        spf = 1000 * a[0] / n if a[0] is not None else None
        print(f"  {st:10} {f(a[0])} {f(spg, 7, 2)} {f(spf, 8, 2)} {f(b)} {f(b / gb if b else None, 7, 2)} "
              f"{f(c)} {f(p)}  {a[1] or '-'}, {a[2] or '-'}")
        rows.append(dict(stage=st, test1_s=a[0], test2_s=b, stream_s=c, python_s=p,
                         cache=a[1], fs=a[2]))
    if stall:
        print(f"  --stream train: data stall {stall.group(1)} s ({stall.group(2)} % of the epoch), cold")
    return dict(bench="scale", files=n, images=n * IPB, bytes=nbytes, stages=rows,
                stream_stall_s=float(stall.group(1)) if stall else None)


# ---- %train --from against %load + %train ----------------------------------------
def images_per_s(out):
    m = re.search(r"^train: \d+ epochs?, (\d+) images in ([\d.]+) s \((\d+) images/s\)", out, re.M)
    return int(m.group(3)) if m else None


def bench_from_vs_load():
    d = DATA / "default"
    if not (d / ".complete").exists():
        shutil.rmtree(d, ignore_errors=True)
        pk(f"%mkdata {d}")
        (d / ".complete").write_text("ok\n")
    mem, frm = [], []
    for _ in range(REPEAT):
        out, _ = pk(f"%load {d} --no-hash", "%train --epochs 1 --seed 1 --threads 0")
        mem.append(images_per_s(out))
        out, _ = pk(f"%train --from {d} --epochs 1 --seed 1")
        frm.append(images_per_s(out))
    out, rec = pk(f"%train --from {d} --epochs 1 --seed 1 --cold")
    stall = re.search(r"data stall ([\d.]+) s \(([\d.]+) % of the run\)", out)
    cold = re.search(r"train: --cold: .*; ([\d.]+) % cached before, ([\d.]+) % after", out)
    print(f"\n%train on %mkdata's default set (50,000 images), best of {REPEAT}:")
    print(f"  %load + %train      {max(mem):6d} images/s  (runs: {mem})")
    print(f"  %train --from       {max(frm):6d} images/s  (runs: {frm})  "
          f"{100 * max(frm) / max(mem):.1f} % of the in-memory rate")
    if stall:
        print(f"  %train --from --cold: data stall {stall.group(1)} s = {stall.group(2)} % of the epoch "
              f"({cold.group(1)} % cached before the drop, {cold.group(2)} % after)" if cold else "")
    return dict(bench="scale-from", memory_ips=max(mem), from_ips=max(frm),
                cold_stall_s=float(stall.group(1)) if stall else None,
                cold_stall_pct=float(stall.group(2)) if stall else None)


def child_peak(argv):
    log = OUT / "bench-scale-big.log"
    with open(log, "wb") as f:
        peak, rc = peak_rss.run(argv, stdout=f, stderr=subprocess.STDOUT)
    return peak, rc, log.read_text()


def bench_big(gb):
    nfiles = math.ceil(gb * 1e9 / (10000 * 3072 + 200000))
    d = DATA / f"big-{nfiles}"
    if not (d / ".complete").exists():
        shutil.rmtree(d, ignore_errors=True)
        print(f"  writing {nfiles} files of 10,000 images ({gb} GB) with %mkdata", flush=True)
        pk(f"%mkdata {d} --train-batches {nfiles - 1} --seed 2 --no-gzip")  # no time spent compressing
        (d / "cifar-10-python.tar").unlink(missing_ok=True)  # only the files are streamed
        (d / ".complete").write_text("ok\n")
    peak, rc, out = child_peak([str(PK), "run", f"%train --from {d} --epochs 1 --cold --batch-size 128 "
                                               f"--seed 1 --log-every 100000"])
    if rc:
        raise SystemExit(f"the streaming run failed:\n{out[-3000:]}")
    stall = re.search(r"data stall ([\d.]+) s \(([\d.]+) % of the run\)", out)
    ips = images_per_s(out)
    print(f"\nstreaming run on {nfiles} files ({gb} GB; RAM {RAM / 1e9:.1f} GB): {ips} images/s, "
          f"peak RSS {peak / 1024:.0f} MiB, data stall {stall.group(1)} s ({stall.group(2)} %)")
    return dict(bench="scale-big", files=nfiles, gb=gb, ram=RAM, images_per_s=ips,
                peak_rss_kib=peak, stall_s=float(stall.group(1)), stall_pct=float(stall.group(2)))


def bench_cgroup(mib):
    cg = Path("/sys/fs/cgroup/memory") / f"pk-bench-{os.getpid()}"
    d = make_set(41, 10000)
    cg.mkdir()
    try:
        (cg / "memory.limit_in_bytes").write_text(str(mib << 20))
        res = {}
        for name, cell in (("from", f"%train --from {d} --epochs 1 --cold --batch-size 128 --seed 1 "
                                    f"--log-every 100000"), ("load", f"%load {d} --no-hash")):
            log = OUT / "bench-scale-cg.log"
            with open(log, "wb") as f:
                peak, rc = peak_rss.run([PK, "run", cell], stdout=f, stderr=subprocess.STDOUT,
                                        cgroup_procs=cg / "cgroup.procs")
            out = log.read_text()
            stall = re.search(r"data stall ([\d.]+) s \(([\d.]+) % of the run\)", out)
            res[name] = dict(rc=rc, peak_rss_kib=peak,
                             stall_pct=float(stall.group(2)) if stall else None)
        nbytes = sum(p.stat().st_size for p in (d / "cifar-10-batches-py").iterdir())
        print(f"\nin a {mib} MiB memory cgroup (page cache included), 41 files of 10,000 images "
              f"({nbytes / 1e6:.0f} MB): %train --from --cold exit {res['from']['rc']}, peak RSS "
              f"{res['from']['peak_rss_kib'] // 1024} MiB, data stall {res['from']['stall_pct']} %; "
              f"%load exit {res['load']['rc']} (peak RSS {res['load']['peak_rss_kib'] // 1024} MiB)")
        return dict(bench="scale-cgroup", limit_mib=mib, **{f"{k}_{x}": v for k, r in res.items()
                                                           for x, v in r.items()})
    finally:
        cg.rmdir()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"pipekernel at whitepaper scale: sizes {SIZES} files of {IPB} images, {EPOCHS} epoch(s); "
          f"a shared machine's figures move between runs: repeat and compare")
    rows = [bench_size(n) for n in SIZES]
    rows.append(bench_from_vs_load())
    if BIG:
        rows.append(bench_big(float(BIG)))
    if os.environ.get("PK_BENCH_SCALE_CGROUP"):
        rows.append(bench_cgroup(int(os.environ["PK_BENCH_SCALE_CGROUP"])))
    with open(OUT / "results.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    sys.exit(main())
