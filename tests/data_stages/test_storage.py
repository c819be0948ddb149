"""Where the data is read from: --cold on the stages that read files (the
pages dropped before the read, on this disk and on tmpfs, where the drop has
no effect and is said to have none), the cache and file-system fields of
every record, and the whitepaper's 1283 files through every stage."""
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from pkutil import execute, run_cli, stdout_of

COLD_RE = re.compile(r"^(\w+): --cold: (\d+) files?, .* on (\S+) (\S+); ([\d.]+) % cached before, "
                     r"([\d.]+) % after the drop$", re.M)


def cold_lines(out):
    return {m.group(1): (int(m.group(2)), m.group(3), float(m.group(5)), float(m.group(6)))
            for m in COLD_RE.finditer(out)}


def shm_dir():
    d = Path("/dev/shm")
    if not d.is_dir() or "tmpfs" not in open("/proc/self/mountinfo").read():
        pytest.fail("/dev/shm (tmpfs) is needed for the tmpfs half of this test")
    return d


@pytest.mark.parametrize("where", ["disk", "tmpfs"])
def test_cold_on_every_reading_stage(small_data, tmp_path, where):
    """%md5, %extract, %verify, %load and %train --from with --cold: each says
    how much of its input was cached and what the drop left. On this disk the
    drop empties the page cache and the records say cold; on tmpfs the pages
    stay, the stages say the drop had no effect, and the records say warm."""
    src, tgz = small_data
    if where == "tmpfs":
        base = shm_dir() / f"pk-cold-{os.getpid()}-{tmp_path.name}"
        base.mkdir()
    else:
        base = tmp_path / "disk"
        base.mkdir()
    try:
        shutil.copy(tgz, base / "data.tgz")
        shutil.copy(src / "MANIFEST.md5", base / "MANIFEST.md5")
        x = base / "x"
        rec = tmp_path / "rec.json"
        r = run_cli(f"%md5 {base}/data.tgz",  # everything cached first
                    f"%md5 {base}/data.tgz --cold", f"%extract {base}/data.tgz --to {x} --cold",
                    f"%verify {base}/MANIFEST.md5 --root {x} --cold", f"%load {x} --cold",
                    f"%train --from {x} --epochs 1 --cold --seed 1 --batch-size 32",
                    f"%timings --json {rec}", "%timings", check=True)
        got = cold_lines(r.stdout)
        assert set(got) == {"md5", "extract", "verify", "load", "train"}, r.stdout
        assert got["verify"][0] == 5 and got["load"][0] == 3 and got["train"][0] == 2
        for stage, (_, fstype, before, after) in got.items():
            assert before > 90, (stage, r.stdout)  # just written or read
            if where == "tmpfs":
                assert fstype == "tmpfs" and after > 90, (stage, r.stdout)
            else:
                assert fstype != "tmpfs" and after < 1, (stage, r.stdout)
        said = r.stdout.count("the drop had no effect")
        assert said == (5 if where == "tmpfs" else 0), r.stdout
        stages = json.loads(rec.read_text())["stages"]
        caches = [(s["magic"], s["cache"]) for s in stages]
        want = "warm" if where == "tmpfs" else "cold"
        assert caches == [("md5", "warm"), ("md5", want), ("extract", want), ("verify", want),
                          ("load", want), ("train", want)], caches
        types = {s["fs"].split()[0] for s in stages}
        assert types == {"tmpfs"} if where == "tmpfs" else ("?" not in types and "tmpfs" not in types)
        assert all(0 <= s["resident"] <= 1 for s in stages)
        assert "cache" in r.stdout and "file system" in r.stdout
    finally:
        if where == "tmpfs":
            shutil.rmtree(base, ignore_errors=True)


def test_records_without_files_have_no_cache(tmp_path):
    rec = tmp_path / "r.json"
    run_cli(f"%mkdata {tmp_path}/d --train-batches 1 --images-per-batch 20",
            f"%timings --json {rec}", check=True)
    s = json.loads(rec.read_text())["stages"][0]
    assert s["stage"] == "mkdata" and s["cache"] is None and s["fs"] is None


def test_compare_shows_where_each_run_read(tmp_path, small_data):
    src, tgz = small_data
    r = run_cli(f"%md5 {tgz} --cold", "%timings --label one --clear", f"%md5 {tgz}",
                "%timings --label two", "%timings --compare one two", check=True)
    table = r.stdout.split("one vs two")[-1]
    assert "one read from" in table and "two read from" in table
    assert re.search(r"integrity .*cold \S+ \S+ .*warm \S+ \S+", table), table


def test_whitepaper_scale_1283_files(kernel, tmp_path):
    """1283 batch files (a few images each) through %mkdata, %extract,
    %verify, %load, %train --from and %timings in a kernel: every stage
    counts all the files, and each shows one progress display, not one a
    file."""
    km, kc = kernel
    d, x = tmp_path / "d", tmp_path / "x"
    cells = [f"%mkdata {d} --train-batches 1282 --images-per-batch 3",
             f"%extract {d}/cifar-10-python.tar.gz --to {x}",
             f"%verify {d}/MANIFEST.md5 --root {x}",
             f"%load {x}",
             f"%train --from {x} --epochs 1 --batch-size 8 --seed 1 --window 16",
             f"%timings --json {tmp_path}/rec.json"]
    outs = {}
    for cell in cells:
        reply, msgs = execute(kc, cell, timeout=600)
        out = stdout_of(msgs)
        assert reply["status"] == "ok", (cell, out, reply)
        new_displays = [m for m in msgs if m["msg_type"] == "display_data"
                        and "pk-progress" in str(m["content"].get("data", {}).get("text/html", ""))]
        assert len(new_displays) <= 2, (cell, len(new_displays))  # one bar (two splits for %load)
        outs[cell.split()[0]] = out
    assert "1285 files (3849 images)" in outs["%mkdata"]
    assert "1285 files" in outs["%extract"]
    assert re.search(r"verify: 1285 files, .* all OK", outs["%verify"])
    assert "train: 1282 files, 3846 images" in outs["%load"]
    assert "train: 1 epoch, 3846 images" in outs["%train"]
    assert "(1282 files in the set)" in outs["%train"]
    rec = json.loads((tmp_path / "rec.json").read_text())["stages"]
    assert [(s["stage"], s["items"]) for s in rec] == [
        ("mkdata", 3849), ("extract", 1285), ("verify", 1285), ("pickled", 3849), ("train", 3846)]
    assert all(s["fs"] for s in rec[1:])
