"""The Python package under valgrind memcheck (`make valgrind`).

Runs one Python process under valgrind (PYTHONMALLOC=malloc, so every
allocation is valgrind's) with the package of PK_BUILD/python (an -O1 -g
build without CUDA), through a session that uses every part of the
extension: runs with output, displays and progress, values, errors of
several classes, %input answered on stdin, a run interrupted by SIGINT and
one by pipekernel.interrupt(), the data stages and %train, dataset views
(numpy and a memoryview) kept across loads that replace the dataset and
released again, timings and add_timing.

The interpreter itself is not checked: a finding counts when its stack
holds a frame of the project's code (python/src, stages/, kernel/),
for errors (invalid access, uninitialised value, bad free) and for
definitely or indirectly lost blocks. Exit status 0 clean, 1 otherwise;
the log is kept in $PK_BUILD/valgrind/.
"""
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUILD = Path(os.environ.get("PK_BUILD", ROOT / "build-valgrind"))
PKG = BUILD / "python"
WAIT = 1800  # valgrind runs the interpreter 20-50x slower

SESSION = r'''
import gc, os, signal, sys, threading, time
import numpy as np
import pipekernel
from pipekernel import _core

W = sys.argv[1]
d, e = W + "/d", W + "/e"
pipekernel.run(f"%mkdata {d} --train-batches 1 --images-per-batch 60 --seed 1")
pipekernel.run(f"%mkdata {e} --train-batches 2 --images-per-batch 20 --seed 2 --no-gzip")
pipekernel.run(f"%md5 {d}/cifar-10-python.tar.gz\n%extract {d}/cifar-10-python.tar.gz --to {W}/x\n"
               f"%verify {d}/MANIFEST.md5 --root {W}/x\n%set A=1\n%echo a=$A --stderr")
assert pipekernel.run("%pwd") == os.getcwd()
pipekernel.run("%input 'who? ' --var WHO")
assert pipekernel.run("%set WHO") == "valgrind"
ds = pipekernel.load(d, hash="md5")
x, lab = ds.train.data, ds.train.labels
mv = memoryview(_core.dataset()["train"]["pixels"])
want = ds.train.pixels_md5
pipekernel.run("%meta\n%preview --n 3 --seed 1\n%html <b>x</b>\n%time %echo t")
pipekernel.run("%train --epochs 1 --batch-size 4 --log-every 5 --threads 1")
pipekernel.load(e, md5=False)        # replaces the dataset under live views
del ds
gc.collect()
import hashlib
assert hashlib.md5(x.tobytes()).hexdigest() == want
assert mv.nbytes == x.nbytes and mv.shape == x.shape and mv.tobytes() == x.tobytes()
assert int(lab.sum()) >= 0
pipekernel.load(d, split="train")
for line in ["%md5 /nonexistent", f"%md5 {d}/cifar-10-python.tar.gz --expect {'0' * 32}",
             "%sleep x", "%nosuch", "%load /nonexistent"]:
    try:
        pipekernel.run(line)
        raise SystemExit(f"no error from {line}")
    except pipekernel.StageError:
        pass
def later(how):
    time.sleep(1.0)
    if how == "signal":
        os.kill(os.getpid(), signal.SIGINT)
    else:
        pipekernel.interrupt()
for how in ("signal", "api"):
    t = threading.Thread(target=later, args=(how,))
    t.start()
    try:
        pipekernel.run("%sleep 60")
        raise SystemExit("not interrupted")
    except KeyboardInterrupt:
        pass
    t.join()
pipekernel.add_timing("train", 0.5, items=10)
assert [r["stage"] for r in pipekernel.timings()][-1] == "train"
pipekernel.run("%timings --chart")
del x, lab, mv
gc.collect()
print("session done", flush=True)
'''


def valgrind_cmd(log):
    return ["valgrind", "--tool=memcheck", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--num-callers=40",
            f"--fullpath-after={ROOT}/", f"--log-file={log}"]


OURS = re.compile(r"\((?:python/src|stages|kernel)/[^)]*:\d+\)")


def our_findings(text):
    """Error and definite/indirect leak records of the log with a frame of
    the project's code."""
    out = []
    for block in re.split(r"\n==\d+== \n", text):
        lines = [ln.split("== ", 1)[-1] for ln in block.splitlines()]
        if not lines:
            continue
        head = next((ln for ln in lines if ln.strip()), "")
        leak = re.search(r"are (definitely|indirectly) lost", head)
        error = re.match(r"(Invalid |Conditional jump|Use of uninitialised|Syscall param|"
                         r"Mismatched free|Source and destination overlap|Argument)", head)
        if (leak or error) and any(OURS.search(ln) for ln in lines):
            out.append("\n".join(lines))
    return out


def main():
    if not (PKG / "pipekernel" / "_core.so").exists():
        sys.exit(f"{PKG} holds no built package: make valgrind builds it")
    if subprocess.run(["valgrind", "--version"], capture_output=True).returncode != 0:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    logdir = BUILD / "valgrind"
    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / "python.%p.log"
    for old in logdir.glob("python.*.log"):
        old.unlink()
    work = tempfile.mkdtemp(prefix="pk-valgrind-py-")
    env = dict(os.environ, PYTHONPATH=str(PKG), PYTHONMALLOC="malloc",
               PYTHONDONTWRITEBYTECODE="1", HOME=work)
    print(f"valgrind python session: log {logdir}", flush=True)
    p = subprocess.run(valgrind_cmd(log) + [sys.executable, "-c", SESSION, work], cwd=work,
                       env=env, input="valgrind\n", capture_output=True, text=True,
                       timeout=WAIT)
    text = "\n".join(q.read_text(errors="replace") for q in sorted(logdir.glob("python.*.log")))
    summary = re.findall(r"(ERROR SUMMARY: .*|definitely lost: .*|indirectly lost: .*)", text)
    print("valgrind: " + "\nvalgrind: ".join(summary))
    problems = []
    if p.returncode != 0 or "session done" not in p.stdout:
        problems.append(f"the session failed (exit {p.returncode}):\n{p.stdout[-3000:]}\n"
                        f"{p.stderr[-3000:]}")
    found = our_findings(text)
    if found:
        problems.append(f"{len(found)} finding(s) in the project's code:\n\n" + "\n\n".join(found[:20]))
    if problems:
        print("valgrind python session FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("valgrind python session: clean (no error or lost block in the project's code)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
