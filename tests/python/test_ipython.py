"""The IPython extension in a real ipykernel (the .venv's python3 kernel)
and in terminal IPython: %pk and %%pk output through IPython's display
system (streams, displays, progress updated in place by display id),
values as execute_result, stage errors as error replies named as in the
Pipeline kernel, and the notebook's interrupt during %pk sleep 30."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

import pyext
from pkutil import execute, stdout_of


@pytest.fixture
def ipk(package, tmp_path):
    """(km, kc) of a python3 ipykernel with the package importable and the
    extension loaded, working in tmp_path."""
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=90, env=pyext.env(),
                              cwd=str(tmp_path))
    try:
        reply, _ = execute(kc, "%load_ext pipekernel")
        assert reply["status"] == "ok", reply
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def of(msgs, *types):
    return [m for m in msgs if m["msg_type"] in types]


def test_streams_values_and_errors(ipk, tmp_path):
    km, kc = ipk
    reply, msgs = execute(kc, "%pk echo hello")
    assert reply["status"] == "ok" and stdout_of(msgs) == "hello\n"

    reply, msgs = execute(kc, "%pk pwd")
    res = of(msgs, "execute_result")
    assert res and res[0]["content"]["data"]["text/plain"] == repr(str(tmp_path))

    reply, msgs = execute(kc, "%%pk\n%echo one\n%echo --stderr two\n%set V=7\n%set V")
    assert reply["status"] == "ok"
    assert stdout_of(msgs) == "one\n" and stdout_of(msgs, "stderr") == "two\n"
    assert of(msgs, "execute_result")[0]["content"]["data"]["text/plain"] == "'7'"

    # IPython expands {expressions} of a line magic; a $NAME that is no
    # Python variable is the magic language's (and IPython then leaves the
    # whole line alone)
    reply, msgs = execute(kc, "n = 6 * 7\n%pk echo {n}\n%pk echo $V {n}")
    assert stdout_of(msgs) == "42\n7 {n}\n"

    reply, msgs = execute(kc, "%pk md5 /nonexistent/file")
    assert reply["status"] == "error"
    assert reply["ename"] == "FileNotFoundError"
    assert reply["evalue"] == "/nonexistent/file: cannot open: No such file or directory"
    err = of(msgs, "error")[0]["content"]
    assert any("in line 1: %md5 /nonexistent/file" in t for t in err["traceback"])

    reply, _ = execute(kc, "%%pk\n%echo a\n%nosuch")
    assert reply["status"] == "error" and reply["ename"] == "UnknownMagicError"

    code = ("import pipekernel\ntry:\n    pipekernel.run('%md5 /nonexistent/x')\n"
            "except FileNotFoundError as e:\n    print(type(e).__module__, e.where)")
    reply, msgs = execute(kc, code)
    assert stdout_of(msgs) == "pipekernel.errors /nonexistent/x\n"

    reply, msgs = execute(kc, "%pk input")  # the test client allows no stdin
    assert reply["status"] == "error" and reply["ename"] == "StdinNotImplementedError"


def test_progress_is_one_display_updated_in_place(ipk):
    km, kc = ipk
    reply, msgs = execute(kc, "%pk sleep 1.5")
    assert reply["status"] == "ok"
    shown = of(msgs, "display_data")
    updates = of(msgs, "update_display_data")
    assert len(shown) == 1 and updates
    ident = shown[0]["content"]["transient"]["display_id"]
    assert all(u["content"]["transient"]["display_id"] == ident for u in updates)
    first, last = shown[0]["content"]["data"], updates[-1]["content"]["data"]
    assert 'class="pk-progress"' in first["text/html"] and 'data-state="running"' in first["text/html"]
    assert 'data-state="done"' in last["text/html"]
    assert last["text/plain"].startswith("sleep [##############################] 100%")


def test_displays_of_stages(ipk, tmp_path):
    km, kc = ipk
    d = tmp_path / "d"
    reply, msgs = execute(kc, f"%pk mkdata {d} --train-batches 1 --images-per-batch 200\n"
                              f"%pk load {d}\n%pk preview --n 4 --seed 2\n%pk meta\n"
                              f"%pk timings --chart", timeout=300)
    assert reply["status"] == "ok", reply
    data = [m["content"]["data"] for m in of(msgs, "display_data")]
    png = [x for x in data if "image/png" in x and "train images" in x["text/plain"]]
    assert png and isinstance(png[0]["image/png"], str)  # base64, as the kernel sends it
    import base64
    assert base64.b64decode(png[0]["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("image/svg+xml" in x for x in data)  # %meta's and %timings' charts
    assert any("<table" in x.get("text/html", "") and "pickled" in x["text/html"] for x in data)


def test_interrupt_during_sleep(ipk):
    """The notebook's interrupt (SIGINT to the kernel) during %pk sleep 30:
    a KeyboardInterrupt error reply within a second, the bar's last state
    "interrupted", and %pk echo ok works after."""
    km, kc = ipk
    msg_id = kc.execute("%pk sleep 30")
    bar = None
    deadline = time.monotonic() + 60
    while bar is None:
        m = kc.get_iopub_msg(timeout=max(1, deadline - time.monotonic()))
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "display_data":
            bar = m["content"]["transient"]["display_id"]
    t0 = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=30)
    took = time.monotonic() - t0
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert took < 1.0, took
    last = None
    while True:
        m = kc.get_iopub_msg(timeout=30)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "update_display_data":
            last = m["content"]["data"]["text/html"]
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    assert last and 'data-state="interrupted"' in last
    reply, msgs = execute(kc, "%pk echo ok")
    assert reply["status"] == "ok" and stdout_of(msgs) == "ok\n"


def test_terminal_ipython(package, tmp_path):
    """%load_ext pipekernel in terminal IPython: text on the terminal, the
    progress's final line on stderr, a stage error shown as its class."""
    script = tmp_path / "s.ipy"
    script.write_text("%load_ext pipekernel\n%pk echo from ipython\n%pk sleep 1.1\n"
                      "try:\n    %pk md5 /nonexistent\nexcept FileNotFoundError as e:\n"
                      "    print('caught', type(e).__name__)\n")
    ipython = Path(sys.executable).parent / "ipython"
    p = subprocess.run([str(ipython), "--no-banner", "--quick", str(script)], cwd=tmp_path,
                       env=pyext.env(), capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    pyext.check_sanitizers(p.stderr)
    assert p.returncode == 0, p.stderr
    assert "from ipython\n" in p.stdout
    assert "caught FileNotFoundError" in p.stdout
    assert "sleep [##############################] 100%" in p.stderr
    assert os.path.exists(ipython)
