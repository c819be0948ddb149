"""Helpers shared by the Python suites (import as `from pkutil import ...`)."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("PK_BUILD", ROOT / "build"))
PK_BIN = Path(os.environ.get("PK_BIN", BUILD / "pipekernel"))
# How long to wait before calling something hung, in slow builds: `make check`
# sets PK_TEST_TIMEOUT_MULTIPLIER for the sanitizer build (tests/run.c reads
# the same variable for the C tests).
TIMEOUT_MULTIPLIER = float(os.environ.get("PK_TEST_TIMEOUT_MULTIPLIER") or 1)


def scaled(seconds):
    """A timeout in seconds, multiplied for slow builds."""
    return seconds * TIMEOUT_MULTIPLIER


def run_cli(*cells, cwd=None, env=None, timeout=600, check=False, stdin=None):
    """Run `pipekernel run CELL...`; returns CompletedProcess (text)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([str(PK_BIN), "run", *cells], cwd=cwd, env=e,
                       capture_output=True, text=True, timeout=scaled(timeout),
                       input=stdin)
    if check and p.returncode != 0:
        raise AssertionError(f"pipekernel run failed ({p.returncode}):\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def execute(kc, code, timeout=120, allow_stdin=False, stop_on_error=True):
    """Run code on a jupyter_client blocking client.
    Returns (reply_content, [iopub messages of the request up to idle])."""
    timeout = scaled(timeout)
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have(cmd):
    return shutil.which(cmd) is not None


def run_small_fs(mounts, cells, listing, cwd=None, env=None):
    """Runs `pipekernel run CELLS` with tmpfs mounts [(DIR, SIZE)] in a private mount
    namespace (env: variables to add for it); returns smallfs.py's report (rc, stdout, stderr,
    files left under listing)."""
    unshare = shutil.which("unshare")
    if not unshare:
        pytest.fail("unshare (util-linux) is missing: the disk-full tests need a private tmpfs")
    opts = ",huge=never" if os.path.exists("/sys/kernel/mm/transparent_hugepage") else ""
    spec = {"pk": str(PK_BIN), "mounts": [[str(d), str(s) + opts] for d, s in mounts],
            "cells": cells, "cwd": str(cwd) if cwd else None, "list": [str(x) for x in listing]}
    cmd = [unshare, "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        cmd.append("--map-root-user")
    e = dict(os.environ, **(env or {}))
    p = subprocess.run(cmd + [sys.executable, str(Path(__file__).resolve().parent / "smallfs.py"),
                              json.dumps(spec)], capture_output=True, text=True, env=e,
                       timeout=scaled(600))
    if p.returncode != 0:
        pytest.fail(f"cannot run with a small tmpfs ({' '.join(cmd)}): rc {p.returncode}\n{p.stderr}")
    return json.loads(p.stdout)
