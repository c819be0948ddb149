#!/usr/bin/env python3
"""%upload against boto3 upload_file (default TransferConfig), same RGW, same run.

Workloads: the default dataset tree (6 files of 31,035,704 bytes like CIFAR-10's
pickled batches, plus batches.meta and readme.html; random bytes) and one 1 GB
file. Each side runs REPS times on a fresh prefix; objects are deleted and RGW's
garbage collection run between runs (memstore keeps data in RAM). Prints the
best time of each and the ratio; appends JSON lines to $PK_BENCH_OUT/results.jsonl.
Also the CPU seconds each run cost the gateway (radosgw + ceph-osd + ceph-mon)
and the client: on a machine where they share the cores, the gateway's own
CPU divided by the cores bounds how fast any client can be, and so the ratio.
Environment: PK_BENCH_S3_REPS (default 2), PK_BENCH_S3_BIG_MB (default 1000).
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "s3"))
import rgwctl  # noqa: E402

PK_BIN = Path(os.environ.get("PK_BIN", ROOT / "build" / "pipekernel"))
REPS = int(os.environ.get("PK_BENCH_S3_REPS", "2"))
BIG_MB = int(os.environ.get("PK_BENCH_S3_BIG_MB", "1000"))
BUCKET = "bench"


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n


def make_data(tmp):
    tree = tmp / "cifar-10-batches-py"
    tree.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_random(tree / name, 31035704)
    write_random(tree / "batches.meta", 158)
    (tree / "readme.html").write_text("<meta HTTP-EQUIV=\"REFRESH\" content=\"0; url=...\">\n")
    big = tmp / "big.bin"
    write_random(big, BIG_MB * 1000 * 1000)
    return tree, big


def boto3_upload(s3, path, prefix):
    # what sagemaker.Session.upload_data does: upload_file per file, default config
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            s3.upload_file(str(f), BUCKET, f"{prefix}/{f.relative_to(path)}")
    else:
        s3.upload_file(str(path), BUCKET, f"{prefix}/{path.name}")


def pk_upload(rgw, path, prefix):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=rgw.access_key,
               AWS_SECRET_ACCESS_KEY=rgw.secret_key, AWS_REGION="us-east-1")
    url = f"s3://{BUCKET}/{prefix}" + ("/" if path.is_file() else "")
    p = subprocess.run([str(PK_BIN), "run", "--quiet",
                        f"%upload {path} {url} --endpoint {rgw.endpoint}"],
                       env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"%upload failed:\n{p.stdout}\n{p.stderr}")


def gateway_cpu(rgw):
    """CPU seconds so far of the cluster's daemons (user + system)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for name in ("rgw", "osd", "mon"):
        try:
            pid = (rgw.dir / "run" / f"{name}.pid").read_text().split()[0]
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def client_cpu():
    """CPU seconds of this process (boto3's threads) and its finished children (%upload)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def clean(rgw, s3):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    for page in pages:
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})
    rgw.gc()


def main():
    if rgwctl.missing_binaries():
        print("bench_s3: needs " + ", ".join(rgwctl.missing_binaries()), file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="pkbench-s3-"))
    rgw = rgwctl.RGW(memstore_bytes=16 << 30)
    results = []
    try:
        tree, big = make_data(tmp)
        rgw.start()
        s3 = rgw.client()
        s3.create_bucket(Bucket=BUCKET)
        for label, path in (("dataset tree (8 files, 186 MB)", tree),
                            (f"one {BIG_MB} MB file", big)):
            size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*"))
                       if p.is_file())
            best, cpu = {}, {}
            for rep in range(REPS):
                for name, fn in (("boto3", lambda pr: boto3_upload(s3, path, pr)),
                                 ("pipekernel", lambda pr: pk_upload(rgw, path, pr))):
                    g0, c0 = gateway_cpu(rgw), client_cpu()
                    t0 = time.perf_counter()
                    fn(f"{name}-{rep}")
                    dt = time.perf_counter() - t0
                    g, c = gateway_cpu(rgw) - g0, client_cpu() - c0
                    if dt < best.get(name, float("inf")):
                        best[name], cpu[name] = dt, (g, c)
                    clean(rgw, s3)
            ratio = best["boto3"] / best["pipekernel"]
            cores = os.cpu_count() or 1
            floor = min(cpu[n][0] for n in cpu) / cores  # the gateway's CPU alone, spread over all cores
            print(f"{label:32s} boto3 {best['boto3']:7.2f} s ({size / best['boto3'] / 1e6:6.1f} MB/s)"
                  f"   %upload {best['pipekernel']:7.2f} s ({size / best['pipekernel'] / 1e6:6.1f} MB/s)"
                  f"   ratio {ratio:5.2f}x", flush=True)
            print(f"{'':32s} CPU s gateway/client: boto3 {cpu['boto3'][0]:.2f}/{cpu['boto3'][1]:.2f}"
                  f"   %upload {cpu['pipekernel'][0]:.2f}/{cpu['pipekernel'][1]:.2f}"
                  f"   -> no client beats {floor:.2f} s on {cores} cores"
                  f" ({best['boto3'] / floor:.2f}x boto3)", flush=True)
            results.append({"bench": "s3", "workload": label, "bytes": size,
                            "boto3_s": best["boto3"], "pipekernel_s": best["pipekernel"],
                            "ratio": ratio, "reps": REPS,
                            "gateway_cpu_s": {n: cpu[n][0] for n in cpu},
                            "client_cpu_s": {n: cpu[n][1] for n in cpu},
                            "gateway_floor_s": floor})
    finally:
        rgw.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(os.environ.get("PK_BENCH_OUT", ROOT / "build" / "bench"))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "a") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
