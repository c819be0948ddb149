"""Helpers of the train suite: small CIFAR folders, the PyTorch reference
network, and the trainer's documented shuffle reproduced in Python."""
import os
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"]
M64 = (1 << 64) - 1


def write_cifar(root, train, test):
    """train/test: (uint8 N x 3072, labels). A cifar-10-batches-py folder."""
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in (("data_batch_1", train), ("test_batch", test)):
        obj = {"batch_label": name, "labels": [int(v) for v in y], "data": np.ascontiguousarray(x),
               "filenames": ["f%d.png" % i for i in range(len(y))]}
        (d / name).write_bytes(pickle.dumps(obj, protocol=2))
    meta = {"num_cases_per_batch": len(train[1]), "label_names": NAMES, "num_vis": 3072}
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def learnable(rng, n):
    """Images whose class is visible: a class colour and a class stripe
    pattern under noise."""
    y = rng.integers(0, 10, size=n)
    base = rng.integers(0, 80, size=(n, 3, 32, 32))
    img = base.astype(np.int32)
    for c in range(10):
        m = y == c
        img[m, c % 3] += 90 + 10 * (c // 3)
        if c >= 3:
            img[m, :, ::(c % 4) + 2, :] += 60
        if c >= 6:
            img[m, :, :, ::(c % 3) + 2] += 50
    return np.clip(img, 0, 255).astype(np.uint8).reshape(n, 3072), y.astype(np.uint8)


class SplitMix:
    def __init__(self, s):
        self.s = s & M64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)


def epoch_orders(seed, n, epochs):
    """The trainer's shuffle (stages/train/cnn.h): one splitmix64 generator seeded
    with seed ^ 0x5EED5EED5EED5EED; each epoch Fisher-Yates from i = n-1 down."""
    r = SplitMix(seed ^ 0x5EED5EED5EED5EED)
    out = []
    for _ in range(epochs):
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = r.next() % (i + 1)
            p[i], p[j] = p[j], p[i]
        out.append(p)
    return out


def make_net(torch):
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = x.view(-1, 16 * 5 * 5)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)

    return Net()


def normalise(torch, x_uint8):
    t = torch.from_numpy(np.asarray(x_uint8).reshape(-1, 3, 32, 32))
    return (t.float() / 255.0 - 0.5) / 0.5
