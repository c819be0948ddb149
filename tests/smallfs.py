"""Runs `pipekernel run CELL...` with small tmpfs file systems mounted, then
lists what is left under some folders. Meant to run in a private mount
namespace (`unshare --mount`, plus `--map-root-user` when not root; see
run_small_fs in test_faults.py), so the mounts vanish with the process and a
failing test leaves nothing mounted.

Usage: smallfs.py JSON  with {"pk": BIN, "mounts": [[DIR, SIZE], ...],
"cells": [...], "cwd": DIR or null, "list": [DIR, ...]}; prints JSON
{"rc", "stdout", "stderr", "files": {path: {"size", "md5"}}, "free": {DIR: bytes}}.
Exit status 3 when a mount fails."""
import hashlib
import json
import os
import subprocess
import sys


def main():
    spec = json.loads(sys.argv[1])
    for path, size in spec["mounts"]:
        os.makedirs(path, exist_ok=True)
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path],
                           capture_output=True, text=True)
        if m.returncode:
            sys.stderr.write(f"mount -t tmpfs on {path} failed: {m.stderr}")
            sys.exit(3)
    p = subprocess.run([spec["pk"], "run", *spec["cells"]], capture_output=True, text=True,
                       cwd=spec.get("cwd"), timeout=300)
    files = {}
    for top in spec["list"]:
        for dp, _, fns in os.walk(top):
            for f in fns:
                fp = os.path.join(dp, f)
                with open(fp, "rb") as fh:
                    files[fp] = {"size": os.path.getsize(fp),
                                 "md5": hashlib.md5(fh.read()).hexdigest()}
    free = {}
    for path, _ in spec["mounts"]:
        st = os.statvfs(path)
        free[path] = st.f_bavail * st.f_frsize
    json.dump({"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "files": files,
               "free": free}, sys.stdout)


if __name__ == "__main__":
    main()
