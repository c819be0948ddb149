"""The inflater thread of %extract / %download --extract: an archive that
turns bad after many MiB of good members stops the extraction at that
member while the inflater is still running ahead (from a file and from
nginx), keeps what was complete and leaves no temporary file."""
import gzip
import hashlib
import io
import os
import tarfile

import pytest

from pkutil import run_cli

BIG = 6 << 20  # each big member spans several 1 MiB inflate buffers


def leftovers(folder):
    return [str(p) for p in folder.rglob("*") if p.name.endswith(".part") or ".pk-tmp" in p.name]


@pytest.fixture(scope="module")
def bad_late(tmp_path_factory):
    """first.bin (6 MiB), then a member escaping with "..", then 12 MiB more."""
    d = tmp_path_factory.mktemp("late")
    first = os.urandom(BIG)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in (("d/first.bin", first), ("../escape", b"evil"),
                           ("d/after1.bin", os.urandom(BIG)), ("d/after2.bin", os.urandom(BIG))):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    arc = d / "late.tar.gz"
    arc.write_bytes(gzip.compress(buf.getvalue(), compresslevel=1))
    return arc, hashlib.md5(first).hexdigest()


def check_stopped_at_the_bad_member(p, root, out, first_md5):
    assert p.returncode == 1 and "UnsafeInputError" in p.stderr and "escape" in p.stderr, p.stderr
    assert not (root / "escape").exists()
    assert hashlib.md5((out / "d" / "first.bin").read_bytes()).hexdigest() == first_md5
    assert not (out / "d" / "after1.bin").exists()
    assert leftovers(root) == []


def test_extract_stops_at_a_late_bad_member(bad_late, tmp_path):
    arc, first_md5 = bad_late
    out = tmp_path / "out"
    p = run_cli(f"%extract {arc} --to {out}")
    check_stopped_at_the_bad_member(p, tmp_path, out, first_md5)


def test_fused_download_stops_at_a_late_bad_member(bad_late, nginx, tmp_path):
    arc, first_md5 = bad_late
    (nginx.root / "late.tar.gz").write_bytes(arc.read_bytes())
    out, to = tmp_path / "out", tmp_path / "late.tar.gz"
    p = run_cli(f"%download {nginx.url}/late.tar.gz --to {to} --extract {out}")
    check_stopped_at_the_bad_member(p, tmp_path, out, first_md5)
    assert not to.exists()
