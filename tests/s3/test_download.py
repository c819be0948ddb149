"""%download from S3 against a real Ceph RGW: whole prefixes (s3://B/P/ --to
DIR), objects written by %upload and by boto3 (single PUTs and multipart at
several part sizes), hostile keys, answers spoiled on the way by the fault
proxy (tests/s3/faultproxy.py), a wrong secret and an interrupt."""
import os
import signal
import subprocess

import pytest
from faultproxy import FaultProxy
from pkutil import PK_BIN, ROOT, run_small_fs
from test_upload import md5, rand_file

MiB = 1 << 20


@pytest.fixture
def proxy(rgw):
    p = FaultProxy(rgw.endpoint)
    yield p
    p.close()


def files_below(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def same_tree(a, b):
    fa, fb = files_below(a), files_below(b)
    assert fa == fb
    for f in fa:
        assert md5(a / f) == md5(b / f), f


def no_part_files(root):
    return [p for p in root.rglob("*.part")] == []


@pytest.fixture
def mixed(rgw, bucket, tmp_path):
    """Objects under p/: small single PUTs, multipart uploads by boto3 at
    8 MiB and 5 MiB parts, one of 7 MiB parts (not a size tools default to),
    an empty object and a folder marker."""
    from boto3.s3.transfer import TransferConfig
    src = tmp_path / "src"
    rand_file(src / "small.bin", 1000)
    rand_file(src / "sub/deeper/mid.bin", 3 * MiB + 1)
    rand_file(src / "mp8.bin", 20 * MiB + 3)
    rand_file(src / "mp5.bin", 11 * MiB)
    rand_file(src / "mp7.bin", 15 * MiB)
    (src / "empty.bin").write_bytes(b"")
    s3 = rgw.client()
    for f, chunk in (("small.bin", 8), ("sub/deeper/mid.bin", 8), ("mp8.bin", 8),
                     ("mp5.bin", 5), ("mp7.bin", 7), ("empty.bin", 8)):
        cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=chunk * MiB)
        s3.upload_file(str(src / f), bucket, f"p/{f}", Config=cfg)
    s3.put_object(Bucket=bucket, Key="p/sub/", Body=b"")
    return src


def test_prefix_of_mixed_objects(rgw, bucket, pk, mixed, tmp_path):
    out = tmp_path / "out"
    p = pk(f"%download s3://{bucket}/p/ --to {out} --endpoint {rgw.endpoint}")
    assert p.returncode == 0, p.stdout + p.stderr
    same_tree(mixed, out)
    assert no_part_files(out)
    assert f"download: 6 objects, 51.4 MB from s3://{bucket}/p/ to {out}" in p.stdout


def test_prefix_of_a_dataset_uploaded_by_upload(rgw, bucket, pk, tmp_path):
    d = tmp_path / "d"
    p = pk(f"%mkdata {d} --train-batches 2 --images-per-batch 500",
           f"%upload {d} s3://{bucket}/ds --endpoint {rgw.endpoint} --part-size 5 --threshold 5",
           f"%download s3://{bucket}/ds/ --to {tmp_path / 'back'} --endpoint {rgw.endpoint} "
           "--part-size 2 --jobs 3")
    assert p.returncode == 0, p.stderr
    same_tree(d, tmp_path / "back")


def test_whole_bucket(rgw, bucket, pk, mixed, tmp_path):
    p = pk(f"%download s3://{bucket} --to {tmp_path / 'all'} --endpoint {rgw.endpoint}")
    assert p.returncode == 0, p.stderr
    same_tree(mixed, tmp_path / "all" / "p")


@pytest.mark.parametrize("key,why", [
    ("p/../escape", "a '..' component"),
    ("p//abs", "an absolute path"),
    ("p/a//b", "an empty component"),
    ("p/./here", "a '.' component"),
    ("p/a/../../z", "a '..' component"),
])
def test_hostile_key_refuses_the_download(rgw, bucket, pk, tmp_path, key, why):
    s3 = rgw.client()
    s3.put_object(Bucket=bucket, Key="p/fine.bin", Body=b"fine")
    s3.put_object(Bucket=bucket, Key=key, Body=b"evil")
    work = tmp_path / "w"
    out = work / "out"
    out.mkdir(parents=True)
    p = pk(f"%download s3://{bucket}/p/ --to {out} --endpoint {rgw.endpoint}")
    assert p.returncode == 1
    assert "UnsafeInputError" in p.stderr and why in p.stderr and key in p.stderr
    assert "nothing was downloaded" in p.stderr
    assert files_below(work) == []


def test_symlink_in_the_way_is_not_followed(rgw, bucket, pk, tmp_path):
    s3 = rgw.client()
    s3.put_object(Bucket=bucket, Key="p/link/inside.bin", Body=b"evil")
    s3.put_object(Bucket=bucket, Key="p/ok.bin", Body=b"ok")
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "link").symlink_to(elsewhere)
    p = pk(f"%download s3://{bucket}/p/ --to {out} --endpoint {rgw.endpoint}")
    assert p.returncode == 1
    assert "UnsafeInputError" in p.stderr and "p/link/inside.bin" in p.stdout
    assert (out / "ok.bin").read_bytes() == b"ok"
    assert list(elsewhere.iterdir()) == []


def test_bytes_changed_behind_the_etag_are_caught(rgw, bucket, pk, proxy, mixed, tmp_path):
    proxy.rule(action="corrupt", method="GET", key="mp8.bin", range_from=0, times=None)
    proxy.rule(action="corrupt", method="GET", key="small.bin", times=None)
    out = tmp_path / "out"
    p = pk(f"%download s3://{bucket}/p/ --to {out} --endpoint {proxy.endpoint}")
    assert p.returncode == 1
    assert "ChecksumError" in p.stderr and "2 of 6 objects failed" in p.stderr
    assert "p/mp8.bin" in p.stdout and "p/small.bin" in p.stdout
    assert not (out / "mp8.bin").exists() and not (out / "small.bin").exists()
    assert md5(out / "mp5.bin") == md5(mixed / "mp5.bin")
    assert no_part_files(out)


@pytest.mark.parametrize("action", ["badrange", "short", "extra", "wrongetag", "503", "drop"])
def test_a_spoiled_range_is_retried(rgw, bucket, pk, proxy, mixed, tmp_path, action):
    proxy.rule(action=action, method="GET", key="mp8.bin", range_from=8 * MiB, times=2)
    out = tmp_path / "out"
    p = pk(f"%download s3://{bucket}/p/ --to {out} --endpoint {proxy.endpoint} --part-size 8")
    assert p.returncode == 0, p.stderr
    assert "retry 1 of 3" in p.stderr and "GET bytes 8388608-16777215" in p.stderr
    same_tree(mixed, out)


@pytest.mark.parametrize("action,what", [
    ("badrange", "answered Content-Range bytes 8388609-16777216"),
    ("extra", "answered more than the 8388608 bytes asked for"),
    ("wrongetag", "answered with ETag 00000000000000000000000000000000"),
])
def test_a_range_spoiled_every_time_fails_cleanly(rgw, bucket, pk, proxy, mixed, tmp_path,
                                                   action, what):
    proxy.rule(action=action, method="GET", key="mp8.bin", range_from=8 * MiB, times=None)
    out = tmp_path / "out"
    p = pk(f"%download s3://{bucket}/p/ --to {out} --endpoint {proxy.endpoint} --retries 1 "
           "--part-size 8")
    assert p.returncode == 1
    assert "S3Error" in p.stderr and what in p.stderr and "after 2 attempts" in p.stderr
    assert f"s3://{bucket}/p/mp8.bin" in p.stderr
    assert no_part_files(out)


def test_wrong_secret(rgw, bucket, pk, mixed, tmp_path):
    secret = "wrongwrongwrongwrongwrongwrongwrongwrong"
    p = pk(f"%download s3://{bucket}/p/ --to {tmp_path / 'out'} --endpoint {rgw.endpoint}",
           env={"AWS_SECRET_ACCESS_KEY": secret}, secret=secret)
    assert p.returncode == 1
    assert "SignatureDoesNotMatch" in p.stderr
    assert not (tmp_path / "out").exists() or files_below(tmp_path / "out") == []


def test_sigint_leaves_no_part_files(rgw, bucket, pk, proxy, tmp_path):
    s3 = rgw.client()
    for i in range(40):
        s3.put_object(Bucket=bucket, Key=f"p/f{i:02d}", Body=os.urandom(MiB))
    proxy.rule(action="delay", seconds=0.2, method="GET", times=None)
    out = tmp_path / "out"
    env = dict(pk.env)
    proc = subprocess.Popen([str(PK_BIN), "run", f"%download s3://{bucket}/p/ --to {out} "
                             f"--endpoint {proxy.endpoint} --jobs 2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out.exists() and files_below(out)):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        o, e = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (o, e)
    assert "KeyboardInterrupt" in e
    assert no_part_files(out)
    for f in files_below(out):  # what was renamed is whole
        assert (out / f).stat().st_size == MiB


# ---- single objects ----

@pytest.fixture
def big(rgw, bucket, tmp_path):
    """A 200 MiB file put by %upload: a multipart upload of 8 MiB parts."""
    f = rand_file(tmp_path / "big.bin", 200 * MiB)
    return f


def put_big(pk, rgw, bucket, f):
    p = pk(f"%upload {f} s3://{bucket}/o/ --endpoint {rgw.endpoint}")
    assert p.returncode == 0, p.stderr
    assert "(1 multipart" in p.stdout
    return f"s3://{bucket}/o/{f.name}"


def test_object_round_trip(rgw, bucket, pk, big, tmp_path):
    url = put_big(pk, rgw, bucket, big)
    out = tmp_path / "back" / "big.bin"
    out.parent.mkdir()
    p = pk(f"%download {url} --to {out} --endpoint {rgw.endpoint}")
    assert p.returncode == 0, p.stderr
    assert md5(out) == md5(big)
    assert "ETag = md5 of 25 part md5s (8 MiB parts)" in p.stdout
    assert not (tmp_path / "back" / "big.bin.part").exists()
    p = pk(f"%download {url} --to {out} --endpoint {rgw.endpoint} --md5 {md5(big)} "
           "--jobs 3 --part-size 3")
    assert p.returncode == 0, p.stderr
    assert f"md5 {md5(big)} OK, ETag = md5 of 25 part md5s" in p.stdout
    assert md5(out) == md5(big)


def test_object_default_name_and_single_put(rgw, bucket, pk, tmp_path):
    s3 = rgw.client()
    s3.put_object(Bucket=bucket, Key="k/some file?#.bin", Body=b"x" * 5000)
    p = pk(f"%download 's3://{bucket}/k/some file?#.bin' --endpoint {rgw.endpoint}",
           cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "some file?#.bin").read_bytes() == b"x" * 5000
    assert "ETag = md5" in p.stdout


def test_wrong_md5_keeps_nothing(rgw, bucket, pk, big, tmp_path):
    url = put_big(pk, rgw, bucket, big)
    out = tmp_path / "x.bin"
    p = pk(f"%download {url} --to {out} --endpoint {rgw.endpoint} --md5 {'0' * 32}")
    assert p.returncode == 1
    assert "ChecksumError" in p.stderr and "md5 mismatch" in p.stderr
    assert not out.exists() and not (tmp_path / "x.bin.part").exists()


def test_extract_and_verify_straight_from_s3(rgw, bucket, pk, tmp_path):
    d = tmp_path / "d"
    p = pk(f"%mkdata {d} --train-batches 2 --images-per-batch 300",
           f"%upload {d}/cifar-10-python.tar.gz s3://{bucket}/t/ --endpoint {rgw.endpoint} "
           "--threshold 5 --part-size 5")
    assert p.returncode == 0, p.stderr
    tgz = md5(d / "cifar-10-python.tar.gz")
    p = pk(f"%download s3://{bucket}/t/cifar-10-python.tar.gz --to {tmp_path / 'c.tgz'} "
           f"--endpoint {rgw.endpoint} --md5 {tgz} --extract {tmp_path / 'w'} "
           f"--verify {d}/MANIFEST.md5 --part-size 1")
    assert p.returncode == 0, p.stderr
    assert "verify: " in p.stdout and "OK" in p.stdout
    for f in (d / "cifar-10-batches-py").iterdir():
        assert md5(f) == md5(tmp_path / "w" / "cifar-10-batches-py" / f.name)


def test_object_changed_behind_the_etag(rgw, bucket, pk, proxy, big, tmp_path):
    url = put_big(pk, rgw, bucket, big)
    proxy.rule(action="corrupt", method="GET", range_from=16 * MiB, times=None)
    out = tmp_path / "x.bin"
    p = pk(f"%download {url} --to {out} --endpoint {proxy.endpoint} --part-size 8")
    assert p.returncode == 1
    assert "ChecksumError" in p.stderr and "the bytes read differ from the bytes uploaded" in p.stderr
    assert url in p.stderr
    assert not out.exists() and not (tmp_path / "x.bin.part").exists()


def test_slowdown_and_resets_are_retried(rgw, bucket, pk, proxy, big, tmp_path):
    url = put_big(pk, rgw, bucket, big)
    proxy.rule(action="503", method="GET", range_from=0, times=2)
    proxy.rule(action="drop", method="GET", range_from=40 * MiB, times=1)
    proxy.rule(action="short", method="GET", range_from=80 * MiB, times=1)
    out = tmp_path / "x.bin"
    p = pk(f"%download {url} --to {out} --endpoint {proxy.endpoint}")
    assert p.returncode == 0, p.stderr
    assert "SlowDown" in p.stderr and "retry" in p.stderr
    assert md5(out) == md5(big)


def test_retries_of_every_lane_are_shown_up_to_the_cap(rgw, bucket, pk, proxy, big, tmp_path):
    # 24 answers of the 25 ranges are 503: the reading threads each retry
    # theirs; the stage shows 20 lines, then one that says there were more
    url = put_big(pk, rgw, bucket, big)
    proxy.rule(action="503", method="GET", times=24)
    out = tmp_path / "x.bin"
    p = pk(f"%download {url} --to {out} --endpoint {proxy.endpoint} --retries 10")
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "SlowDown; retry" in ln]
    assert len(lines) == 20, p.stderr
    assert all(ln.startswith("download: GET bytes ") for ln in lines), lines
    assert p.stderr.count("download: more retries (not shown)") == 1
    assert md5(out) == md5(big)
    assert "ETag = md5 of 25 part md5s (8 MiB parts)" in p.stdout


def test_gateway_killed_mid_get_then_resume(rgw, bucket, pk, proxy, big, tmp_path):
    url = put_big(pk, rgw, bucket, big)
    proxy.rule(action="delay", seconds=0.3, method="GET", times=None)
    out = tmp_path / "x.bin"
    part = tmp_path / "x.bin.part"
    proc = subprocess.Popen([str(PK_BIN), "run", f"%download {url} --to {out} --endpoint "
                             f"{proxy.endpoint} --jobs 2 --retries 1 --timeout 5"],
                            env=dict(pk.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    import time
    try:
        # the file's space is taken before the first GET, so its size says nothing: the
        # fourth GET is sent once two ranges of 32 MiB have been read (--jobs 2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(proxy.requests("GET")) < 4:
            time.sleep(0.05)
        rgw.kill_gateway()
        o, e = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        rgw.restart_gateway()
    assert proc.returncode == 1, (o, e)
    assert "NetworkError" in e or "S3Error" in e
    assert not out.exists()
    assert part.exists()  # kept for --resume
    proxy.rules.clear()
    p = pk(f"%download {url} --to {out} --endpoint {proxy.endpoint} --resume")
    assert p.returncode == 0, p.stderr
    assert "resuming" in p.stdout
    assert md5(out) == md5(big)


def test_sigint_during_a_multipart_get(rgw, bucket, pk, proxy, big, tmp_path):
    url = put_big(pk, rgw, bucket, big)
    proxy.rule(action="delay", seconds=0.2, method="GET", times=None)
    out = tmp_path / "x.bin"
    proc = subprocess.Popen([str(PK_BIN), "run", f"%download {url} --to {out} --endpoint "
                             f"{proxy.endpoint} --jobs 2"], env=dict(pk.env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import time
    try:
        deadline = time.monotonic() + 60  # GETs under way (the file is sized before the first)
        while time.monotonic() < deadline and len(proxy.requests("GET")) < 2:
            time.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        o, e = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (o, e)
    assert "KeyboardInterrupt" in e
    assert not out.exists()


def test_integrity_headers_checks_answers_not_bytes(rgw, bucket, pk, proxy, big, tmp_path):
    url = put_big(pk, rgw, bucket, big)
    out = tmp_path / "x.bin"
    # the answers are still checked: a moved Content-Range is retried
    proxy.rule(action="badrange", method="GET", range_from=8 * MiB, times=1)
    p = pk(f"%download {url} --to {out} --endpoint {proxy.endpoint} --integrity headers "
           "--part-size 8")
    assert p.returncode == 0, p.stderr
    assert "answered Content-Range" in p.stderr and "retry 1 of 3" in p.stderr
    assert "the bytes not hashed (--integrity headers)" in p.stdout
    assert md5(out) == md5(big)
    # bytes changed behind the ETag pass this check; --md5 still catches them
    proxy.rule(action="corrupt", method="GET", range_from=16 * MiB, times=None)
    p = pk(f"%download {url} --to {out} --endpoint {proxy.endpoint} --integrity headers "
           f"--md5 {md5(big)} --part-size 8")
    assert p.returncode == 1
    assert "ChecksumError" in p.stderr and "md5 mismatch" in p.stderr
    p = pk(f"%download {url} --to {out} --endpoint {rgw.endpoint} --integrity nope")
    assert p.returncode == 1 and "UsageError" in p.stderr and "--integrity" in p.stderr


def test_interrupt_in_the_kernel_keeps_it_alive(rgw, bucket, pk, proxy, big, tmp_path):
    """The notebook's interrupt during a multi-part GET: KeyboardInterrupt, no file under the
    final name, and the kernel serves the next cell."""
    import sys
    import time
    sys.path.insert(0, str(ROOT / "tests" / "kernel"))
    from pkkernel import run, shell_reply, start_kernel, wait_iopub
    url = put_big(pk, rgw, bucket, big)
    proxy.rule(action="delay", seconds=0.2, method="GET", times=None)
    out = tmp_path / "k.bin"
    km, kc = start_kernel(env=dict(pk.env))
    try:
        msg_id = kc.execute(f"%download {url} --to {out} --endpoint {proxy.endpoint} --jobs 2")
        wait_iopub(kc, msg_id, "display_data")  # the progress bar: the GETs are under way
        time.sleep(0.5)
        t0 = time.monotonic()
        km.interrupt_kernel()
        reply = shell_reply(kc, msg_id)["content"]
        assert time.monotonic() - t0 < 5
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        assert not out.exists()
        content, _ = run(kc, "%echo ok")
        assert content["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_fifo_at_a_part_name_is_refused_not_waited_on(rgw, bucket, pk, tmp_path):
    s3 = rgw.client()
    s3.put_object(Bucket=bucket, Key="p/x.bin", Body=b"x")
    s3.put_object(Bucket=bucket, Key="p/y.bin", Body=b"y")
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "x.bin.part")
    p = pk(f"%download s3://{bucket}/p/ --to {out} --endpoint {rgw.endpoint}", timeout=60)
    assert p.returncode == 1
    assert "a FIFO" in p.stdout and "p/x.bin" in p.stdout
    assert (out / "y.bin").read_bytes() == b"y"


def test_a_layout_guessed_wrong_is_found_on_the_bytes_written(rgw, bucket, pk, mixed, tmp_path):
    """RGW does not say a multipart object's part size: the likeliest
    candidate is hashed part by part in parallel, and when it misses (7 MiB
    parts, where 5 MiB gives the same count) the other candidates are tried
    on the bytes written, once; the verdict names the size that matched."""
    out = tmp_path / "mp7.bin"
    p = pk(f"%download s3://{bucket}/p/mp7.bin --to {out} --endpoint {rgw.endpoint}")
    assert p.returncode == 0, p.stderr
    assert "ETag = md5 of 3 part md5s (7 MiB parts)" in p.stdout, p.stdout
    assert md5(out) == md5(mixed / "mp7.bin")
    p = pk(f"%download s3://{bucket}/p/mp5.bin --to {tmp_path / 'mp5.bin'} --endpoint {rgw.endpoint}")
    assert p.returncode == 0, p.stderr
    assert "ETag = md5 of 3 part md5s (5 MiB parts)" in p.stdout, p.stdout


def test_a_server_that_ignores_part_numbers_is_asked_once(rgw, bucket, pk, proxy, mixed, tmp_path):
    """RGW answers HEAD ?partNumber=1 with the whole object (no part count):
    a prefix of three multipart objects asks that once, not once an object,
    and every object is still checked against its ETag."""
    out = tmp_path / "out"
    p = pk(f"%download s3://{bucket}/p/ --to {out} --endpoint {proxy.endpoint}")
    assert p.returncode == 0, p.stderr
    same_tree(mixed, out)
    assert len(proxy.requests("HEAD", part=1)) == 1, proxy.requests("HEAD")


@pytest.mark.parametrize("mode", ["headers", "md5"])
def test_a_failed_read_keeps_only_the_checked_prefix(rgw, bucket, pk, proxy, big, tmp_path, mode):
    """With --integrity headers each answer is written as it arrives, so
    later ranges land before earlier ones; with --md5 they are written in
    order. Either way the file's space was taken whole before the first GET;
    when a range fails for good (the second here), NAME.part is cut back to
    the checked prefix (the first range), never left with later bytes, a
    hole or the reserved rest that --resume would take for a prefix."""
    url = put_big(pk, rgw, bucket, big)
    proxy.rule(action="drop", method="GET", range_from=8 * MiB, times=None)  # a reset, every time
    out = tmp_path / "x.bin"
    part = tmp_path / "x.bin.part"
    how = "--integrity headers" if mode == "headers" else f"--md5 {md5(big)}"
    p = pk(f"%download {url} --to {out} --endpoint {proxy.endpoint} {how} "
           "--part-size 8 --jobs 4 --retries 1")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "NetworkError" in p.stderr, p.stderr
    assert not out.exists()
    assert part.exists()  # kept for --resume after a network error
    kept = part.read_bytes()
    assert kept == big.read_bytes()[:8 * MiB]
    proxy.rules.clear()
    p = pk(f"%download {url} --to {out} --endpoint {proxy.endpoint} {how} --resume")
    assert p.returncode == 0, p.stderr
    assert md5(out) == md5(big)


def test_an_object_larger_than_the_free_space_is_refused_before_reading(rgw, bucket, pk, proxy,
                                                                          tmp_path):
    """The space of a large object's file is taken before its first GET: on
    a 16 MiB file system a 24 MiB object fails at once, naming the file and
    both sizes, with no GET made and nothing left."""
    src = rand_file(tmp_path / "src" / "x.bin", 24 * MiB)
    rgw.client().upload_file(str(src), bucket, "o/x.bin")
    fs = tmp_path / "fs"
    rep = run_small_fs([(fs, "16m")], [f"%download s3://{bucket}/o/x.bin --to {fs}/x.bin "
                                       f"--endpoint {proxy.endpoint}"], [fs], env=pk.env)
    assert rep["rc"] == 1, rep
    assert "NoSpaceError" in rep["stderr"], rep["stderr"]
    assert f"{fs}/x.bin.part: no room for the object's 25.2 MB (16.8 MB free" in rep["stderr"], \
        rep["stderr"]
    assert proxy.requests("GET") == [], proxy.requests("GET")
    assert rep["files"] == {}


def test_a_prefix_with_an_object_that_does_not_fit(rgw, bucket, pk, tmp_path):
    """In a prefix, the object that has no room is a row of the failures
    table; the others are downloaded."""
    s3 = rgw.client()
    small = rand_file(tmp_path / "src" / "a.bin", 1000)
    large = rand_file(tmp_path / "src" / "b.bin", 24 * MiB)
    s3.upload_file(str(small), bucket, "p/a.bin")
    s3.upload_file(str(large), bucket, "p/b.bin")
    fs = tmp_path / "fs"
    rep = run_small_fs([(fs, "16m")], [f"%download s3://{bucket}/p/ --to {fs}/out "
                                       f"--endpoint {rgw.endpoint}"], [fs], env=pk.env)
    assert rep["rc"] == 1, rep
    assert "download: 1 object, 1.0 kB" in rep["stdout"], rep["stdout"]
    row = [x for x in rep["stdout"].splitlines() if x.startswith("p/b.bin ")]
    assert len(row) == 1 and "NoSpaceError" in row[0] and "no room for the object's 25.2 MB" in \
        row[0], rep["stdout"]
    assert list(rep["files"]) == [f"{fs}/out/a.bin"], rep["files"]
    assert rep["files"][f"{fs}/out/a.bin"]["md5"] == md5(small)


def resident(path):
    """The fraction of path's pages in the page cache (mincore)."""
    import ctypes
    import mmap
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        rc = libc.mincore(ctypes.c_void_p(addr), size, vec)
        libc.munmap(ctypes.c_void_p(addr), size)
        assert rc == 0, ctypes.get_errno()
        return sum(v & 1 for v in vec) / pages
    finally:
        os.close(fd)


def takes_o_direct(folder):
    probe = folder / "o_direct.probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600))
        return True
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)


@pytest.mark.parametrize("integrity", ["md5", "headers"])
def test_large_objects_are_written_past_the_page_cache(rgw, bucket, pk, big, tmp_path, integrity):
    """An object the lanes write to its file goes there with O_DIRECT: the
    bytes are on the storage, not in the page cache (a download larger than
    RAM evicts nothing); --page-cache writes through it. The same bytes
    either way, an unaligned tail included (a single PUT of 9 MiB + 1001)."""
    if not takes_o_direct(tmp_path):
        pytest.skip("this file system does not take O_DIRECT")
    url = put_big(pk, rgw, bucket, big)
    odd = rand_file(tmp_path / "odd.bin", 9 * MiB + 1001)
    rgw.client().upload_file(str(odd), bucket, "o/odd.bin")  # below boto3's multipart threshold
    flags = f"--endpoint {rgw.endpoint} --integrity {integrity}"
    for src, name in ((big, "big.bin"), (odd, "odd.bin")):
        out = tmp_path / "direct" / name
        out.parent.mkdir(exist_ok=True)
        p = pk(f"%download s3://{bucket}/o/{name} --to {out} {flags}")
        assert p.returncode == 0, p.stderr
        assert resident(out) < 0.05, resident(out)
        assert md5(out) == md5(src)
        cached = tmp_path / "cached" / name
        cached.parent.mkdir(exist_ok=True)
        p = pk(f"%download s3://{bucket}/o/{name} --to {cached} {flags} --page-cache")
        assert p.returncode == 0, p.stderr
        assert resident(cached) > 0.5, resident(cached)
        assert md5(cached) == md5(src)


def test_a_resume_from_an_unaligned_prefix(rgw, bucket, pk, big, tmp_path):
    """Ranges that do not start on a block (after a resumed prefix of any
    length) are written through the page cache, and the file is whole."""
    url = put_big(pk, rgw, bucket, big)
    out = tmp_path / "x.bin"
    part = tmp_path / "x.bin.part"
    part.write_bytes(big.read_bytes()[:3 * MiB + 5])
    p = pk(f"%download {url} --to {out} --endpoint {rgw.endpoint} --integrity headers --resume")
    assert p.returncode == 0, p.stderr
    assert md5(out) == md5(big)
