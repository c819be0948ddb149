"""Helpers of the Python package's tests (tests/python/).

The package under test is the importable copy `make python` builds in
$PK_BUILD/python; every Python that imports it here is a child process
(a script, an ipykernel, papermill), with env() as its environment. For a
sanitized build (make check) the extension needs the ASan runtime loaded
first: PK_PRELOAD (set by the Makefile) goes to LD_PRELOAD, with the
interpreter's own allocations through malloc (so ASan sees them too) and
leak detection off (an interpreter does not free everything at exit; the
valgrind session checks the extension's leaks).
"""
import json
import os
import subprocess
import sys
import tempfile
import textwrap

from pkutil import BUILD

PKG = BUILD / "python"
PYTHON = sys.executable
PRELOAD = os.environ.get("PK_PRELOAD", "").strip()


def env(extra=None):
    """The environment of a Python child that imports the package."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(PKG)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    if PRELOAD:
        e["LD_PRELOAD"] = PRELOAD
        e["ASAN_OPTIONS"] = ":".join(
            o for o in [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"] if o)
        e["PYTHONMALLOC"] = "malloc"
    if extra:
        e.update(extra)
    return e


def check_sanitizers(stderr):
    assert "Sanitizer" not in stderr and "runtime error:" not in stderr, stderr[-4000:]


def run_py(code, cwd, timeout=300, extra_env=None, input=None):
    """Runs a script (dedented) in a fresh interpreter with the package
    importable, `input` on its stdin (else none: end of input); it prints its
    results as one JSON line starting with 'RESULT '. Returns (that JSON's
    value, CompletedProcess)."""
    io = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    fd, script = tempfile.mkstemp(prefix="pk-test-", suffix=".py")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(textwrap.dedent(code))
        p = subprocess.run([PYTHON, script], cwd=cwd, env=env(extra_env), capture_output=True,
                           text=True, timeout=timeout, **io)
    finally:
        os.unlink(script)
    check_sanitizers(p.stderr)
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no RESULT line\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):]), p
