"""Fixtures of the Python package's tests (helpers are in pyext.py)."""
import hashlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyext  # noqa: E402
from pkutil import run_cli  # noqa: E402


@pytest.fixture(scope="session")
def package():
    if not (pyext.PKG / "pipekernel" / "_core.so").exists():
        pytest.fail(f"{pyext.PKG} holds no built package: run make python first")
    return pyext.PKG


@pytest.fixture(scope="session")
def cifar(tmp_path_factory, package):
    """A small CIFAR-10 folder made by %mkdata: 2 training batches and a
    test batch of 500 images (the folder holding cifar-10-batches-py/)."""
    d = tmp_path_factory.mktemp("cifar") / "data"
    run_cli(f"%mkdata {d} --train-batches 2 --images-per-batch 500 --seed 3", check=True)
    return d


@pytest.fixture(scope="session")
def cifar_b(tmp_path_factory, package):
    """Another dataset (other seed, other sizes), to replace the first."""
    d = tmp_path_factory.mktemp("cifar-b") / "data"
    run_cli(f"%mkdata {d} --train-batches 1 --images-per-batch 300 --seed 9", check=True)
    return d


@pytest.fixture(scope="session")
def big_manifest(tmp_path_factory):
    """Two 128 MiB files and their md5 manifest, for a %verify that runs a
    while."""
    d = tmp_path_factory.mktemp("big")
    lines = []
    for i in range(2):
        block = bytes((i * 7 + k) % 251 for k in range(1 << 16))
        h = hashlib.md5()
        with open(d / f"f{i}", "wb") as f:
            for _ in range(2048):
                f.write(block)
                h.update(block)
        lines.append(f"{h.hexdigest()}  f{i}\n")
    (d / "MANIFEST.md5").write_text("".join(lines))
    return d / "MANIFEST.md5"


@pytest.fixture
def py(package):
    return pyext.run_py
