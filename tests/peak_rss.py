"""Peak resident set of one program, measured from outside it.

ru_maxrss of a child counts the memory of the process it was forked from
(the high-water mark of the old address space is kept across exec), so a
child forked from a large pytest or benchmark process reports that process's
size. This launcher runs as a fresh, small interpreter: it forks, the child
execs the program, and the parent reports the program's peak with wait4.

    python3 peak_rss.py RESULT -- PROGRAM [ARG...]

writes "PEAK_KIB EXIT_CODE" to RESULT; the program's stdin, stdout and
stderr are the launcher's own. run() does the same from Python.
"""
import os
import subprocess
import sys


def run(argv, stdout=None, stderr=None, cgroup_procs=None, timeout=None):
    """Run ARGV under the launcher: (peak KiB, exit code). CGROUP_PROCS, if
    given, is a cgroup's cgroup.procs file the launcher joins first, so the
    program runs inside that cgroup."""
    import tempfile
    with tempfile.NamedTemporaryFile("r", prefix="peak-rss-") as res:
        cmd = [sys.executable, "-S", os.path.abspath(__file__), res.name]
        if cgroup_procs:
            cmd += ["--cgroup", str(cgroup_procs)]
        subprocess.run(cmd + ["--", *map(str, argv)], stdout=stdout, stderr=stderr,
                       timeout=timeout, check=False)
        text = open(res.name).read().split()
    if len(text) != 2:
        raise RuntimeError(f"peak_rss: the launcher wrote no result for {argv[0]}")
    return int(text[0]), int(text[1])


def main(args):
    result, args = args[0], args[1:]
    if args[:1] == ["--cgroup"]:
        with open(args[1], "w") as f:
            f.write(str(os.getpid()))
        args = args[2:]
    if args[:1] != ["--"] or len(args) < 2:
        sys.exit("usage: peak_rss.py RESULT [--cgroup PROCS] -- PROGRAM [ARG...]")
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(args[1], args[1:])
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    with open(result, "w") as f:
        f.write(f"{ru.ru_maxrss} {os.waitstatus_to_exitcode(status)}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
