"""%train --from s3://BUCKET/PREFIX/ against a real RGW: the batch objects
read ahead of use (ranged GETs, ETags checked) train exactly as the same
files do from a folder (same order, same losses from the same seed), the
test split and the class names come from the prefix, and a damaged object
mid-stream is an error naming it."""
import re

from test_upload import keys_of


def upload_set(pk, rgw, bucket, tmp_path, batches=4, per=300):
    data = tmp_path / "data"
    p = pk(f"%mkdata {data} --train-batches {batches} --images-per-batch {per} --seed 5",
           f"%upload {data}/cifar-10-batches-py s3://{bucket}/cifar10/ --endpoint {rgw.endpoint}")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return data / "cifar-10-batches-py", f"s3://{bucket}/cifar10/"


def test_from_s3_trains_as_from_the_folder(rgw, bucket, pk, tmp_path):
    folder, url = upload_set(pk, rgw, bucket, tmp_path)
    runs = {}
    for tag, src, extra in (("s3", url, f" --endpoint {rgw.endpoint}"), ("dir", folder, "")):
        o, l = tmp_path / f"order-{tag}", tmp_path / f"loss-{tag}"
        p = pk(f"%train --from {src}{extra} --epochs 2 --seed 3 --window 2 --prefetch 1 "
               f"--threads 1 --order {o} --losses {l} --log-every 50", f"%timings --json {tmp_path}/{tag}.json",
               timeout=600)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        runs[tag] = (o.read_text(), l.read_text(), p.stdout)
    assert runs["s3"][0] == runs["dir"][0]  # the same order, file names and all
    assert runs["s3"][1] == runs["dir"][1]  # the same bytes: the same losses
    out = runs["s3"][2]
    assert re.search(r"^train: 2 epochs, 2400 images", out, re.M), out
    assert "(4 files in the set)" in out
    assert "Accuracy of the network on the 300 test images" in out  # test_batch from the prefix
    assert "no class names" not in out and "no test split" not in out
    import json
    rec = json.loads((tmp_path / "s3.json").read_text())["stages"][0]
    assert rec["fs"] == f"s3 {url}" and rec["cache"] is None and rec["bytes"] > 4 * 300 * 3072


def test_from_s3_damaged_object_and_errors(rgw, bucket, pk, tmp_path):
    folder, url = upload_set(pk, rgw, bucket, tmp_path, batches=5, per=200)
    s3 = rgw.client()
    blob = (folder / "data_batch_3").read_bytes()
    s3.put_object(Bucket=bucket, Key="cifar10/data_batch_3", Body=blob[: len(blob) // 2])
    p = pk(f"%train --from {url} --endpoint {rgw.endpoint} --epochs 1 --seed 1 --window 1 "
           f"--prefetch 1", timeout=600)
    assert p.returncode == 1
    assert "FormatError" in p.stderr and f"{url}data_batch_3" in p.stderr, p.stderr
    p = pk(f"%train --from s3://{bucket}/nothing/ --endpoint {rgw.endpoint}")
    assert p.returncode == 1 and "no data_batch_* files to train from" in p.stderr
    p = pk(f"%train --from {url} --endpoint {rgw.endpoint} --cold")
    assert p.returncode == 1 and "not cached here" in p.stderr
    assert sorted(keys_of(s3, bucket))[0].startswith("cifar10/")
