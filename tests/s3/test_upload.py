"""%upload and %s3ls against a real Ceph RGW, checked with boto3."""
import hashlib
import os
import signal
import subprocess
import time
import uuid

import pytest
from pkutil import PK_BIN

MiB = 1 << 20
BATCH = 31035704  # bytes of one pickled CIFAR-10 batch


def rand_file(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n
    return path


def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(MiB), b""):
            h.update(b)
    return h.hexdigest()


def dataset_tree(root):
    """The default dataset's layout: 6 batches, batches.meta, readme.html."""
    tree = root / "cifar-10-batches-py"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rand_file(tree / name, BATCH)
    rand_file(tree / "batches.meta", 158)
    (tree / "readme.html").write_text("<meta HTTP-EQUIV=\"REFRESH\" content=\"0; url=x\">\n")
    return tree


def read_back(s3, bucket, key):
    h = hashlib.md5()
    for b in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(MiB):
        h.update(b)
    return h.hexdigest()


def keys_of(s3, bucket, prefix=""):
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = o
    return out


def no_multipart_left(s3, bucket):
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_dataset_tree_read_back(rgw, bucket, pk, tmp_path):
    tree = dataset_tree(tmp_path)
    rand_file(tree / "nested dir" / "ünïcode + spaces=&.bin", 1000)
    (tree / "empty").write_bytes(b"")
    p = pk(f"%upload {tree} s3://{bucket}/cifar --endpoint {rgw.endpoint}")
    assert p.returncode == 0, p.stderr
    s3 = rgw.client()
    files = sorted(f for f in tree.rglob("*") if f.is_file())
    got = keys_of(s3, bucket)
    assert sorted(got) == sorted(f"cifar/{f.relative_to(tree)}" for f in files)
    for f in files:
        key = f"cifar/{f.relative_to(tree)}"
        assert read_back(s3, bucket, key) == md5(f), key
        assert got[key]["Size"] == f.stat().st_size
    # 31 MB <= the 32 MiB threshold: one PUT each, so the ETag is the md5
    assert got["cifar/data_batch_1"]["ETag"].strip('"') == md5(tree / "data_batch_1")
    assert "data_batch_1" in p.stdout and "uploaded" in p.stdout
    assert "upload: 186.2 MB, 10 files (0 multipart, 0 skipped)" in p.stdout
    assert no_multipart_left(s3, bucket)


def test_threshold_and_part_size(rgw, bucket, pk, tmp_path):
    """Defaults: a file over 32 MiB goes up in 8 MiB parts, one of 32 MiB in one
    PUT; --threshold and --part-size move both lines."""
    d = tmp_path / "t"
    rand_file(d / "at.bin", 32 * MiB)
    rand_file(d / "over.bin", 32 * MiB + 1)
    s3 = rgw.client()

    def etags(prefix, *opts):
        p = pk(f"%upload {d} s3://{bucket}/{prefix} --endpoint {rgw.endpoint} " + " ".join(opts))
        assert p.returncode == 0, p.stderr
        return {k.split("/", 1)[1]: v["ETag"].strip('"') for k, v in keys_of(s3, bucket).items()
                if k.startswith(prefix + "/")}

    def parts(f, size):
        b = f.read_bytes()
        return hashlib.md5(b"".join(hashlib.md5(b[i:i + size]).digest()
                                    for i in range(0, len(b), size))).hexdigest()

    got = etags("default")
    assert got["at.bin"] == md5(d / "at.bin")
    assert got["over.bin"] == parts(d / "over.bin", 8 * MiB) + "-5"
    got = etags("small", "--threshold 5", "--part-size 16")
    assert got["at.bin"] == parts(d / "at.bin", 16 * MiB) + "-2"
    assert got["over.bin"] == parts(d / "over.bin", 16 * MiB) + "-3"
    got = etags("big", "--threshold 40")
    assert got["over.bin"] == md5(d / "over.bin")
    p = pk(f"%upload {d} s3://{bucket}/x --endpoint {rgw.endpoint} --threshold 4")
    assert p.returncode == 1 and "UsageError: --threshold: 4 is out of range (5 to 5120)" in p.stderr
    assert no_multipart_left(s3, bucket)


def test_multipart_short_last_part_at_5mib(rgw, bucket, pk, tmp_path):
    f = rand_file(tmp_path / "big.bin", 3 * 5 * MiB + 12345)
    p = pk(f"%upload {f} s3://{bucket}/one/ --endpoint {rgw.endpoint} --part-size 5 --threshold 5 --jobs 3")
    assert p.returncode == 0, p.stderr
    s3 = rgw.client()
    head = s3.head_object(Bucket=bucket, Key="one/big.bin")
    parts = [hashlib.md5(f.read_bytes()[i:i + 5 * MiB]).digest()
             for i in range(0, f.stat().st_size, 5 * MiB)]
    assert len(parts) == 4
    assert head["ETag"].strip('"') == hashlib.md5(b"".join(parts)).hexdigest() + "-4"
    assert head["ContentLength"] == f.stat().st_size
    assert read_back(s3, bucket, "one/big.bin") == md5(f)
    assert no_multipart_left(s3, bucket)


def test_single_file_key_rules(rgw, bucket, pk, tmp_path):
    f = rand_file(tmp_path / "a.bin", 100)
    assert pk(f"%upload {f} s3://{bucket}/exact/name.dat --endpoint {rgw.endpoint}").returncode == 0
    assert pk(f"%upload {f} s3://{bucket}/dir/ --endpoint {rgw.endpoint}").returncode == 0
    assert pk(f"%upload {f} s3://{bucket} --endpoint {rgw.endpoint}").returncode == 0
    assert sorted(keys_of(rgw.client(), bucket)) == ["a.bin", "dir/a.bin", "exact/name.dat"]


def test_wrong_secret_is_a_clear_error(rgw, bucket, pk, tmp_path):
    tree = tmp_path / "t"
    rand_file(tree / "x.bin", 6 * MiB)
    wrong = "WrongSecret" + uuid.uuid4().hex
    p = pk(f"%upload {tree} s3://{bucket}/p --endpoint {rgw.endpoint} --part-size 5 --threshold 5",
           env={"AWS_SECRET_ACCESS_KEY": wrong}, secret=wrong)
    assert p.returncode == 1
    assert "S3Error" in p.stderr and "HTTP 403 SignatureDoesNotMatch" in p.stderr
    assert f"bucket '{bucket}'" in p.stderr
    s3 = rgw.client()
    assert keys_of(s3, bucket) == {} and no_multipart_left(s3, bucket)


def test_missing_bucket_then_create(rgw, pk, tmp_path):
    f = rand_file(tmp_path / "f.bin", 10)
    name = "nb-" + uuid.uuid4().hex[:10]
    p = pk(f"%upload {f} s3://{name}/ --endpoint {rgw.endpoint}")
    assert p.returncode == 1
    assert "HTTP 404 NoSuchBucket" in p.stderr and "--create-bucket" in p.stderr
    p = pk(f"%upload {f} s3://{name}/ --endpoint {rgw.endpoint} --create-bucket")
    assert p.returncode == 0, p.stderr
    s3 = rgw.client()
    assert read_back(s3, name, "f.bin") == md5(f)
    s3.delete_object(Bucket=name, Key="f.bin")
    s3.delete_bucket(Bucket=name)


def test_skip_existing(rgw, bucket, pk, tmp_path):
    tree = tmp_path / "t"
    rand_file(tree / "a", 100)
    rand_file(tree / "big", 11 * MiB)
    args = f"%upload {tree} s3://{bucket}/p --endpoint {rgw.endpoint} --part-size 5 --threshold 5"
    assert pk(args).returncode == 0
    rand_file(tree / "a", 101)  # changed: uploaded again
    rand_file(tree / "new", 5)
    p = pk(args + " --skip-existing")
    assert p.returncode == 0, p.stderr
    assert "(0 multipart, 1 skipped)" in p.stdout and "2 files" in p.stdout
    assert read_back(rgw.client(), bucket, "p/a") == md5(tree / "a")


def test_s3ls_paginates(rgw, bucket, pk, tmp_path):
    tree = tmp_path / "many"
    for i in range(1100):
        (tree / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 3}" / f"f{i:05d}").write_bytes(b"%d" % i)
    p = pk(f"%upload {tree} s3://{bucket}/m --endpoint {rgw.endpoint} --jobs 16")
    assert p.returncode == 0, p.stderr
    assert len(keys_of(rgw.client(), bucket)) == 1100
    p = pk(f"%s3ls s3://{bucket}/m/d1 --endpoint {rgw.endpoint} --max 5")
    assert p.returncode == 0, p.stderr
    assert "367 objects (not all shown)" in p.stdout
    assert "m/d1/f00001" in p.stdout and "last modified" in p.stdout
    p = pk(f"%s3ls s3://{bucket} --endpoint {rgw.endpoint} --max 0")
    assert "s3ls: 1100 objects" in p.stdout


def test_credentials_from_profiles(rgw, bucket, pk, tmp_path):
    f = rand_file(tmp_path / "f.bin", 10)
    creds = tmp_path / "credentials"
    conf = tmp_path / "config"
    creds.write_text(f"[default]\naws_access_key_id = nope\naws_secret_access_key = nope\n\n"
                     f"[pk]\naws_access_key_id = {rgw.access_key}\n"
                     f"aws_secret_access_key = {rgw.secret_key}\n")
    conf.write_text(f"[profile viaconf]\nregion = us-east-1\nendpoint_url = {rgw.endpoint}\n"
                    f"aws_access_key_id = {rgw.access_key}\n"
                    f"aws_secret_access_key = {rgw.secret_key}\n")
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
           "AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_CONFIG_FILE": str(conf)}
    assert pk(f"%upload {f} s3://{bucket}/a --endpoint {rgw.endpoint} --profile pk",
              env=env).returncode == 0
    # profile from AWS_PROFILE, endpoint from the config file
    assert pk(f"%upload {f} s3://{bucket}/b", env=dict(env, AWS_PROFILE="viaconf")).returncode == 0
    # an explicit --profile wins over keys in the environment
    p = pk(f"%upload {f} s3://{bucket}/c --endpoint {rgw.endpoint} --profile pk",
           env=dict(env, AWS_ACCESS_KEY_ID="bad", AWS_SECRET_ACCESS_KEY="bad"))
    assert p.returncode == 0, p.stderr
    # the [default] profile has wrong keys
    p = pk(f"%upload {f} s3://{bucket}/d --endpoint {rgw.endpoint}", env=env)
    assert p.returncode == 1 and "InvalidAccessKeyId" in p.stderr
    assert "credentials file [default]" in p.stderr
    # nothing anywhere
    p = pk(f"%upload {f} s3://{bucket}/e --endpoint {rgw.endpoint}",
           env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert p.returncode == 1 and "CredentialsError" in p.stderr
    assert sorted(keys_of(rgw.client(), bucket)) == ["a", "b", "c"]


def popen_upload(pk, cmd):
    return subprocess.Popen([str(PK_BIN), "run", cmd], env=pk.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_until(cond, timeout=60, what=""):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def upload_killing_gateway(pk, rgw, cmd, ready, what):
    """Run an %upload, kill the gateway once ready() holds, collect the
    process; the gateway is restarted whatever happens. (proc, out, err)"""
    proc = popen_upload(pk, cmd)
    try:
        wait_until(ready, what=what)
        rgw.kill_gateway()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        rgw.restart_gateway()
    return proc, out, err


def test_server_killed_then_resume(rgw, bucket, pk, tmp_path):
    tree = tmp_path / "t"
    for i in range(300):
        rand_file(tree / f"small{i:04d}", 256 * 1024)
    rand_file(tree / "zz_big", 30 * MiB)
    s3 = rgw.client()
    cmd = f"%upload {tree} s3://{bucket}/r --endpoint {rgw.endpoint} --part-size 5 --threshold 5 --jobs 1"
    proc, out, err = upload_killing_gateway(pk, rgw, cmd, lambda: len(keys_of(s3, bucket)) >= 20,
                                            "the first objects")
    assert proc.returncode == 1, (out, err)
    assert "NetworkError" in err and "after 5 attempts" in err
    assert f"s3://{bucket}/r/" in err
    s3 = rgw.client()
    before = len(keys_of(s3, bucket))
    assert 20 <= before < 301
    p = pk(cmd + " --skip-existing")
    assert p.returncode == 0, p.stderr
    assert f"{before} skipped)" in p.stdout
    got = keys_of(s3, bucket)
    assert len(got) == 301
    assert read_back(s3, bucket, "r/zz_big") == md5(tree / "zz_big")
    for i in range(0, 300, 37):
        assert read_back(s3, bucket, f"r/small{i:04d}") == md5(tree / f"small{i:04d}")
    assert no_multipart_left(s3, bucket)


@pytest.mark.slow
def test_sigint_aborts_multipart(rgw, bucket, pk, tmp_path):
    f = rand_file(tmp_path / "big.bin", 120 * MiB)
    s3 = rgw.client()
    proc = popen_upload(pk, f"%upload {f} s3://{bucket}/x/ --endpoint {rgw.endpoint} "
                            "--part-size 5 --threshold 5 --jobs 1")
    try:
        wait_until(lambda: not no_multipart_left(s3, bucket), what="a multipart upload")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "KeyboardInterrupt" in err and "aborted" in err
    assert no_multipart_left(s3, bucket)
    assert keys_of(s3, bucket) == {}


def test_integrity_md5_round_trip(rgw, bucket, pk, tmp_path):
    """--integrity md5: no SHA-256 of the payload (UNSIGNED-PAYLOAD); the server still checks
    every byte against the signed Content-MD5, and the ETags are checked after upload."""
    small = rand_file(tmp_path / "t" / "small.bin", 70000)
    big = rand_file(tmp_path / "t" / "big.bin", 12 * MiB + 5)
    p = pk(f"%upload {tmp_path / 't'} s3://{bucket}/m --endpoint {rgw.endpoint} --integrity md5 "
           "--threshold 5 --part-size 5")
    assert p.returncode == 0, p.stderr
    s3 = rgw.client()
    assert read_back(s3, bucket, "m/small.bin") == md5(small)
    assert read_back(s3, bucket, "m/big.bin") == md5(big)
    p = pk(f"%upload {small} s3://{bucket}/m/ --endpoint {rgw.endpoint} --integrity crc")
    assert p.returncode == 1 and "UsageError" in p.stderr and "--integrity" in p.stderr


def test_no_s3_stage_waits_on_a_fifo(rgw, bucket, pk, tmp_path):
    """A source, a CA bundle or an AWS credentials file that is a FIFO: refused at
    once, saying what it is (open(2) would wait for a writer, where no interrupt
    reaches the stage). A FIFO inside an uploaded folder is skipped like any
    special file."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    ep = f"--endpoint {rgw.endpoint}"
    cells = [
        (f"%upload {fifo} s3://{bucket}/f {ep}", "it is a FIFO, not a regular file or a folder"),
        (f"%upload {rand_file(tmp_path / 'a.bin', 10)} s3://{bucket}/a {ep} --cacert {fifo}",
         "the CA bundle is a FIFO, not a regular file"),
        (f"%s3ls s3://{bucket} {ep} --cacert {fifo}", "the CA bundle is a FIFO, not a regular file"),
        (f"%download s3://{bucket}/ --to {tmp_path / 'd'} {ep} --cacert {fifo}",
         "the CA bundle is a FIFO, not a regular file"),
    ]
    for cell, says in cells:
        p = pk(cell, timeout=60)
        assert p.returncode == 1 and says in p.stderr, (cell, p.stderr)
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
           "AWS_SHARED_CREDENTIALS_FILE": str(fifo)}
    p = pk(f"%s3ls s3://{bucket} {ep}", env=env, timeout=60)
    assert p.returncode == 1 and "the AWS config file is a FIFO" in p.stderr, p.stderr
    tree = tmp_path / "tree"
    rand_file(tree / "ok.bin", 100)
    os.mkfifo(tree / "pipe")
    p = pk(f"%upload {tree} s3://{bucket}/t {ep}", timeout=60)
    assert p.returncode == 0, p.stderr
    assert "skipped 1 symbolic links or special files" in p.stderr
    assert list(keys_of(rgw.client(), bucket, "t/")) == ["t/ok.bin"]


def test_keys_with_control_bytes_are_shown_escaped(rgw, bucket, pk, tmp_path):
    """A key is a name from outside: with a newline (or a bidirectional
    override) it is shown escaped in the %upload and %s3ls tables and in the
    lines they print. XML 1.0 cannot carry an ESC (S3 would write &#27;,
    which no XML parser accepts), so listings ask for encoding-type=url and
    decode the keys: a key with an ESC, a '+', a space and a '%' is listed
    and downloaded whole, and shown escaped."""
    tree = tmp_path / "tree"
    name = "a\nupload: all done\u202eb\x1b[2J c+d%41"
    shown = "e/a\\x0aupload: all done\\u202eb\\x1b[2J c+d%41"
    rand_file(tree / name, 10)
    p = pk(f"%upload {tree} s3://{bucket}/e --endpoint {rgw.endpoint}", timeout=60)
    assert p.returncode == 0, p.stderr
    assert shown in p.stdout, p.stdout
    assert list(keys_of(rgw.client(), bucket, "e/")) == ["e/" + name]
    p = pk(f"%s3ls s3://{bucket}/e --endpoint {rgw.endpoint}", timeout=60)
    assert p.returncode == 0, p.stderr
    assert shown in p.stdout, p.stdout
    out = p.stdout + p.stderr
    assert "\u202e" not in out and "\nupload: all done" not in out and "\x1b" not in out
    # a second %upload finds the key already there (its listing decoded it)
    p = pk(f"%upload {tree} s3://{bucket}/e --endpoint {rgw.endpoint}", timeout=60)
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stdout + p.stderr
    dest = tmp_path / "back"
    p = pk(f"%download s3://{bucket}/e/ --to {dest} --endpoint {rgw.endpoint}", timeout=60)
    assert p.returncode == 0, p.stderr
    assert (dest / name).read_bytes() == (tree / name).read_bytes()
    assert "\x1b" not in p.stdout + p.stderr
