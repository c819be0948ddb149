#!/usr/bin/env python3
"""Run the benchmarks: every bench/bench_*.py (or those named on the command
line, e.g. `make bench BENCH=md5`), each against its Python reference in the
same run. Each script prints its own table; results are appended as JSON
lines to $PK_BUILD/bench/results.jsonl."""
import os
import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
names = sys.argv[1:]
scripts = sorted(here.glob("bench_*.py"))
if names:
    scripts = [s for s in scripts if any(n in s.stem for n in names)]
if not scripts:
    print("no benchmark selected", file=sys.stderr)
    sys.exit(2)
out = Path(os.environ.get("PK_BUILD", here.parent / "build")) / "bench"
out.mkdir(parents=True, exist_ok=True)
rc = 0
for s in scripts:
    print(f"== {s.stem}", flush=True)
    r = subprocess.run([sys.executable, str(s)], env=dict(os.environ, PK_BENCH_OUT=str(out)))
    rc |= r.returncode
sys.exit(rc)
