"""Shared fixtures of the Python suite.

PK_BIN     the pipekernel binary under test (make test sets it)
PK_BUILD   the build folder; tests write scratch data under PK_BUILD/tmp
JUPYTER_PATH  points at PK_BUILD/jupyter, which holds the test kernelspec
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("PK_BUILD", ROOT / "build"))
PK_BIN = Path(os.environ.get("PK_BIN", BUILD / "pipekernel"))

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def pk_bin():
    if not PK_BIN.exists():
        pytest.fail(f"{PK_BIN} is missing: run make first")
    return PK_BIN


@pytest.fixture
def scratch(tmp_path):
    """A fresh folder per test."""
    return tmp_path


def run_cli(*cells, cwd=None, env=None, timeout=600, check=False, stdin=None):
    """Run `pipekernel run CELL...`; returns CompletedProcess (text)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([str(PK_BIN), "run", *cells], cwd=cwd, env=e,
                       capture_output=True, text=True, timeout=timeout,
                       input=stdin)
    if check and p.returncode != 0:
        raise AssertionError(f"pipekernel run failed ({p.returncode}):\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def kernel():
    """A started pipekernel with a ready blocking client: (km, kc)."""
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="pipekernel", startup_timeout=30)
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def execute(kc, code, timeout=120, allow_stdin=False, stop_on_error=True):
    """Run code; returns (reply_content, [iopub messages up to idle])."""
    msg_id = kc.execute(code, allow_stdin=allow_stdin, stop_on_error=stop_on_error)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    out = []
    while True:
        m = kc.get_iopub_msg(timeout=timeout)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
        out.append(m)
    return reply["content"], out


def stdout_of(msgs, name="stdout"):
    return "".join(m["content"]["text"] for m in msgs
                   if m["msg_type"] == "stream" and m["content"]["name"] == name)


def have(cmd):
    return shutil.which(cmd) is not None
