"""Helpers of the kernel protocol tests: start a pipekernel, read IOPub and
shell by parent msg_id."""
import os
import time

from jupyter_client.manager import KernelManager

WAIT = 60  # generous timeout for anything the kernel must answer


def start_kernel(env=None, **kw):
    """A started kernel and a ready client; env replaces the environment."""
    km = KernelManager(kernel_name="pipekernel", **kw)
    km.start_kernel(**({"env": env} if env else {}))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=WAIT)
    return km, kc


def iopub_until_idle(kc, msg_id, timeout=WAIT):
    """IOPub messages whose parent is msg_id, busy to idle inclusive."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        out.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            return out


def shell_reply(kc, msg_id, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        m = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if m["parent_header"].get("msg_id") == msg_id:
            return m


def wait_iopub(kc, msg_id, msg_type, timeout=WAIT):
    """Reads IOPub until a message of msg_type for msg_id arrives; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == msg_type:
            return m


def run(kc, code, **kw):
    """Execute; returns (reply content, iopub messages busy..idle)."""
    msg_id = kc.execute(code, **kw)
    reply = shell_reply(kc, msg_id)
    return reply["content"], iopub_until_idle(kc, msg_id)


def outputs(msgs):
    return [m for m in msgs if m["msg_type"] not in ("status", "execute_input")]


def stream_text(msgs, name="stdout"):
    return "".join(m["content"]["text"] for m in msgs
                   if m["msg_type"] == "stream" and m["content"]["name"] == name)


def control_request(kc, msg_type, content=None, timeout=WAIT):
    msg = kc.session.msg(msg_type, content or {})
    kc.control_channel.send(msg)
    deadline = time.monotonic() + timeout
    while True:
        r = kc.control_channel.get_msg(timeout=max(0.1, deadline - time.monotonic()))
        if r["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return msg["header"]["msg_id"], r


def env_with(**extra):
    e = dict(os.environ)
    e.update(extra)
    return e
