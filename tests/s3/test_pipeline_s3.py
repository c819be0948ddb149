"""%pipeline with an S3 target: the upload stage runs inside the pipeline
(endpoint from AWS_ENDPOINT_URL, as a user configures it), every record
arrives intact, and the timing table has its upload row."""
import hashlib
import re

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
