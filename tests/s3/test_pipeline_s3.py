"""%pipeline with an S3 target: the upload stage runs inside the pipeline
(endpoint from AWS_ENDPOINT_URL, as a user configures it), every record
arrives intact, and the timing table has its upload row."""
import hashlib
import re

from pkutil import ROOT
from test_upload import keys_of, no_multipart_left, read_back


def test_pipeline_inplace_uploads_records(rgw, bucket, pk, tmp_path):
    data = tmp_path / "shared"
    p = pk(f"%mkdata {data} --train-batches 2 --images-per-batch 300 --seed 3",
           f"%pipeline --mode inplace --source {data} --s3 s3://{bucket}/cifar10 "
           f"--epochs 0 --seed 1 --label t2",
           env={"AWS_ENDPOINT_URL": rgw.endpoint}, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "%upload" in p.stdout and "upload: skipped" not in p.stdout
    s3 = rgw.client()
    got = keys_of(s3, bucket)
    files = sorted(f for f in (data / "cifar-10-batches-py").iterdir() if f.is_file())
    assert sorted(got) == sorted(f"cifar10/{f.name}" for f in files)
    for f in files:
        assert read_back(s3, bucket, f"cifar10/{f.name}") == hashlib.md5(f.read_bytes()).hexdigest()
    assert no_multipart_left(s3, bucket)
    assert re.search(r"^upload +upload +\d", p.stdout, re.M), p.stdout[-2000:]


def put_source(rgw, bucket, pk, data):
    """The tarball and its manifest in s3://bucket/src/, as a user stages them."""
    s3 = rgw.client()
    for name in ("cifar-10-python.tar.gz", "MANIFEST.md5"):
        s3.upload_file(str(data / name), bucket, f"src/{name}")
    return f"s3://{bucket}/src/"


def test_pipeline_copy_from_s3(rgw, bucket, pk, tmp_path):
    data = tmp_path / "server"
    p = pk(f"%mkdata {data} --train-batches 2 --images-per-batch 300 --seed 3")
    assert p.returncode == 0, p.stderr
    src = put_source(rgw, bucket, pk, data)
    work = tmp_path / "work"
    p = pk(f"%pipeline --mode copy --source {src}cifar-10-python.tar.gz --work {work} "
           f"--endpoint {rgw.endpoint} --epochs 0 --seed 1 --label t1-s3", timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"%download '{src}cifar-10-python.tar.gz'" in p.stdout
    assert "ETag = md5" in p.stdout  # the tarball's ETag checked on the way
    assert re.search(r"^download +download +\d", p.stdout, re.M), p.stdout[-2000:]
    got = work / "cifar-10-batches-py"
    for f in (data / "cifar-10-batches-py").iterdir():
        assert hashlib.md5((got / f.name).read_bytes()).hexdigest() == \
            hashlib.md5(f.read_bytes()).hexdigest()


def test_pipeline_inplace_refuses_s3(pk, tmp_path):
    p = pk("%pipeline --mode inplace --source s3://some-bucket/cifar10/")
    assert p.returncode == 1
    assert "UsageError" in p.stderr and "object storage" in p.stderr
    assert "--mode copy --source s3://BUCKET/KEY" in p.stderr


def test_notebook_takes_its_data_from_s3(rgw, bucket, pk, tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "report"))
    from test_notebooks import NB, assert_clean, run_notebook, text_of
    data = tmp_path / "staged"
    p = pk(f"%mkdata {data} --train-batches 2 --images-per-batch 200 --seed 5")
    assert p.returncode == 0, p.stderr
    src = put_source(rgw, bucket, pk, data)
    env = dict(pk.env, AWS_ENDPOINT_URL=rgw.endpoint, WORK=str(tmp_path / "work"),
               TRAIN_BATCHES="2", IMAGES_PER_BATCH="200", EPOCHS="1", LOG_EVERY="100",
               S3_SOURCE=src)
    nb = run_notebook(NB / "cifar10_pipeline.ipynb", tmp_path, env=env)
    assert_clean(nb)
    text = text_of(nb)
    assert "ETag = md5" in text  # the tarball came from S3
    # the bytes are the staged ones (seed 5), not the notebook's own server copy
    assert hashlib.md5((tmp_path / "work" / "cifar-10-python.tar.gz").read_bytes()).hexdigest() == \
        hashlib.md5((data / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
