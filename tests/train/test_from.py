"""%train --from DIR: training straight from the batch files, read ahead by a
thread: every image once per epoch, the same order from the same seed,
memory bounded by the window however large the set, a damaged file named
(the model keeps its last finished step), interrupts, and the input figures
(data stall, MB/s, the cache and file-system fields of the record)."""
import json
import pickle
import re
import subprocess
import tempfile
import time
from collections import Counter

import numpy as np
import pytest

import peak_rss
import pkutil

IMG = 3072


def write_set(root, nfiles, per_file, test=100, seed=0, sizes=None):
    """A cifar-10-batches-py folder of nfiles data_batch_N (protocol 4, as
    CPython writes them) and a test_batch; returns the folder and the
    bytes of one data file."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    size = 0
    for i in range(nfiles + 1):
        n = test if i == nfiles else (sizes[i] if sizes else per_file)
        x = rng.integers(0, 256, size=(n, IMG), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=n)]
        name = "test_batch" if i == nfiles else f"data_batch_{i + 1}"
        blob = pickle.dumps({"batch_label": name, "labels": y, "data": x,
                             "filenames": [f"{name}_{k}.png" for k in range(n)]}, protocol=4)
        (d / name).write_bytes(blob)
        size = max(size, len(blob)) if i < nfiles else size
    return d, size


def run(*cells, timeout=600):
    return pkutil.run_cli(*cells, timeout=timeout)


def order_of(path):
    """[(epoch, file, index), ...] from an --order file."""
    out = []
    for line in path.read_text().splitlines():
        e, f, i = line.split()
        out.append((int(e), f, int(i)))
    return out


def test_every_image_once_per_epoch_and_deterministic(tmp_path):
    sizes = [37, 50, 12, 50, 50, 3, 50, 41, 50, 50, 29]  # uneven files, odd batch ends
    d, _ = write_set(tmp_path / "s", len(sizes), 0, sizes=sizes)
    runs = {}
    for tag, seed in (("a", 7), ("b", 7), ("c", 8)):
        o, l = tmp_path / f"order-{tag}", tmp_path / f"loss-{tag}"
        r = run(f"%train --from {d} --epochs 3 --seed {seed} --batch-size 8 --window 3 "
                f"--prefetch 1 --threads 1 --order {o} --losses {l} --log-every 10")
        assert r.returncode == 0, r.stdout + r.stderr
        runs[tag] = (order_of(o), l.read_text(), r.stdout)
    seq, losses, out = runs["a"]
    want = Counter((f"data_batch_{i + 1}", k) for i, n in enumerate(sizes) for k in range(n))
    for e in (1, 2, 3):
        got = Counter((f, i) for ep, f, i in seq if ep == e)
        assert got == want, f"epoch {e}"
    # epochs come in order, and each differs in its order
    assert [ep for ep, _, _ in seq] == sorted(ep for ep, _, _ in seq)
    ep_orders = [[(f, i) for ep, f, i in seq if ep == e] for e in (1, 2, 3)]
    assert ep_orders[0] != ep_orders[1] != ep_orders[2]
    # images are shuffled within a window: the first window holds three files
    first = ep_orders[0][:sum(sorted(sizes)[:3])]
    assert len({f for f, _ in first}) >= 2
    # file order changes per epoch
    files_1 = list(dict.fromkeys(f for f, _ in ep_orders[0]))
    files_2 = list(dict.fromkeys(f for f, _ in ep_orders[1]))
    assert sorted(files_1) == sorted(files_2) and len(files_1) == len(sizes)
    # the same seed gives the same order and the same losses; another seed not
    assert runs["b"][0] == seq and runs["b"][1] == losses
    assert runs["c"][0] != seq
    # the summary's figures
    m = re.search(r"^train: 3 epochs, (\d+) images", out, re.M)
    assert m and int(m.group(1)) == 3 * sum(sizes)
    m = re.search(r"^input: (\S+ [kMG]?B) from (\d+) windows of 3 files \(11 files in the set\).*"
                  r"data stall (\d+\.\d+) s .*utilization (\d+\.\d) %", out, re.M)
    assert m, out
    assert int(m.group(2)) == 3 * 4  # ceil(11 / 3) windows an epoch


def child_peak(cells, timeout=600):
    """Peak RSS (KiB) of `pipekernel run CELLS`, read with wait4 from outside
    by a fresh launcher (a child forked from pytest itself would report
    pytest's own size)."""
    with tempfile.TemporaryFile() as out:
        peak, rc = peak_rss.run([pkutil.PK_BIN, "run", *cells], stdout=out,
                                stderr=subprocess.STDOUT, timeout=pkutil.scaled(timeout))
        out.seek(0)
        return peak, rc, out.read().decode()


def test_memory_bounded_by_the_window(tmp_path):
    """A set of 48 files of 1000 images (148 MB): --from holds at most
    window + prefetch files, so its peak RSS stays far below the set's size
    and below a bound set by the window; %load of the same set holds it all."""
    d, fsize = write_set(tmp_path / "big", 48, 1000, test=50)
    set_bytes = sum(p.stat().st_size for p in d.glob("data_batch_*"))
    base, rc, out = child_peak(["%echo base"])
    assert rc == 0, out
    cells = [f"%train --from {d} --epochs 1 --batch-size 64 --window 2 --prefetch 2 "
             f"--log-every 100000 --seed 1"]
    peak, rc, out = child_peak(cells)
    assert rc == 0, out
    assert "at most 4 files held" in out, out
    # window + prefetch files of images, the one file mapped while it is
    # parsed, and the window being assembled grown by realloc: 7 files' worth
    bound = base + 7 * fsize // 1024 + 32 * 1024
    assert peak < bound, (peak, bound, base, fsize)
    assert peak * 1024 < set_bytes / 2
    loaded, rc, out = child_peak([f"%load {d} --no-hash"])
    assert rc == 0, out
    assert loaded * 1024 > set_bytes * 0.9  # the in-memory path really holds the set


def test_damaged_file_is_named_and_the_model_kept(tmp_path):
    """A truncated file mid-stream stops training with an error naming the
    file; the steps before it stay in the session's model, which a later
    %train --epochs 0 --save writes."""
    d, _ = write_set(tmp_path / "s", 6, 200)
    victim = d / "data_batch_4"
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 2])
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="pipekernel", startup_timeout=30)
    try:
        losses = tmp_path / "losses"
        rep, msgs = pkutil.execute(kc, f"%train --from {d} --epochs 1 --window 1 --prefetch 1 "
                                       f"--seed 3 --losses {losses} --threads 1")
        assert rep["status"] == "error"
        assert rep["ename"] == "FormatError", rep
        assert "data_batch_4" in rep["evalue"], rep["evalue"]
        steps = len(losses.read_text().split())
        out = tmp_path / "kept.safetensors"
        rep, msgs = pkutil.execute(kc, f"%train --epochs 0 --save {out}")
        text = pkutil.stdout_of(msgs)
        assert rep["status"] == "ok", text
        assert "the session's model" in text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    # the files trained before it are whole windows: a multiple of their steps
    assert steps % 50 == 0 and steps < 6 * 50
    assert out.stat().st_size > 62006 * 4


def test_interrupt_while_training_and_while_waiting(tmp_path):
    """An interrupt stops %train --from with KeyboardInterrupt, whether the
    trainer is stepping or waiting for the reader."""
    d, _ = write_set(tmp_path / "s", 12, 2000)
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="pipekernel", startup_timeout=30)
    try:
        for extra in ("", " --window 1 --prefetch 0 --cold"):
            kc.execute(f"%train --from {d} --epochs 50 --log-every 200 --threads 1{extra}")
            t_end = time.time() + 120
            seen = False
            while time.time() < t_end and not seen:
                m = kc.get_iopub_msg(timeout=60)
                seen = m["msg_type"] == "stream" and "loss:" in m["content"]["text"]
            assert seen
            t0 = time.time()
            km.interrupt_kernel()
            reply = kc.get_shell_msg(timeout=30)
            took = time.time() - t0
            assert reply["content"]["status"] == "error"
            assert reply["content"]["ename"] == "KeyboardInterrupt"
            assert took < 5, took
            while True:  # drain to idle
                m = kc.get_iopub_msg(timeout=30)
                if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    break
        rep, _ = pkutil.execute(kc, "%echo alive")
        assert rep["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_record_and_cold(tmp_path):
    """The train record of --from carries the bytes read, cache and file
    system; --cold drops the files' pages first (on this file system the
    drop works and the record says cold; on tmpfs it says the drop had no
    effect and the record stays warm)."""
    d, _ = write_set(tmp_path / "s", 4, 300)
    rec = tmp_path / "r.json"
    r = run(f"%train --from {d} --epochs 1 --seed 1 --cold", f"%train --from {d} --epochs 1 --seed 1 --new",
            f"%timings --json {rec}", "%timings")
    assert r.returncode == 0, r.stdout + r.stderr
    stages = json.loads(rec.read_text())["stages"]
    assert [s["stage"] for s in stages] == ["train", "train"]
    assert all(s["fs"] and s["bytes"] > 4 * 300 * IMG for s in stages)
    assert "train: --cold: 4 files" in r.stdout
    on_tmpfs = "tmpfs" in stages[0]["fs"]
    assert stages[0]["cache"] == ("warm" if on_tmpfs else "cold")
    assert stages[1]["cache"] == "warm"
    assert ("the drop had no effect" in r.stdout) == on_tmpfs


def test_errors(tmp_path):
    d, _ = write_set(tmp_path / "s", 2, 10)
    r = run(f"%train --from {tmp_path / 'nothing'}")
    assert r.returncode == 1 and "FileNotFoundError" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run(f"%train --from {empty}")
    assert r.returncode == 1 and "no data_batch_* files to train from" in r.stderr
    r = run("%train --window 2")
    assert r.returncode == 1 and "go with --from DIR" in r.stderr
    r = run(f"%train --from {d} --window 0")
    assert r.returncode == 1
    r = run(f"%train --from {d} --name x")
    assert r.returncode == 1 and "exclude each other" in r.stderr
    r = run("%train --from s3://bucket/prefix/ --cold")  # refused before any request
    assert r.returncode == 1 and "not cached here" in r.stderr
