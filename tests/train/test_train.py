"""%train: parity with PyTorch, accuracy, interrupts, safetensors in and out."""
import os
import re
import signal
import struct
import subprocess
import time

import numpy as np
import pytest

import pkutil
from trainutil import NAMES, epoch_orders, learnable, make_net, normalise, write_cifar

LOSS_RE = re.compile(r"^\[(\d+), +(\d+)\] loss: (\d+\.\d{3})$", re.M)


def run(*cells, timeout=600):
    return pkutil.run_cli(*cells, timeout=timeout)


def out_of(r):
    return (r.stdout if isinstance(r.stdout, str) else r.stdout.decode()) + \
           (r.stderr if isinstance(r.stderr, str) else r.stderr.decode())


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(400, 3072), dtype=np.uint8)
    y = rng.integers(0, 10, size=400).astype(np.uint8)
    xt = rng.integers(0, 256, size=(100, 3072), dtype=np.uint8)
    yt = rng.integers(0, 10, size=100).astype(np.uint8)
    write_cifar(tmp_path / "d", (x, y), (xt, yt))
    return tmp_path / "d", x, y


def test_parity_with_pytorch(small, tmp_path, torch):
    """Same initial weights and batch order: per-step loss within 1e-4 for
    200 steps, final weights within 1e-3."""
    from safetensors.torch import load_file, save_file
    d, x, y = small
    torch.manual_seed(0)
    net = make_net(torch)
    init = tmp_path / "init.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(init))
    out, losses = tmp_path / "out.safetensors", tmp_path / "losses.txt"
    r = run(f"%load {d}", f"%train --epochs 2 --batch-size 4 --seed 77 --init {init} "
            f"--save {out} --losses {losses} --log-every 50 --device cpu")
    text = out_of(r)
    assert r.returncode == 0, text
    ours = [float(v) for v in losses.read_text().split()]
    assert len(ours) == 200

    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    X = normalise(torch, x)
    Y = torch.from_numpy(y.astype(np.int64))
    ref = []
    for order in epoch_orders(77, 400, 2):
        for b in range(100):
            idx = torch.tensor(order[4 * b:4 * b + 4])
            opt.zero_grad()
            loss = crit(net(X[idx]), Y[idx])
            loss.backward()
            opt.step()
            ref.append(loss.item())
    diffs = np.abs(np.array(ours) - np.array(ref))
    assert diffs.max() < 1e-4, (diffs.argmax(), ours[diffs.argmax()], ref[diffs.argmax()])
    # the log lines are the running means of the same losses
    lines = LOSS_RE.findall(text)
    assert [(int(e), int(i)) for e, i, _ in lines] == [(1, 50), (1, 100), (2, 50), (2, 100)]
    for k, (e, i, v) in enumerate(lines):
        assert abs(float(v) - np.mean(ref[50 * k:50 * k + 50])) < 1.5e-3
    got = load_file(str(out))
    assert list(got) and set(got) == set(net.state_dict())
    for k, v in net.state_dict().items():
        assert got[k].dtype == torch.float32 and got[k].shape == v.shape
        assert (got[k] - v).abs().max().item() < 1e-3, k
    # PyTorch loads the file into the model directly
    net.load_state_dict(got)


def test_learns_synthetic(tmp_path):
    rng = np.random.default_rng(5)
    write_cifar(tmp_path / "d", learnable(rng, 6000), learnable(rng, 1000))
    r = run(f"%load {tmp_path / 'd'}", "%train --epochs 2 --seed 1 --log-every 500")
    text = out_of(r)
    assert r.returncode == 0, text
    assert len(LOSS_RE.findall(text)) == 6
    m = re.search(r"^Accuracy of the network on the 1000 test images: (\d+\.\d) %$", text, re.M)
    assert m, text
    assert float(m.group(1)) >= 70, text
    assert "Finished Training" in text and "images/s" in text
    for name in NAMES:
        assert name in text


def have_mkdata():
    r = run("%help mkdata")
    return r.returncode == 0


def test_mkdata_two_epochs(tmp_path):
    if not have_mkdata():
        pytest.skip("%mkdata is not in this build")
    d = tmp_path / "mk"
    r = run(f"%mkdata {d}", f"%load {d}", "%train --epochs 2", timeout=1200)
    text = out_of(r)
    assert r.returncode == 0, text
    lines = LOSS_RE.findall(text)
    assert lines and all(e in ("1", "2") for e, _, _ in lines)
    m = re.search(r"^Accuracy of the network on the (\d+) test images: (\d+\.\d) %$", text, re.M)
    assert m and float(m.group(2)) >= 70, text


def test_nothing_loaded():
    r = run("%train")
    assert r.returncode != 0
    assert "run %load DIR first" in out_of(r)


def test_sigint_mid_epoch_then_save(tmp_path, torch):
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, size=(20000, 3072), dtype=np.uint8)
    y = rng.integers(0, 10, size=20000).astype(np.uint8)
    write_cifar(tmp_path / "d", (x, y), (x[:100], y[:100]))
    # a kernel session: interrupt the cell, then save from the next one
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="pipekernel", startup_timeout=30)
    try:
        rep, _ = pkutil.execute(kc, f"%load {tmp_path / 'd'}")
        assert rep["status"] == "ok"
        kc.execute("%train --epochs 50 --log-every 100 --threads 1")
        # wait for the first loss line, then interrupt
        t_end = time.time() + 120
        seen = False
        while time.time() < t_end and not seen:
            m = kc.get_iopub_msg(timeout=60)
            if m["msg_type"] == "stream" and "loss:" in m["content"]["text"]:
                seen = True
        assert seen
        t0 = time.time()
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)
        took = time.time() - t0
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert took < 5, took
        out = tmp_path / "after.safetensors"
        rep, msgs = pkutil.execute(kc, f"%train --epochs 0 --save {out}")
        text = pkutil.stdout_of(msgs)
        assert rep["status"] == "ok", text
        assert "the session's model" in text
        assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    from safetensors.torch import load_file
    w = load_file(str(out))
    net = make_net(torch)
    net.load_state_dict(w)
    assert all(torch.isfinite(v).all() for v in w.values())


def _header(meta):
    import json
    h = json.dumps(meta).encode()
    return struct.pack("<Q", len(h)) + h


def test_init_errors(small, tmp_path, torch):
    from safetensors.torch import save_file
    d = small[0]
    net = make_net(torch)
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    good = tmp_path / "good.safetensors"
    save_file(sd, str(good))
    cases = {}
    bad = dict(sd)
    bad["fc1.weight"] = torch.zeros(120, 401)
    save_file(bad, str(tmp_path / "shape.safetensors"))
    cases["shape"] = "fc1.weight: shape [120,401], expected [120,400]"
    blob = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(blob[:len(blob) - 1000])
    cases["trunc"] = "outside the"
    (tmp_path / "short.safetensors").write_bytes(blob[:5])
    cases["short"] = "truncated"
    missing = dict(sd)
    del missing["fc3.bias"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    cases["missing"] = "tensor fc3.bias is missing"
    half = {k: v.half() for k, v in sd.items()}
    save_file(half, str(tmp_path / "dtype.safetensors"))
    cases["dtype"] = "dtype F16, expected F32"
    (tmp_path / "json.safetensors").write_bytes(struct.pack("<Q", 4) + b"{x]}")
    cases["json"] = "not a JSON object"
    (tmp_path / "hlen.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    cases["hlen"] = "does not fit"
    extra = dict(sd)
    extra["fc4.weight"] = torch.zeros(2)
    save_file(extra, str(tmp_path / "extra.safetensors"))
    cases["extra"] = "unexpected tensor"
    for name, want in cases.items():
        r = run(f"%load {d}", f"%train --epochs 1 --init {tmp_path / (name + '.safetensors')}")
        text = out_of(r)
        assert r.returncode != 0, name
        assert want in text, (name, text)
        assert "Finished Training" not in text
    r = run(f"%load {d}", f"%train --epochs 0 --init {good}")
    assert r.returncode == 0, out_of(r)


def test_no_train_file_waits_on_a_fifo(small, tmp_path):
    """--init and --losses that are FIFOs: open(2) would wait for the other end,
    where no interrupt reaches the stage; both are refused at once, saying what
    they are."""
    d = small[0]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for opt, says in (("--init", "the --init file is a FIFO, not a regular file"),
                      ("--losses", "the --losses file is a FIFO, not a regular file")):
        r = run(f"%load {d}", f"%train --epochs 1 --device cpu {opt} {fifo}", timeout=60)
        assert r.returncode == 1 and says in out_of(r), (opt, out_of(r))
        assert "Finished Training" not in out_of(r)
