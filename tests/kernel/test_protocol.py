"""Protocol behaviour beyond jupyter_kernel_test, with jupyter_client (no
message validation) and pyzmq: stop_on_error, interrupts, restart, bad
signatures, stdin, execution_count, busy/idle, UTF-8, HB, shutdown.

Where the issue states a time bound it is measured and printed; the asserts
check behaviour, with only loose sanity bounds.
"""
import json
import os
import signal
import time

import pytest
import zmq
from jupyter_client.session import Session

from pkkernel import (WAIT, control_request, env_with, iopub_until_idle, outputs,
                      run, shell_reply, start_kernel, stream_text, wait_iopub)


def test_kernel_info_on_shell_and_control(pk):
    km, kc = pk
    for chan in ("shell", "control"):
        if chan == "shell":
            msg_id = kc.kernel_info()
            reply = shell_reply(kc, msg_id)
        else:
            msg_id, reply = control_request(kc, "kernel_info_request")
        c = reply["content"]
        assert c["status"] == "ok"
        assert c["protocol_version"] == "5.3"
        assert reply["header"]["version"] == "5.3"
        assert c["implementation"] == "pipekernel"
        li = c["language_info"]
        assert li["name"] == "pipeline" and li["file_extension"] == ".pipeline"
        for key in ("mimetype", "version", "pygments_lexer", "codemirror_mode"):
            assert li[key]
        assert c["banner"] and c["help_links"]
        states = [m["content"]["execution_state"] for m in iopub_until_idle(kc, msg_id)
                  if m["msg_type"] == "status"]
        assert states == ["busy", "idle"]


def test_kernel_info_latency_after_start():
    """kernel_info answers right after start (bound: 0.5 s; printed)."""
    km = __import__("jupyter_client.manager", fromlist=["KernelManager"]).KernelManager(
        kernel_name="pipekernel")
    t0 = time.monotonic()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        msg_id = kc.kernel_info()
        reply = shell_reply(kc, msg_id)
        dt = time.monotonic() - t0
        print(f"\nkernel_info reply {dt * 1000:.0f} ms after process start")
        assert reply["content"]["status"] == "ok"
        assert dt < 10
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def test_busy_idle_around_every_request(pk):
    km, kc = pk
    requests = [
        ("complete_request", {"code": "%ec", "cursor_pos": 3}),
        ("inspect_request", {"code": "%echo", "cursor_pos": 2, "detail_level": 0}),
        ("is_complete_request", {"code": "%echo"}),
        ("history_request", {"hist_access_type": "tail", "n": 5, "output": False, "raw": True}),
        ("comm_info_request", {}),
        ("no_such_request", {}),
    ]
    for msg_type, content in requests:
        msg = kc.session.msg(msg_type, content)
        kc.shell_channel.send(msg)
        msgs = iopub_until_idle(kc, msg["header"]["msg_id"])
        assert msgs[0]["msg_type"] == "status"
        assert msgs[0]["content"]["execution_state"] == "busy", msg_type
        assert msgs[-1]["content"]["execution_state"] == "idle"
    # execute: busy, execute_input, outputs, idle -- and the reply carries the parent
    reply, msgs = run(kc, "%echo one\n%echo two")
    kinds = [m["msg_type"] for m in msgs]
    assert kinds[0] == "status" and kinds[1] == "execute_input" and kinds[-1] == "status"
    assert stream_text(msgs) == "one\ntwo\n"
    # the kernel still answers after the unknown type
    assert kc.kernel_info(reply=True, timeout=WAIT)["content"]["status"] == "ok"


def test_stop_on_error_aborts_queued_executes(pk):
    km, kc = pk
    first = kc.execute("%sleep 0.5\n%no-such-magic", stop_on_error=True)
    second = kc.execute("%echo never runs")
    info = kc.kernel_info()  # not an execute: served normally, in order
    third = kc.execute("%echo never runs either")
    replies = [shell_reply(kc, i) for i in (first, second, info, third)]
    assert replies[0]["content"]["status"] == "error"
    assert replies[1]["content"]["status"] == "aborted"
    assert replies[2]["content"]["status"] == "ok"
    assert replies[3]["content"]["status"] == "aborted"
    for r in (replies[1], replies[3]):
        assert "execution_count" in r["content"]
    for i in (second, third):  # aborted requests still get busy/idle, and no output
        msgs = iopub_until_idle(kc, i)
        assert [m["msg_type"] for m in msgs] == ["status", "status"]
    # aborting ended: the next execute runs
    reply, msgs = run(kc, "%echo runs again")
    assert reply["status"] == "ok" and stream_text(msgs) == "runs again\n"


def test_request_after_error_reply_is_not_aborted(pk):
    """Only requests queued before the error reply are aborted: a client
    that sends its next cell as soon as it sees the reply (before idle) gets
    it run."""
    km, kc = pk
    for _ in range(5):
        first = kc.execute("%no-such-magic", stop_on_error=True)
        assert shell_reply(kc, first)["content"]["status"] == "error"
        nxt = kc.execute("%echo runs")
        assert shell_reply(kc, nxt)["content"]["status"] == "ok"
        iopub_until_idle(kc, first)
        assert stream_text(iopub_until_idle(kc, nxt)) == "runs\n"


def test_stop_on_error_aborts_requests_on_their_way(pk):
    """Run All: a notebook makes every request at once and sends them back to
    back; over a network the later ones can reach the kernel after a
    fast-failing first cell is done. Those sent before its error reply was
    (by their header's date) are aborted within the grace window."""
    km, kc = pk
    content = {"silent": False, "store_history": True, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    msgs = [kc.session.msg("execute_request", dict(content, code=code))
            for code in ["%no-such-magic"] + [f"%set RAN{i}=1" for i in range(5)]]
    kc.shell_channel.send(msgs[0])
    time.sleep(0.2)  # the rest are on their way; the first fails meanwhile
    for m in msgs[1:]:
        kc.shell_channel.send(m)
    replies = [shell_reply(kc, m["header"]["msg_id"])["content"] for m in msgs]
    assert [r["status"] for r in replies] == ["error"] + ["aborted"] * 5
    for m in msgs[1:]:
        assert [x["msg_type"] for x in iopub_until_idle(kc, m["header"]["msg_id"])] == \
            ["status", "status"]
    reply, msgs = run(kc, "%set RAN0")  # none of them ran
    assert reply["status"] == "error" and "RAN0" in reply["evalue"]


def test_stop_on_error_false_keeps_queue(pk):
    km, kc = pk
    first = kc.execute("%sleep 0.5\n%no-such-magic", stop_on_error=False)
    second = kc.execute("%echo still runs")
    assert shell_reply(kc, first)["content"]["status"] == "error"
    assert shell_reply(kc, second)["content"]["status"] == "ok"
    assert stream_text(iopub_until_idle(kc, second)) == "still runs\n"


def _interrupted_sleep(kc, interrupt):
    msg_id = kc.execute("%sleep 30")
    wait_iopub(kc, msg_id, "display_data")  # the progress bar: the cell is running
    t0 = time.monotonic()
    interrupt()
    reply = shell_reply(kc, msg_id)
    dt = time.monotonic() - t0
    msgs = iopub_until_idle(kc, msg_id)
    c = reply["content"]
    assert c["status"] == "error"
    assert c["ename"] == "KeyboardInterrupt"
    errors = [m for m in msgs if m["msg_type"] == "error"]
    assert len(errors) == 1 and errors[0]["content"]["ename"] == "KeyboardInterrupt"
    final = [m for m in msgs if m["msg_type"] == "update_display_data"][-1]
    assert "interrupted" in final["content"]["data"]["text/plain"]
    return dt


def test_interrupt_signal_mode(pk):
    km, kc = pk
    assert km.kernel_spec.interrupt_mode == "signal"
    dt = _interrupted_sleep(kc, km.interrupt_kernel)
    print(f"\nSIGINT: %sleep 30 ended {dt * 1000:.0f} ms after the interrupt")
    assert dt < 10
    assert km.is_alive()
    reply, msgs = run(kc, "%echo alive")
    assert reply["status"] == "ok" and stream_text(msgs) == "alive\n"


def test_interrupt_message_mode(pk):
    km, kc = pk
    got = {}

    def interrupt():
        got["id"], got["reply"] = control_request(kc, "interrupt_request")

    dt = _interrupted_sleep(kc, interrupt)
    print(f"\ninterrupt_request: %sleep 30 ended {dt * 1000:.0f} ms after the request")
    assert got["reply"]["content"]["status"] == "ok"
    assert dt < 10
    reply, msgs = run(kc, "%echo alive")
    assert stream_text(msgs) == "alive\n"


def test_sigint_at_rest_is_ignored(pk):
    km, kc = pk
    pid = km.provisioner.process.pid
    for _ in range(3):
        os.killpg(os.getpgid(pid), signal.SIGINT)  # as the client does, to the whole group
        km.interrupt_kernel()
    assert kc.kernel_info(reply=True, timeout=WAIT)["content"]["status"] == "ok"
    assert km.is_alive()
    reply, msgs = run(kc, "%echo survived")
    assert reply["status"] == "ok" and stream_text(msgs) == "survived\n"


def test_kernel_info_on_control_during_a_cell(pk):
    km, kc = pk
    msg_id = kc.execute("%sleep 30")
    wait_iopub(kc, msg_id, "display_data")
    _, info = control_request(kc, "kernel_info_request")
    assert info["content"]["status"] == "ok"
    # the cell is still running: its reply has not come yet
    with pytest.raises(Exception):
        kc.get_shell_msg(timeout=0.2)
    # the heartbeat answers while the cell runs
    ctx = zmq.Context.instance()
    hb = ctx.socket(zmq.REQ)
    hb.linger = 0
    hb.connect(f"{km.transport}://{km.ip}:{km.hb_port}")
    hb.send(b"ping")
    assert hb.poll(WAIT * 1000)
    assert hb.recv() == b"ping"
    hb.close()
    control_request(kc, "interrupt_request")
    assert shell_reply(kc, msg_id)["content"]["ename"] == "KeyboardInterrupt"


def test_restart_on_the_same_ports():
    km, kc = start_kernel()
    try:
        ports = (km.shell_port, km.iopub_port, km.stdin_port, km.control_port, km.hb_port)
        old = kc.kernel_info(reply=True, timeout=WAIT)["header"]["session"]
        pid = km.provisioner.process.pid
        t0 = time.monotonic()
        km.restart_kernel(now=False)
        print(f"\nrestart took {(time.monotonic() - t0) * 1000:.0f} ms")
        assert (km.shell_port, km.iopub_port, km.stdin_port, km.control_port, km.hb_port) == ports
        assert km.provisioner.process.pid != pid
        kc.wait_for_ready(timeout=WAIT)
        info = kc.kernel_info(reply=True, timeout=WAIT)
        assert info["header"]["session"] != old  # a new kernel session
        reply, msgs = run(kc, "%echo after restart")
        assert stream_text(msgs) == "after restart\n"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def test_shutdown_exits_quickly():
    km, kc = start_kernel()
    proc = km.provisioner.process
    msg_id, reply = control_request(kc, "shutdown_request", {"restart": False})
    t0 = time.monotonic()
    assert reply["content"]["status"] == "ok" and reply["content"]["restart"] is False
    rc = proc.wait(timeout=WAIT)
    dt = time.monotonic() - t0
    print(f"\nkernel exited {dt * 1000:.0f} ms after the shutdown reply (bound: 1 s)")
    assert rc == 0
    assert dt < 10
    kc.stop_channels()
    km.cleanup_resources()


def test_sigterm_is_a_clean_shutdown():
    km, kc = start_kernel()
    proc = km.provisioner.process
    msg_id = kc.execute("%sleep 30")
    wait_iopub(kc, msg_id, "display_data")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=WAIT) == 0
    print(f"\nSIGTERM during a cell: exited after {(time.monotonic() - t0) * 1000:.0f} ms")
    kc.stop_channels()
    km.cleanup_resources()


def _raw_shell(km):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(f"{km.transport}://{km.ip}:{km.shell_port}")
    return s


def test_bad_messages_are_dropped(pk):
    km, kc = pk
    session = Session(key=km.session.key, signature_scheme="hmac-sha256")
    s = _raw_shell(km)
    try:
        def frames(msg_type):
            m = session.msg(msg_type, {})
            return m, session.serialize(m)

        bad = []
        m, f = frames("kernel_info_request")
        f[1] = b"0" * 64  # wrong signature, right length
        bad.append((m, f))
        m, f = frames("kernel_info_request")
        f[1] = f[1][:-2]  # wrong length
        bad.append((m, f))
        m, f = frames("kernel_info_request")
        bad.append((m, f[:4]))  # truncated
        m, f = frames("kernel_info_request")
        bad.append((m, f[1:]))  # no delimiter
        m, f = frames("kernel_info_request")
        bad.append((m, f + [b"x"] * 100))  # too many frames
        m, f = frames("kernel_info_request")
        f[2] = b"{not json"
        f[1] = session.sign(f[2:6])  # well signed, but not JSON
        bad.append((m, f))
        for _, f in bad:
            s.send_multipart(f)
        good, f = frames("kernel_info_request")
        s.send_multipart(f)
        # the only reply is the good request's: the bad ones were dropped
        assert s.poll(WAIT * 1000)
        _, parts = session.feed_identities(s.recv_multipart())
        reply = session.deserialize(parts)
        assert reply["parent_header"]["msg_id"] == good["header"]["msg_id"]
        assert reply["content"]["status"] == "ok"
        assert not s.poll(300)
    finally:
        s.close()
    assert km.is_alive()
    reply, msgs = run(kc, "%echo still serving")
    assert stream_text(msgs) == "still serving\n"


def test_stdin_round_trip(pk):
    km, kc = pk
    for password in (False, True):
        code = "%input 'Name? '" + (" --password" if password else "")
        msg_id = kc.execute(code, allow_stdin=True)
        req = kc.get_stdin_msg(timeout=WAIT)
        assert req["msg_type"] == "input_request"
        assert req["parent_header"]["msg_id"] == msg_id
        assert req["content"]["prompt"] == "Name? "
        assert bool(req["content"]["password"]) is password
        kc.input("Ada Lovelace")
        reply = shell_reply(kc, msg_id)
        assert reply["content"]["status"] == "ok"
        msgs = iopub_until_idle(kc, msg_id)
        results = [m for m in msgs if m["msg_type"] == "execute_result"]
        if password:
            assert results == []  # a password is not echoed
        else:
            assert results[0]["content"]["data"]["text/plain"] == "Ada Lovelace"
    reply, msgs = run(kc, "%echo $INPUT")
    assert stream_text(msgs) == "Ada Lovelace\n"


def test_stdin_not_allowed(pk):
    km, kc = pk
    reply, msgs = run(kc, "%input 'Name? '", allow_stdin=False)
    assert reply["status"] == "error"
    assert reply["ename"] == "StdinNotImplementedError"
    assert [m["msg_type"] for m in outputs(msgs)] == ["error"]


def test_interrupt_while_waiting_for_input(pk):
    km, kc = pk
    msg_id = kc.execute("%input 'Name? '", allow_stdin=True)
    kc.get_stdin_msg(timeout=WAIT)
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id)
    assert reply["content"]["ename"] == "KeyboardInterrupt"


def test_execution_count_rules(pk):
    km, kc = pk
    reply, msgs = run(kc, "%echo a")
    n = reply["execution_count"]
    assert [m["content"]["execution_count"] for m in msgs if m["msg_type"] == "execute_input"] == [n]
    # silent: no execute_input, no execute_result, count unchanged
    reply, msgs = run(kc, "%pwd", silent=True)
    assert reply["execution_count"] == n
    assert not [m for m in msgs if m["msg_type"] in ("execute_input", "execute_result")]
    # store_history false: count unchanged, not in history
    reply, msgs = run(kc, "%echo unstored", store_history=False)
    assert reply["execution_count"] == n
    # a failing cell still counts
    reply, msgs = run(kc, "%no-such-magic")
    assert reply["status"] == "error" and reply["execution_count"] == n + 1
    reply, msgs = run(kc, "%set Y=2\n%set Y")
    assert reply["execution_count"] == n + 2
    res = [m for m in msgs if m["msg_type"] == "execute_result"][0]
    assert res["content"]["execution_count"] == n + 2
    hist = kc.history(hist_access_type="tail", n=10, output=True, raw=True, reply=True,
                      timeout=WAIT)["content"]["history"]
    codes = [h[2][0] for h in hist]
    assert "%echo unstored" not in codes and "%pwd" not in codes
    assert hist[-1][1:] == [n + 2, ["%set Y=2\n%set Y", "2"]]


def test_error_reply_matches_iopub(pk):
    km, kc = pk
    reply, msgs = run(kc, "%echo ok\n%sleep notanumber")
    errs = [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert len(errs) == 1
    for key in ("ename", "evalue", "traceback"):
        assert errs[0][key] == reply[key]
    assert reply["ename"] == "UsageError"
    assert any("line 2" in t for t in reply["traceback"])


def test_utf8_output(pk):
    km, kc = pk
    text = "h\u00e9llo \u2713 \U0001F600 \u65e5\u672c"
    reply, msgs = run(kc, f"%echo '{text}'\n%echo --stderr '{text}'")
    assert stream_text(msgs) == text + "\n"
    assert stream_text(msgs, "stderr") == text + "\n"


def test_invalid_utf8_becomes_replacement_char():
    # an environment value with an invalid byte, printed by a stage
    km, kc = start_kernel(env=env_with(PK_BAD_BYTES="a\udcffb\udce2\udc82c"))
    try:
        reply, msgs = run(kc, "%echo $PK_BAD_BYTES")
        assert reply["status"] == "ok"
        assert stream_text(msgs) == "a\ufffdb\ufffd\ufffdc\n"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def test_complete_offsets_are_code_points(pk):
    km, kc = pk
    code = "%echo h\u00e9llo \U0001F600\n%ec"
    c = kc.complete(code, len(code), reply=True, timeout=WAIT)["content"]
    assert c["matches"] == ["%echo"]
    assert (c["cursor_start"], c["cursor_end"]) == (len(code) - 3, len(code))
    c = kc.inspect("%sleep 3", 2, reply=True, timeout=WAIT)["content"]
    assert c["found"] and "%sleep SECONDS" in c["data"]["text/plain"]
    c = kc.inspect("no magic here", 2, reply=True, timeout=WAIT)["content"]
    assert c["status"] == "ok" and not c["found"]


def test_is_complete_indent(pk):
    km, kc = pk
    c = shell_reply(kc, kc.is_complete("%echo a \\"))["content"]
    assert c == {"status": "incomplete", "indent": ""}


def test_comms(pk):
    km, kc = pk
    msg_id = kc.comm_info(reply=False)
    assert shell_reply(kc, msg_id)["content"] == {"status": "ok", "comms": {}}
    msg = kc.session.msg("comm_open", {"comm_id": "c-1", "target_name": "nope", "data": {}})
    kc.shell_channel.send(msg)
    msgs = iopub_until_idle(kc, msg["header"]["msg_id"])
    closes = [m for m in msgs if m["msg_type"] == "comm_close"]
    assert closes and closes[0]["content"]["comm_id"] == "c-1"


def test_ipc_transport(tmp_path):
    km, kc = start_kernel(transport="ipc", ip=str(tmp_path / "k"))
    try:
        reply, msgs = run(kc, "%echo over ipc")
        assert stream_text(msgs) == "over ipc\n"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def test_output_is_buffered(pk):
    km, kc = pk
    n = 2000
    code = "\n".join(f"%echo line {i}" for i in range(n))
    reply, msgs = run(kc, code)
    streams = [m for m in msgs if m["msg_type"] == "stream"]
    assert stream_text(msgs) == "".join(f"line {i}\n" for i in range(n))
    assert len(streams) < n / 10  # batched, not one message per line


def test_connection_file_errors(tmp_path, pk_bin):
    import subprocess
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"shell_port": 1}))
    p = subprocess.run([str(pk_bin), "-f", str(bad)], capture_output=True, text=True, timeout=WAIT)
    assert p.returncode == 2 and "iopub_port" in p.stderr
    p = subprocess.run([str(pk_bin), "-f", str(tmp_path / "missing.json")], capture_output=True,
                       text=True, timeout=WAIT)
    assert p.returncode == 2 and "missing.json" in p.stderr


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_burst_of_requests_loses_no_reply(pk, channel):
    """10,000 kernel_info_requests sent before reading a reply: every one is
    answered. (The ROUTER's default send high-water mark of 1,000 dropped
    replies silently once the client's queues were full.)"""
    km, kc = pk
    n = 10000
    session = Session(key=km.session.key, signature_scheme="hmac-sha256")
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(f"{km.transport}://{km.ip}:{getattr(km, channel + '_port')}")
    try:
        ids = set()
        for _ in range(n):
            m = session.msg("kernel_info_request", {})
            ids.add(m["header"]["msg_id"])
            session.send(s, m)
        got = 0
        while got < n and s.poll(WAIT * 1000 if got == 0 else 5000):
            _, parts = session.feed_identities(s.recv_multipart())
            reply = session.deserialize(parts, content=False)
            ids.discard(reply["parent_header"]["msg_id"])
            got += 1
        print(f"\n{channel}: {got} replies to {n} requests")
        assert got == n and not ids
    finally:
        s.close()
