"""%md5 and %verify against hashlib."""
import hashlib
import shutil

import pytest

from pkutil import run_cli


def md5(p):
    return hashlib.md5(p.read_bytes()).hexdigest()


def test_md5_matches_hashlib(small_data, pk_bin):
    d, tgz = small_data
    h = md5(tgz)
    p = run_cli(f"%md5 {tgz}", check=True)
    assert h in p.stdout and "integrity:" in p.stdout
    p = run_cli(f"%md5 {tgz} --expect {h.upper()}", check=True)
    assert "integrity:" in p.stdout and "md5 OK" in p.stdout


def test_md5_mismatch_shows_both(small_data, pk_bin):
    d, tgz = small_data
    bad = "0123456789abcdef0123456789abcdef"
    p = run_cli(f"%md5 {tgz} --expect {bad}")
    assert p.returncode == 1
    assert "ChecksumError" in p.stderr and bad in p.stderr and md5(tgz) in p.stderr
    p = run_cli(f"%md5 {tgz} --expect xyz")
    assert p.returncode != 0 and "32 hex digits" in p.stderr


def test_md5_empty_and_missing(tmp_path, pk_bin):
    e = tmp_path / "empty"
    e.write_bytes(b"")
    p = run_cli(f"%md5 {e} --expect d41d8cd98f00b204e9800998ecf8427e", check=True)
    p = run_cli(f"%md5 {tmp_path / 'nope'}")
    assert p.returncode == 1 and "FileNotFoundError" in p.stderr and "nope" in p.stderr


def copy_set(small_data, tmp_path):
    d, _ = small_data
    root = tmp_path / "root"
    shutil.copytree(d / "cifar-10-batches-py", root / "cifar-10-batches-py")
    return d / "MANIFEST.md5", root


def test_verify_ok(small_data, tmp_path, pk_bin):
    man, root = copy_set(small_data, tmp_path)
    for jobs in ("", "--jobs 1", "--jobs 3"):
        p = run_cli(f"%verify {man} --root {root} {jobs}", check=True)
        assert "verify: 5 files" in p.stdout and "all OK" in p.stdout
    # default root: the manifest's folder (%mkdata's own folder)
    p = run_cli(f"%verify {man}", check=True)
    assert "all OK" in p.stdout


def test_verify_reports_every_problem(small_data, tmp_path, pk_bin):
    man, root = copy_set(small_data, tmp_path)
    b = root / "cifar-10-batches-py"
    (b / "data_batch_2").unlink()                       # missing
    raw = bytearray((b / "test_batch").read_bytes())    # corrupted: one bit
    raw[len(raw) // 2] ^= 1
    (b / "test_batch").write_bytes(raw)
    (b / "stray.bin").write_bytes(b"x")                 # extra
    (root / "outside.txt").write_text("not covered")    # not in a covered folder: ignored
    for jobs in ("--jobs 1", "--jobs 2"):
        p = run_cli(f"%verify {man} --root {root} {jobs}")
        assert p.returncode == 1, p.stdout + p.stderr
        out = p.stdout
        assert "ChecksumError" in p.stderr
        assert "1 missing, 1 mismatching, 0 unreadable, 1 extra" in p.stderr
        lines = out.splitlines()
        row = lambda word, name: any(word in l and name in l for l in lines)
        assert row("missing", "cifar-10-batches-py/data_batch_2")
        assert row("mismatch", "cifar-10-batches-py/test_batch")
        assert row(hashlib.md5(bytes(raw)).hexdigest(), "cifar-10-batches-py/test_batch")
        assert row("extra", "cifar-10-batches-py/stray.bin")
        assert "outside.txt" not in out
        assert "3 OK, 1 missing, 1 mismatching" in out


def test_verify_manifest_errors(tmp_path, pk_bin):
    m = tmp_path / "M.md5"
    m.write_text("d41d8cd98f00b204e9800998ecf8427e  a\nbogus line here that is long enough\n")
    p = run_cli(f"%verify {m}")
    assert p.returncode == 1 and "FormatError" in p.stderr and "M.md5:2" in p.stderr
    m.write_text("d41d8cd98f00b204e9800998ecf8427e  ../../etc/passwd\n")
    p = run_cli(f"%verify {m}")
    assert p.returncode == 1 and "UnsafeInputError" in p.stderr and "M.md5:1" in p.stderr
    p = run_cli(f"%verify {tmp_path / 'none.md5'}")
    assert p.returncode == 1 and "FileNotFoundError" in p.stderr
    p = run_cli(f"%verify {m} --root {tmp_path / 'nodir'}")
    assert p.returncode == 1 and "nodir" in p.stderr


@pytest.mark.parametrize("text,needle", [
    ("nothex  a\n", "line of"),
    ("g" * 32 + "  a\n", ":1: expected 32 hex digits"),
    ("0" * 32 + " abc\n", "two spaces"),
    ("\n# comment\n" + "0" * 32 + "  ../a\n", ":3: path \"../a\""),
    ("0" * 32 + "  /etc/passwd\n", "absolute"),
    ("0" * 32 + "  a\n" + "1" * 32 + "  a\n", ":2: \"a\" is listed twice (also on line 1)"),
])
def test_verify_manifest_line_errors(tmp_path, pk_bin, text, needle):
    m = tmp_path / "M.md5"
    m.write_text(text)
    p = run_cli(f"%verify {m}")
    assert p.returncode == 1 and needle in p.stderr, p.stderr


def test_verify_extras_in_nested_folders(tmp_path, pk_bin):
    """Extras are looked for in every folder the manifest lists a file in; a
    folder there is extra only when no listed path lies below it. The names
    are picked so that sorted paths interleave folders ("a/b/y" < "a/b0" <
    "a/c/d/z"), and "a/b-" sorts before "a/b/"."""
    root = tmp_path / "r"
    files = {"a/x": b"1", "a/b/y": b"2", "a/b0": b"3", "a/c/d/z": b"4", "a/b-": b"5", "top": b"6"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    man = tmp_path / "M.md5"
    man.write_text("".join(f"{hashlib.md5(d).hexdigest()}  {r}\n" for r, d in files.items()))
    p = run_cli(f"%verify {man} --root {root}", check=True)
    assert "all OK" in p.stdout
    (root / "a/e").mkdir()                 # a folder no listed path lies below: extra
    (root / "a/b/stray").write_bytes(b"")  # a file in a listed folder: extra
    (root / "a/c/d/w").write_bytes(b"")    # the same, deeper
    (root / "a/c/q").write_bytes(b"")      # a/c lists no file itself: not looked at
    p = run_cli(f"%verify {man} --root {root}")
    assert p.returncode == 1 and "3 extra" in p.stderr, p.stdout + p.stderr
    extras = sorted(l.split()[1] for l in p.stdout.splitlines() if l.startswith("extra"))
    assert extras == ["a/b/stray", "a/c/d/w", "a/e"], p.stdout
