"""tools/gpu-check.sh where no GPU is: its options, the reasons it gives for
not running (no nvcc, no device answered, an architecture nvcc lacks), and a
whole rehearsal through the CPU emulation (--emulated) with its summary."""
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "gpu-check.sh"


def run(*args, env=None, timeout=60):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=e,
                          timeout=timeout)


def tool(folder, name, body):
    p = folder / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


@pytest.fixture
def fake_cuda(tmp_path):
    """A folder with an nvcc that knows compute_80 and compute_90 and a
    device query that finds nothing; PATH without nvidia-smi."""
    b = tmp_path / "bin"
    b.mkdir()
    tool(b, "nvcc", 'case "$1" in --version) echo "Cuda compilation tools, release 12.4, V12.4.0";;\n'
                    '--list-gpu-arch) printf "compute_80\\ncompute_90\\n";; esac\n')
    tool(b, "__nvcc_device_query", "echo 'no CUDA-capable device is detected' >&2; exit 1\n")
    return {"NVCC": str(b / "nvcc"), "PATH": "/usr/bin:/bin", "bin": b}


@pytest.mark.parametrize("args", [["--bogus"], ["--arch"], ["--arch", "9x"], ["--images", "0"],
                                  ["--images", "many"]])
def test_bad_options(args, tmp_path):
    r = run(*args, "--out", str(tmp_path))
    assert r.returncode == 64, r
    assert r.stderr.startswith("gpu-check: ")


def test_help_lists_the_exit_codes():
    r = run("--help")
    assert r.returncode == 0 and "Exit: 0 every check passed" in r.stdout
    assert "set -u" not in r.stdout


def test_no_nvcc(tmp_path):
    r = run("--out", str(tmp_path), env={"NVCC": "/nonexistent/nvcc", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "no nvcc (/nonexistent/nvcc)" in r.stderr
    assert (tmp_path / "summary.txt").read_text().startswith("gpu-check: NOT RUN: no nvcc")


def test_no_device(fake_cuda, tmp_path):
    env = {k: v for k, v in fake_cuda.items() if k != "bin"}
    r = run("--out", str(tmp_path), env=env)
    assert r.returncode == 2
    assert "no CUDA device answered (nvidia-smi: not found; __nvcc_device_query: " \
           "no CUDA-capable device is detected)" in r.stderr


def test_architecture_nvcc_lacks(fake_cuda, tmp_path):
    tool(fake_cuda["bin"], "nvidia-smi", 'echo "NVIDIA B200, 10.0, 570.00, 183359 MiB"\n')
    env = {"NVCC": fake_cuda["NVCC"], "PATH": f"{fake_cuda['bin']}:/usr/bin:/bin"}
    r = run("--out", str(tmp_path), env=env)
    assert r.returncode == 2
    assert "nvcc 12.4 does not build for sm_100" in r.stderr


@pytest.mark.slow
def test_emulated_rehearsal(tmp_path):
    r = run("--emulated", "--images", "16", "--out", str(tmp_path),
            env={"CNN_TEST_RUNS": "4x2"}, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = (tmp_path / "summary.txt").read_text()
    assert summary.startswith("== gpu-check summary (EMULATED: no GPU was used)")
    assert re.search(r"^cuda_emu_vs_cpu +passed \(runs 4x2\)$", summary, re.M), summary
    for bs in (4, 32, 128):
        assert re.search(rf"^ +{bs} +\d+ +\d+ +\d+$", summary, re.M), summary
    assert re.search(r"^result +PASS in \d+ s$", summary, re.M), summary
