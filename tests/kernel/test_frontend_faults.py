"""Faults on the frontend's side: a client that disappears in the middle of a
cell, and messages over the size limits.

A client that goes away (killed, or closing its sockets) while its cell
runs: the cell finishes (or is interrupted by the next client) and the
kernel serves the next client that connects with the same connection file.

Oversized requests (docs/kernel.md, "Oversized messages"): none leaves a
frontend waiting.
- a cell over PK_LIMIT_CELL_BYTES (1 MiB) in a message under
  PK_LIMIT_MSG_BYTES (64 MiB): an error reply (LimitError naming the size and
  the limit); execute_input and history hold only its first 4 KiB;
- a message over PK_LIMIT_MSG_BYTES, in one frame or several: libzmq reads
  frames up to 1 GiB (or a quarter of the memory); the kernel verifies the
  signature without reading the content and answers with a LimitError reply
  naming the size and the limit, then frees it.
"""
import os
import select
import signal
import subprocess
import sys
import time

import pytest
import zmq
from jupyter_client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

from pkkernel import (WAIT, control_request, env_with, iopub_until_idle, run, shell_reply,
                      stream_text, wait_iopub)

SANITIZED = os.environ.get("PK_SANITIZED") == "1"
MiB = 1 << 20


def proc_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


@pytest.fixture
def owned(tmp_path):
    """A kernel whose stderr is kept, routine lines included (PK_LOG=info):
    (km, path of its log)."""
    log = tmp_path / "kernel.log"
    f = open(log, "wb")
    km = KernelManager(kernel_name="pipekernel")
    km.start_kernel(stderr=f, env=env_with(PK_LOG="info"))
    try:
        yield km, log
    finally:
        if km.is_alive():
            km.shutdown_kernel(now=False)
        f.close()


def client_of(km):
    kc = BlockingKernelClient(connection_file=km.connection_file)
    kc.load_connection_file()
    kc.start_channels()
    return kc


# The first client, in its own process: starts CELL, prints the request's
# msg_id once the kernel runs it (execute_input, or the input_request), then
# disappears the way MODE says.
FIRST_CLIENT = r"""
import os, signal, sys, time
from jupyter_client import BlockingKernelClient
cf, code, mode, stdin = sys.argv[1:5]
kc = BlockingKernelClient(connection_file=cf)
kc.load_connection_file()
kc.start_channels()
kc.wait_for_ready(timeout=60)
msg_id = kc.execute(code, allow_stdin=stdin == "1")
if stdin == "1":
    kc.get_stdin_msg(timeout=60)
else:
    while True:
        m = kc.get_iopub_msg(timeout=60)
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "execute_input":
            break
print(msg_id, flush=True)
if mode == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
kc.stop_channels()  # "close": sockets closed, process gone
os._exit(0)
"""


def first_client(km, code, mode, stdin=False):
    p = subprocess.run([sys.executable, "-c", FIRST_CLIENT, km.connection_file, code, mode,
                        "1" if stdin else "0"], capture_output=True, text=True, timeout=WAIT)
    msg_id = p.stdout.strip()
    assert msg_id, f"first client failed ({p.returncode}): {p.stderr}"
    if mode == "kill":
        assert p.returncode == -signal.SIGKILL
    return msg_id


def served(kc):
    """The next client gets kernel_info and an execute."""
    info = kc.kernel_info(reply=True, timeout=WAIT)
    assert info["content"]["status"] == "ok"
    reply, msgs = run(kc, "%echo served")
    assert reply["status"] == "ok" and stream_text(msgs) == "served\n"


@pytest.mark.parametrize("mode", ["kill", "close"])
def test_client_gone_cell_finishes(owned, mode):
    km, _ = owned
    orphan = first_client(km, "%sleep 2\n%set FINISHED=yes", mode)
    kc = client_of(km)
    try:
        # the cell still runs after its client is gone: its progress bar moves
        wait_iopub(kc, orphan, "update_display_data")
        msgs = iopub_until_idle(kc, orphan)
        assert not [m for m in msgs if m["msg_type"] == "error"]
        served(kc)
        reply, msgs = run(kc, "%set FINISHED")
        assert [m["content"]["data"]["text/plain"] for m in msgs
                if m["msg_type"] == "execute_result"] == ["yes"]
    finally:
        kc.stop_channels()


@pytest.mark.parametrize("mode", ["kill", "close"])
def test_client_gone_next_client_cancels(owned, mode):
    km, _ = owned
    orphan = first_client(km, "%sleep 60\n%set FINISHED=yes", mode)
    kc = client_of(km)
    try:
        wait_iopub(kc, orphan, "update_display_data")
        # a frontend that does not own the process interrupts by message
        msg = kc.session.msg("interrupt_request", {})
        kc.control_channel.send(msg)
        assert kc.control_channel.get_msg(timeout=WAIT)["content"]["status"] == "ok"
        msgs = iopub_until_idle(kc, orphan)
        errs = [m["content"]["ename"] for m in msgs if m["msg_type"] == "error"]
        assert errs == ["KeyboardInterrupt"]
        served(kc)
        reply, msgs = run(kc, "%ifset FINISHED %echo ran")
        assert stream_text(msgs).startswith("skipped")
    finally:
        kc.stop_channels()


def test_client_gone_while_kernel_waits_for_input(owned):
    km, log = owned
    first_client(km, "%input 'Name? '", "kill", stdin=True)
    kc = client_of(km)
    try:
        # the input_request went to the dead client: the cell waits until an
        # interrupt ends it, then the kernel serves the next client
        msg = kc.session.msg("interrupt_request", {})
        kc.control_channel.send(msg)
        assert kc.control_channel.get_msg(timeout=WAIT)["content"]["status"] == "ok"
        wait_log(log, "interrupt_request: interrupting the running cell")
        served(kc)
    finally:
        kc.stop_channels()


def wait_log(log, text, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in the kernel log:\n"
                         f"{log.read_text(errors='replace')[-2000:]}")


def test_oversized_cell_gets_an_error_reply(owned):
    km, log = owned
    pid = km.provisioner.process.pid
    kc = client_of(km)
    try:
        kc.wait_for_ready(timeout=WAIT)
        rss0 = proc_kib(pid, "VmRSS")
        size = 20 * MiB  # over the cell limit, under the message limit
        code = "%echo " + "\u00e9" * (size // 2)
        msg_id = kc.execute(code)
        reply = shell_reply(kc, msg_id)["content"]
        assert reply["status"] == "error" and reply["ename"] == "LimitError"
        assert f"cell is {len(code.encode())} bytes; the limit is {MiB}" in reply["evalue"]
        msgs = iopub_until_idle(kc, msg_id)
        echoed = [m["content"]["code"] for m in msgs if m["msg_type"] == "execute_input"][0]
        assert 4000 < len(echoed.encode()) <= 4096 and code.startswith(echoed)
        hist = kc.history(hist_access_type="tail", n=1, raw=True, output=False, reply=True,
                          timeout=WAIT)["content"]["history"]
        assert hist[-1][2] == echoed
        served(kc)
        rss1 = proc_kib(pid, "VmRSS")
        print(f"\n20 MiB cell: VmRSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB")
        if not SANITIZED:  # ASan keeps freed memory in its quarantine
            assert rss1 - rss0 < 8 * 1024, "the refused cell is still held"
    finally:
        kc.stop_channels()


def test_message_over_the_limit_gets_an_error_reply(owned):
    km, log = owned
    pid = km.provisioner.process.pid
    kc = client_of(km)
    try:
        kc.wait_for_ready(timeout=WAIT)
        rss0 = proc_kib(pid, "VmRSS")
        code = "%echo " + "x" * (100 * MiB)  # one 100 MB content frame
        big = kc.execute(code)
        reply = shell_reply(kc, big)["content"]
        assert reply["status"] == "error" and reply["ename"] == "LimitError"
        assert "message: request is " in reply["evalue"]
        assert reply["evalue"].endswith(" bytes; the limit is 67108864")
        assert int(reply["evalue"].split()[3]) > len(code)
        msgs = iopub_until_idle(kc, big)
        assert [m["msg_type"] for m in msgs] == ["status", "error", "status"]
        assert msgs[1]["content"]["evalue"] == reply["evalue"]
        assert km.is_alive()
        served(kc)
        rss1 = proc_kib(pid, "VmRSS")
        print(f"\n100 MB cell: VmRSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB")
        if not SANITIZED:  # ASan keeps freed memory in its quarantine
            assert rss1 - rss0 < 16 * 1024, "the refused message is still held"
    finally:
        kc.stop_channels()


def test_frames_adding_up_over_the_limit_get_an_error_reply(owned):
    km, log = owned
    pid = km.provisioner.process.pid
    session = Session(key=km.session.key, signature_scheme="hmac-sha256")
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(f"{km.transport}://{km.ip}:{km.shell_port}")
    try:
        kc = client_of(km)
        kc.wait_for_ready(timeout=WAIT)
        rss0 = proc_kib(pid, "VmRSS")
        m = session.msg("kernel_info_request", {})
        frames = session.serialize(m) + [b"x" * (40 * MiB)] * 6  # 240 MB, 40 MB a frame
        s.send_multipart(frames, copy=False)
        assert s.poll(WAIT * 1000)
        _, parts = session.feed_identities(s.recv_multipart())
        reply = session.deserialize(parts)
        assert reply["parent_header"]["msg_id"] == m["header"]["msg_id"]
        assert reply["msg_type"] == "kernel_info_reply"
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "LimitError"
        assert reply["content"]["evalue"].endswith("; the limit is 67108864")
        served(kc)
        rss1, hwm = proc_kib(pid, "VmRSS"), proc_kib(pid, "VmHWM")
        print(f"\n6 x 40 MB frames: kernel VmRSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB "
              f"(peak {hwm / 1024:.1f} MiB: libzmq queues the whole message)")
        if not SANITIZED:  # ASan keeps freed memory in its quarantine
            assert rss1 - rss0 < 16 * 1024, "the refused message is still held"
        kc.stop_channels()
    finally:
        s.close()


def test_new_client_with_the_same_identity_is_served(owned):
    """jupyter_client's clients of one KernelManager share a routing identity
    (the session id). A new client whose connection reaches the kernel before
    the old one's close was seen must be served all the same: the newest
    connection of an identity takes it over (ZMQ_ROUTER_HANDOVER). Without
    that, libzmq ignores the duplicate for as long as it stays connected."""
    km, _ = owned
    session = Session(key=km.session.key, signature_scheme="hmac-sha256")
    ctx = zmq.Context.instance()

    def dealer():
        d = ctx.socket(zmq.DEALER)
        d.linger = 0
        d.identity = b"one-identity"
        d.connect(f"{km.transport}://{km.ip}:{km.shell_port}")
        return d

    def served_on(d):
        m = session.msg("kernel_info_request", {})
        session.send(d, m)
        while d.poll(10 * 1000):  # served at once, or never
            _, parts = session.feed_identities(d.recv_multipart())
            r = session.deserialize(parts)
            if r["parent_header"]["msg_id"] == m["header"]["msg_id"]:
                return r["content"]["status"] == "ok"
        return False

    first = dealer()
    try:
        assert served_on(first)
        second = dealer()  # the first is still connected
        try:
            assert served_on(second)
            first.close()
            assert served_on(second)
        finally:
            second.close()
    finally:
        first.close()


def test_a_flood_of_bad_messages_does_not_flood_the_log(owned):
    """Anyone who reaches the port can send messages without the key: each is
    dropped, but only the first 10 are logged one by one; the rest are
    counted into one summary a minute (and one at exit)."""
    km, log = owned
    session = Session(key=b"not-the-key", signature_scheme="hmac-sha256")
    good = Session(key=km.session.key, signature_scheme="hmac-sha256")
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(f"{km.transport}://{km.ip}:{km.shell_port}")
    try:
        for _ in range(2000):
            session.send(s, session.msg("kernel_info_request", {}))
        m = good.msg("kernel_info_request", {})
        good.send(s, m)  # after the flood on the same connection: served
        assert s.poll(WAIT * 1000)
        _, parts = good.feed_identities(s.recv_multipart())
        assert good.deserialize(parts)["parent_header"]["msg_id"] == m["header"]["msg_id"]
    finally:
        s.close()
    lines = [x for x in log.read_text(errors="replace").splitlines() if "dropped a message" in x]
    print(f"\n2000 bad messages: {len(lines)} log lines")
    assert len(lines) == 10
    assert "signature does not match" in lines[0]
    assert "(more dropped messages are counted, and summarised once a minute)" in lines[-1]
    km.shutdown_kernel(now=False)
    text = log.read_text(errors="replace")
    assert "1990 more dropped messages in the last " in text  # at exit


def test_an_ordinary_session_logs_nothing(tmp_path):
    """What a frontend does in an ordinary session writes nothing to the
    kernel's stderr, which a terminal frontend (jupyter console) shares:
    clients that come and go, cells, failures, interrupts by signal and by
    message, SIGINT at rest, a comm_open for a widget target and a request
    type the kernel does not know (JupyterLab sends both), shutdown. With
    PK_LOG=info the routine lines are written."""
    env = {k: v for k, v in os.environ.items() if k != "PK_LOG"}
    for level in ("", "info"):
        log = tmp_path / f"kernel{level}.log"
        with open(log, "wb") as f:
            km = KernelManager(kernel_name="pipekernel")
            km.start_kernel(stderr=f, env=dict(env, PK_LOG=level) if level else env)
            try:
                for _ in range(3):  # clients that come and go
                    kc = client_of(km)
                    kc.wait_for_ready(timeout=WAIT)
                    run(kc, "%echo hi")
                    kc.stop_channels()
                kc = client_of(km)
                kc.wait_for_ready(timeout=WAIT)
                reply, _ = run(kc, "%no-such-magic")
                assert reply["status"] == "error"
                for interrupt in (km.interrupt_kernel,
                                  lambda: control_request(kc, "interrupt_request")):
                    msg_id = kc.execute("%sleep 30")
                    wait_iopub(kc, msg_id, "display_data")
                    interrupt()
                    assert shell_reply(kc, msg_id)["content"]["ename"] == "KeyboardInterrupt"
                km.interrupt_kernel()  # at rest
                for msg_type, content in (("comm_open", {"comm_id": "c", "data": {},
                                           "target_name": "jupyter.widget.control"}),
                                          ("usage_request", {})):
                    msg = kc.session.msg(msg_type, content)
                    kc.shell_channel.send(msg)
                    iopub_until_idle(kc, msg["header"]["msg_id"])
                assert kc.kernel_info(reply=True, timeout=WAIT)["content"]["status"] == "ok"
                kc.stop_channels()
            finally:
                km.shutdown_kernel(now=False)
        text = log.read_text(errors="replace")
        if level:
            for line in ("serving on", "SIGINT: interrupting the running cell", "SIGINT at rest",
                         "interrupt_request: interrupting", "comm_open for unknown target",
                         "unknown message type 'usage_request'", "exited"):
                assert line in text
        else:
            assert text == "", f"the kernel wrote to stderr:\n{text}"


# Starts a kernel and prints its pid and connection file, then waits to be
# killed. MODE: "manager" (jupyter_client's KernelManager: the kernel's
# parent, JPY_PARENT_PID set to it), "wrapped" (the kernel under `sh -c`,
# JPY_PARENT_PID set to this process), "bare" (this process is the parent,
# no JPY_PARENT_PID), "detached" (JPY_PARENT_PID=0: no watch).
LAUNCHER = r"""
import os, subprocess, sys, time
from jupyter_client.manager import KernelManager
mode = sys.argv[1]
km = KernelManager(kernel_name="pipekernel")
if mode == "manager":
    km.start_kernel()
    pid = km.provisioner.process.pid
else:
    km.write_connection_file()
    env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}
    if mode == "wrapped":
        env["JPY_PARENT_PID"] = str(os.getpid())
    if mode == "detached":
        env["JPY_PARENT_PID"] = "0"
    cmd = [os.environ["PK_BIN"], "-f", km.connection_file]
    if mode == "wrapped":  # sh stays, as the kernel's parent, after this process is gone
        cmd = ["sh", "-c", '"$0" "$@"; echo wrapper done', *cmd]
    p = subprocess.Popen(cmd, env=env)
    pid = p.pid
print(pid, km.connection_file, flush=True)
time.sleep(3600)
"""


def gone(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return True


def kernel_pid_under(pid):
    """The pipekernel process of a wrapper's process tree."""
    for _ in range(200):
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        exe = f.read().split(b"\0")[0]
                except OSError:
                    continue
                if int(fields[1]) == pid and exe.endswith(b"pipekernel"):
                    return int(d)
        time.sleep(0.05)
    raise AssertionError(f"no pipekernel under pid {pid}")


@pytest.mark.parametrize("mode", ["manager", "wrapped", "bare"])
def test_orphaned_kernel_exits(mode):
    """The process that started the kernel is killed: the kernel exits, and
    the launcher's stdout, which it inherited, is closed (`script | tail`
    ends)."""
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, mode], stdout=subprocess.PIPE,
                                env=env_with(PK_BIN=os.environ.get("PK_BIN", "")))
    pid, cf = launcher.stdout.readline().split()
    pid = int(pid)
    if mode == "wrapped":
        pid = kernel_pid_under(pid)
    kc = BlockingKernelClient(connection_file=cf.decode())
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=WAIT)  # serving
        msg_id = kc.execute("%sleep 30")
        wait_iopub(kc, msg_id, "display_data")  # and busy with a cell
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + WAIT
        rest = b""  # EOF once every holder of the pipe is gone
        while select.select([launcher.stdout], [], [], max(0, deadline - time.monotonic()))[0]:
            chunk = os.read(launcher.stdout.fileno(), 4096)
            if not chunk:
                break
            rest += chunk
        else:
            raise AssertionError("the launcher's stdout is still held open")
        assert rest in (b"", b"wrapper done\n")
        while not gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(pid), "the orphaned kernel is still running"
    finally:
        kc.stop_channels()
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_detached_kernel_stays():
    """JPY_PARENT_PID=0: the kernel outlives its launcher, and serves."""
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, "detached"],
                                stdout=subprocess.PIPE,
                                env=env_with(PK_BIN=os.environ.get("PK_BIN", "")))
    pid, cf = launcher.stdout.readline().split()
    pid = int(pid)
    kc = BlockingKernelClient(connection_file=cf.decode())
    kc.load_connection_file()
    try:
        launcher.kill()
        launcher.wait()
        kc.start_channels()
        kc.wait_for_ready(timeout=WAIT)
        reply, msgs = run(kc, "%echo still here")
        assert stream_text(msgs) == "still here\n" and not gone(pid)
    finally:
        kc.stop_channels()
        os.kill(pid, signal.SIGTERM)
