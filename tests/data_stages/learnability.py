"""Trains the PyTorch CIFAR-10 tutorial CNN on a %mkdata folder and prints the
test accuracy (not a pytest test: it takes minutes on a CPU).

    python3 tests/data_stages/learnability.py DIR/cifar-10-batches-py [--epochs 2] [--limit N]
"""
import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))
from trainutil import make_net  # noqa: E402  (the tutorial's Net, as the trainer tests use it)


def load(path):
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    x = d["data"].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    x = (x - 0.5) / 0.5  # the tutorial's Normalize((0.5,)*3, (0.5,)*3)
    return torch.from_numpy(x), torch.tensor(d["labels"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="train images (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    o = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(o.threads)
    root = Path(o.folder)
    parts = [load(p) for p in sorted(root.glob("data_batch_*"))]
    xtr = torch.cat([p[0] for p in parts])
    ytr = torch.cat([p[1] for p in parts])
    if o.limit:
        xtr, ytr = xtr[: o.limit], ytr[: o.limit]
    xte, yte = load(root / "test_batch")
    net = make_net(torch)
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    t0 = time.time()
    for ep in range(o.epochs):
        perm = torch.randperm(len(xtr))
        run = 0.0
        for i in range(0, len(xtr), 4):
            idx = perm[i : i + 4]
            opt.zero_grad()
            loss = crit(net(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            run += loss.item()
            if (i // 4) % 2000 == 1999:
                print(f"[{ep + 1}, {i // 4 + 1:5d}] loss: {run / 2000:.3f}", flush=True)
                run = 0.0
        with torch.no_grad():
            acc = (net(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {ep + 1}: test accuracy {100 * acc:.1f} % ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
