#!/usr/bin/env python3
"""%train against PyTorch on the CPU (torch.set_num_threads(2), or
PK_BENCH_TORCH_THREADS), same data, same network, same SGD settings,
interleaved in one run. Images/s of one epoch over N images (the stage's own
training time; PyTorch's loop with a pre-normalised tensor and a random
permutation, which favours PyTorch). On a machine shared with other work,
PyTorch's two OpenMP threads can collapse; PK_BENCH_TORCH_THREADS=1 shows
the single-thread figure next to it."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests/train"))
from trainutil import make_net, normalise, write_cifar  # noqa: E402

BUILD = Path(os.environ.get("PK_BUILD", ROOT / "build"))
PK = os.environ.get("PK_BIN", str(BUILD / "pipekernel"))
N = int(os.environ.get("PK_BENCH_TRAIN_N", "8000"))
TORCH_THREADS = int(os.environ.get("PK_BENCH_TORCH_THREADS", "2"))


def ours(d, bs):
    r = subprocess.run([PK, "run", f"%load {d} --no-md5",
                        f"%train --epochs 1 --batch-size {bs} --log-every 1000000 --device cpu --seed 1"],
                       capture_output=True, text=True, timeout=600)
    m = re.search(r"\(([\d.]+) images/s\); (.*)$", r.stdout, re.M)
    if r.returncode or not m:
        sys.exit("pipekernel failed:\n" + r.stdout + r.stderr)
    return float(m.group(1)), m.group(2)


def torch_ref(torch, X, Y, bs):
    torch.manual_seed(0)
    net = make_net(torch)
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(len(Y))
    t0 = time.perf_counter()
    for b in range(0, len(Y), bs):
        idx = perm[b:b + bs]
        opt.zero_grad()
        loss = crit(net(X[idx]), Y[idx])
        loss.backward()
        opt.step()
        loss.item()
    return len(Y) / (time.perf_counter() - t0)


def main():
    import torch
    torch.set_num_threads(TORCH_THREADS)
    d = BUILD / "bench" / "train-data"
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(N, 3072), dtype=np.uint8)
    y = rng.integers(0, 10, size=N).astype(np.uint8)
    if not (d / "cifar-10-batches-py" / "test_batch").exists():
        write_cifar(d, (x, y), (x[:1000], y[:1000]))
    X = normalise(torch, x)
    Y = torch.from_numpy(y.astype(np.int64))
    print(f"%train vs PyTorch {torch.__version__} CPU ({TORCH_THREADS} thread"
          f"{'' if TORCH_THREADS == 1 else 's'}), {N} images, 1 epoch")
    print(f"{'batch':>6} {'pipekernel img/s':>17} {'pytorch img/s':>14} {'ratio':>7}")
    results = []
    for bs in (4, 32, 128):
        a, backend = ours(d, bs)
        b = torch_ref(torch, X, Y, bs)
        results.append({"bench": "train", "batch": bs, "ours": a, "torch": b, "ratio": a / b,
                        "torch_threads": TORCH_THREADS, "backend": backend})
        print(f"{bs:>6} {a:>17.0f} {b:>14.0f} {a / b:>6.2f}x", flush=True)
    print("backend:", results[0]["backend"])
    out = Path(os.environ.get("PK_BENCH_OUT", BUILD / "bench"))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "a") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
