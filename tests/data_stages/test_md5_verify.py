"""%md5 and %verify against hashlib; what is not a regular file, what lies
outside the root and names with control bytes."""
import hashlib
import os
import re
import shutil
import socket
import stat

import pytest

from pkutil import execute, run_cli, stdout_of


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


# ---- files that are not files: a FIFO is never waited on ------------------------
# open(2) of a FIFO waits for a writer; a stage waiting there never saw an
# interrupt, so the cell (and every cell after it, in a kernel) hung. Every path
# a user names is opened without blocking and refused unless it is a regular
# file (or a folder where one is meant): each cell below ends at once with an
# error that says what is there.
def test_no_data_stage_waits_on_a_fifo(tmp_path, small_data, pk_bin):
    d, tgz = small_data
    f = tmp_path / "fifo"
    os.mkfifo(f)
    os.mkfifo(tmp_path / "p.tgz.part")  # what --resume continues
    os.symlink("/dev/zero", tmp_path / "dev")
    cells = [
        (f"%md5 {f}", "the file is a FIFO, not a regular file"),
        (f"%verify {f} --root {tmp_path}", "the manifest is a FIFO, not a regular file"),
        (f"%verify {d / 'MANIFEST.md5'} --root {f}", "the root (--root) is a FIFO, not a folder"),
        (f"%download file://{tgz} --to {tmp_path / 'a.tgz'} --verify {f}",
         "the manifest is a FIFO, not a regular file"),
        (f"%download https://127.0.0.1:1/x --to {tmp_path / 'b'} --cacert {f}",
         "the CA bundle is a FIFO, not a regular file"),
        (f"%download file://{f} --to {tmp_path / 'c'}", "the file the URL names is a FIFO"),
        (f"%download file://{tgz} --to {tmp_path / 'p.tgz'} --resume",
         "the partial download is a FIFO, not a regular file"),
        (f"%extract {tmp_path / 'dev'} --to {tmp_path / 'x'}", "the archive is a character device"),
    ]
    for cell, says in cells:
        p = run_cli(cell, timeout=30)
        assert p.returncode == 1, (cell, p.stdout, p.stderr)
        assert "UsageError" in p.stderr and says in p.stderr, (cell, p.stderr)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "p.tgz.part").st_mode)  # neither removed nor written
    assert not (tmp_path / "x").exists()


def test_md5_of_a_fifo_in_the_kernel(kernel, tmp_path):
    """In the kernel the stage thread never saw the interrupt: the cell and every
    cell after it hung until a restart. Now the cell fails and the next one runs."""
    km, kc = kernel
    f = tmp_path / "fifo"
    os.mkfifo(f)
    reply, _ = execute(kc, f"%md5 {f}", timeout=30)
    assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
    assert "is a FIFO" in reply["evalue"], reply
    reply, out = execute(kc, "%echo still here", timeout=30)
    assert reply["status"] == "ok" and "still here" in stdout_of(out)


# ---- %verify never reads outside its root ---------------------------------------
NL = b"\n"


def test_verify_symlinks_out_of_the_root_are_reported_not_read(tmp_path, pk_bin):
    """A symlink in the root to a file or folder outside it: reported as
    "outside", never read (no md5 of the outside file is shown) and never listed
    (the names in the outside folder do not appear). A link that stays inside
    is followed, by the rule %extract creates links by."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret\n")
    (outside / "hidden-name-1").write_bytes(b"x")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "real.txt").write_bytes(b"real\n")
    (root / "sub" / "in.txt").write_bytes(b"in\n")
    os.symlink(outside / "secret.txt", root / "abs-file")          # absolute
    os.symlink("../../outside/secret.txt", root / "sub" / "up-file")  # climbs out
    os.symlink(str(outside), root / "abs-dir")
    os.symlink("../..", root / "sub" / "up-dir")                    # the root's parent
    os.symlink("real.txt", root / "good")                           # stays inside: followed
    os.symlink("../real.txt", root / "sub" / "good-up")             # inside, one up: followed
    (root / "sub2").mkdir()
    (root / "sub2" / "in.txt").write_bytes(b"in\n")
    os.symlink("sub2", root / "good-dir")
    def md5_of(b):
        return hashlib.md5(b).hexdigest()
    secret = md5_of(b"secret\n")
    zero = "0" * 32
    lines = [f"{md5_of(b'real' + NL)}  real.txt", f"{md5_of(b'real' + NL)}  good",
             f"{md5_of(b'real' + NL)}  sub/good-up", f"{md5_of(b'in' + NL)}  good-dir/in.txt",
             f"{md5_of(b'in' + NL)}  sub/in.txt", f"{md5_of(b'in' + NL)}  sub2/in.txt",
             f"{zero}  abs-file", f"{zero}  sub/up-file", f"{zero}  abs-dir/secret.txt",
             f"{zero}  sub/up-dir/outside/secret.txt"]
    man = tmp_path / "M.md5"
    man.write_text("\n".join(lines) + "\n")
    p = run_cli(f"%verify {man} --root {root}")
    assert p.returncode == 1, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert secret not in out and "hidden-name-1" not in out, out
    for name in ("abs-file", "sub/up-file", "abs-dir/secret.txt", "sub/up-dir/outside/secret.txt"):
        row = next(ln for ln in p.stdout.splitlines() if f" {name} " in ln)
        assert row.startswith("outside") and "leads out of the root (not read)" in row, row
    assert "6 OK, 0 missing, 0 mismatching, 0 unreadable, 0 extra, 4 outside the root" in p.stdout, p.stdout
    assert "4 outside the root" in p.stderr


def test_verify_says_what_is_there_instead_of_a_file(tmp_path, pk_bin):
    """Not "Is a directory" for everything: a folder, a FIFO, a socket."""
    root = tmp_path / "root"
    (root / "folder").mkdir(parents=True)
    os.mkfifo(root / "fifo")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(root / "sock"))
    man = tmp_path / "M.md5"
    man.write_text("".join(f"{'0' * 32}  {n}\n" for n in ("folder", "fifo", "sock")))
    p = run_cli(f"%verify {man} --root {root}", timeout=30)
    s.close()
    assert p.returncode == 1
    for name, what in (("folder", "a folder"), ("fifo", "a FIFO"), ("sock", "a socket")):
        row = next(ln for ln in p.stdout.splitlines() if f" {name} " in ln)
        assert row.startswith("unreadable") and f"{what}, not a regular file" in row, row
    assert "Is a directory" not in p.stdout


# ---- names from outside never act on the terminal -------------------------------
def test_names_with_control_bytes_are_shown_escaped(tmp_path, pk_bin):
    """A file name that holds a newline and a fake summary line, or terminal
    escapes, is shown escaped in the table, the summary and the error; no
    output holds a control byte but the line ends."""
    root = tmp_path / "root"
    root.mkdir()
    forged = "a\nverify: 1 file, 0 B, all OK\n\x1b[2J\x1b]0;owned\x07"
    (root / forged).write_bytes(b"x")
    man = tmp_path / "M.md5"
    man.write_text(f"{'0' * 32}  b\u202egnp.exe\n")
    p = run_cli(f"%verify {man} --root {root}")
    assert p.returncode == 1
    out = p.stdout + p.stderr
    assert "a\\x0averify: 1 file, 0 B, all OK\\x0a\\x1b[2J\\x1b]0;owned\\x07" in p.stdout, p.stdout
    assert "b\\u202egnp.exe" in p.stdout
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", out.replace("\r", "")), repr(out)
    # a name as an error's subject
    p = run_cli(f"%md5 '{root}/\x1b[2Jgone'")
    assert p.returncode == 1 and "/\\x1b[2Jgone: cannot open" in p.stderr and "\x1b" not in p.stderr
