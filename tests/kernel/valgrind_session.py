"""One kernel session under valgrind memcheck (`make valgrind`).

Starts PK_BIN (a -O1 -g build without CUDA) as a Jupyter kernel under
`valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect`, runs
every magic of the registry once on a small data set (plus an interrupted
%sleep, a failing cell, %input answered over stdin, complete, inspect,
is_complete, history and comm requests), shuts it down with a
shutdown_request and fails when valgrind reports an error (invalid access,
uninitialised value, bad free) or a definitely/indirectly lost block.
Suppressions (third-party libraries only): tests/kernel/valgrind.supp.

%upload and %s3ls run against a throw-away Ceph RGW (tests/s3); without
radosgw the session fails, unless PK_SOAK_NO_S3=1 leaves them out (said in
the output). Exit status: 0 clean, 1 otherwise. The valgrind log is kept in
$PK_BUILD/valgrind/.
"""
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "s3"))

from pkkernel import iopub_until_idle, shell_reply, stream_text  # noqa: E402

BUILD = Path(os.environ.get("PK_BUILD", ROOT / "build-valgrind"))
PK_BIN = Path(os.environ.get("PK_BIN", BUILD / "pipekernel"))
SUPP = HERE / "valgrind.supp"
# seconds for any one request: valgrind is 20-50x slower (`make valgrind`
# sets the multiplier; 10 when the script is run by hand)
WAIT = 60 * float(os.environ.get("PK_TEST_TIMEOUT_MULTIPLIER") or 10)
ERROR_EXIT = 97


def valgrind_cmd(log):
    return ["valgrind", "--tool=memcheck", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
            f"--error-exitcode={ERROR_EXIT}", "--num-callers=30", "--track-origins=yes",
            f"--suppressions={SUPP}", "--gen-suppressions=all", f"--log-file={log}"]


class Session:
    def __init__(self, kc):
        self.kc = kc
        self.failures = []
        self.ran = []

    def cell(self, code, ok=True, ename=None, want=None, stdin=None, interrupt=None):
        kc = self.kc
        t0 = time.monotonic()
        msg_id = kc.execute(code, allow_stdin=stdin is not None, stop_on_error=False)
        if stdin is not None:
            req = kc.get_stdin_msg(timeout=WAIT)
            assert req["parent_header"]["msg_id"] == msg_id
            kc.input(stdin)
        if interrupt:
            deadline = time.monotonic() + WAIT
            while True:  # the %sleep's progress bar: the cell runs
                m = kc.get_iopub_msg(timeout=max(1, deadline - time.monotonic()))
                if (m["parent_header"].get("msg_id") == msg_id
                        and m["msg_type"] == "display_data"):
                    break
            interrupt()
        reply = shell_reply(kc, msg_id, timeout=WAIT)["content"]
        msgs = iopub_until_idle(kc, msg_id, timeout=WAIT)
        out = stream_text(msgs) + stream_text(msgs, "stderr")
        status = reply["status"]
        bad = None
        if ok and status != "ok":
            bad = f"{reply.get('ename')}: {reply.get('evalue')}"
        elif not ok and (status != "error" or (ename and reply["ename"] != ename)):
            bad = f"expected {ename or 'an error'}, got {status} {reply.get('ename')}"
        elif want and want not in out:
            bad = f"{want!r} not in the output: {out[-300:]!r}"
        print(f"  {time.monotonic() - t0:6.1f} s  {code.splitlines()[0][:70]}"
              f"{'  FAILED: ' + bad if bad else ''}", flush=True)
        if bad:
            self.failures.append(f"{code!r}: {bad}")
        self.ran += re.findall(r"%%?([a-z0-9]+)", code)
        return reply, msgs

    def request(self, msg_type, content):
        msg = self.kc.session.msg(msg_type, content)
        self.kc.shell_channel.send(msg)
        iopub_until_idle(self.kc, msg["header"]["msg_id"], timeout=WAIT)


def ready(kc, proc):
    """kernel_info answered on shell and its idle seen on IOPub (the client's
    heartbeat check of wait_for_ready gives up on a kernel this slow)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the kernel exited with status {proc.returncode} at start")
        msg_id = kc.kernel_info()
        try:
            shell_reply(kc, msg_id, timeout=30)
            iopub_until_idle(kc, msg_id, timeout=2)
            return
        except Exception:
            continue
    raise RuntimeError("the kernel did not answer kernel_info")


def main():
    if not PK_BIN.exists():
        sys.exit(f"{PK_BIN} is missing: make valgrind builds it")
    if subprocess.run(["valgrind", "--version"], capture_output=True).returncode != 0:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    rgw = None
    if os.environ.get("PK_SOAK_NO_S3") != "1":
        import rgwctl
        missing = rgwctl.missing_binaries()
        if missing:
            sys.exit("the valgrind session needs a Ceph RGW for %upload/%s3ls (missing: "
                     + ", ".join(missing) + "); set PK_SOAK_NO_S3=1 to leave them out")
        rgw = rgwctl.RGW(memstore_bytes=1 << 30).start()
    try:
        return session(rgw)
    finally:
        if rgw:
            rgw.stop()


def session(rgw):
    logdir = BUILD / "valgrind"
    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / "kernel.%p.log"
    work = Path(tempfile.mkdtemp(prefix="pk-valgrind-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if rgw:
        env.update(AWS_ACCESS_KEY_ID=rgw.access_key, AWS_SECRET_ACCESS_KEY=rgw.secret_key,
                   AWS_REGION="us-east-1", AWS_ENDPOINT_URL=rgw.endpoint,
                   AWS_SHARED_CREDENTIALS_FILE=str(work / "no-credentials"),
                   AWS_CONFIG_FILE=str(work / "no-config"))
        rgw.client().create_bucket(Bucket="pk-valgrind")
    cf, info = write_connection_file(str(work / "kernel.json"))
    for stale in logdir.glob("kernel.*.log"):
        stale.unlink()
    proc = subprocess.Popen(valgrind_cmd(log) + [str(PK_BIN), "-f", cf], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(logdir / "stderr.log", "wb"))
    kc = BlockingKernelClient(connection_file=cf)
    kc.load_connection_file()
    kc.start_channels()
    s = Session(kc)
    rc = None
    try:
        ready(kc, proc)
        print(f"valgrind session: kernel pid {proc.pid}, log {logdir}", flush=True)
        d = work / "data"
        tar = d / "cifar-10-python.tar.gz"
        s.cell(f"%mkdata {d} --train-batches 2 --images-per-batch 10 --seed 5")
        md5 = hashlib.md5(tar.read_bytes()).hexdigest()
        (work / "dl").mkdir()
        (work / "sub").mkdir()
        s.cell("%help\n%help train\n%lsmagic\n%sleep?")
        s.cell("%set A=1 B=two\n%set --default B=three\n%set B", want=None)
        s.cell("%set --unset A\n%set")
        s.cell("%env PK_VG=1\n%env PK_VG\n%env")
        s.cell(f"%cd {work / 'sub'}\n%pwd\n%cd {work}")
        s.cell("%ifset B %echo b is set\n%ifset NOPE %echo never", want="b is set")
        s.cell("%time %echo timed", want="timed")
        s.cell("%echo 'h\u00e9llo \u2713'\n%echo --stderr err", want="err")
        s.cell("%sleep 0.3")
        s.cell("%html <b>x</b>\n%markdown *y*")
        s.cell("%%html\n<i>z</i>")
        s.cell("%echo gone\n%clear\n%echo x\n%clear --wait\n%echo y")
        s.cell("%input 'Name? '", stdin="Ada")
        s.cell("%input 'Name? '", ok=False, ename="StdinNotImplementedError", stdin=None)
        s.cell(f"%download file://{tar} --to {work}/dl/c.tgz --md5 {md5}")
        s.cell(f"%download file://{tar} --to {work}/dl/f.tgz --extract {work}/dx "
               f"--verify {d}/MANIFEST.md5")
        s.cell(f"%md5 {tar} --expect {md5}")
        s.cell(f"%md5 {tar} --expect {'0' * 32}", ok=False, ename="ChecksumError")
        s.cell(f"%extract {tar} --to {work}/ex")
        seven = HERE.parent / "data/archives/links.7z"  # read with seeks; deferred while downloading
        s.cell(f"%extract {seven} --to {work}/ex7\n%download file://{seven} --to {work}/dl/l.7z "
               f"--extract {work}/dx7")
        s.cell(f"%verify {d}/MANIFEST.md5 --jobs 2")
        s.cell(f"%load {d}")
        s.cell(f"%meta {d}")
        p2 = work / "p2" / "cifar-10-batches-py"  # Python 3 at protocol 2: the latin-1 text path
        p2.mkdir(parents=True)
        import pickle
        import numpy as np
        px = np.arange(7 * 3072, dtype=np.uint32).astype(np.uint8).reshape(7, 3072)
        (p2 / "data_batch_1").write_bytes(pickle.dumps(
            {"data": px, "labels": [1, 2, 3, 4, 5, 6, 7]}, protocol=2))
        s.cell(f"%load {p2} --split train --name p2 --md5", want=hashlib.md5(px.tobytes()).hexdigest())
        s.cell(f"%load {d}")
        s.cell("%preview --n 4 --seed 1 --scale 1")
        s.cell(f"%train --epochs 1 --batch-size 4 --seed 1 --threads 1 --save {work}/w.st")
        s.cell(f"%train --epochs 0 --new --init {work}/w.st --threads 1")
        s.cell(f"%timings --label a\n%timings --chart\n%timings --json {work}/t.json\n"
               f"%timings --compare a {work}/t.json\n%timings --compare paper:test1-weka a")
        s.cell(f"%pipeline --mode inplace --source {d} --epochs 1 --seed 1 --label b"
               + (" --s3 s3://pk-valgrind/pipe" if rgw else ""))
        if rgw:
            s.cell(f"%upload {d}/cifar-10-batches-py s3://pk-valgrind/up/ --jobs 2")
            s.cell(f"%upload {d}/cifar-10-batches-py s3://pk-valgrind/up/ --skip-existing")
            s.cell("%s3ls s3://pk-valgrind --max 100")
            s.cell("%upload /nonexistent s3://pk-valgrind/x", ok=False)
            # reading back: a prefix, one object (in ranges of 1 MiB, extracted while read)
            s.cell(f"%download s3://pk-valgrind/up/ --to {work}/s3back --jobs 3 --part-size 1")
            s.cell(f"%upload {d}/cifar-10-python.tar.gz s3://pk-valgrind/tgz/ --threshold 5 "
                   "--part-size 5")
            s.cell(f"%download s3://pk-valgrind/tgz/cifar-10-python.tar.gz --to {work}/s3.tgz "
                   f"--extract {work}/s3x --verify {d}/MANIFEST.md5 --part-size 1")
            s.cell(f"%download s3://pk-valgrind/up/ --to {work}/s3h --integrity headers")
            (work / "mp.bin").write_bytes(os.urandom(11 << 20))  # 3 parts of 5 MiB
            s.cell(f"%upload {work}/mp.bin s3://pk-valgrind/mp/ --threshold 5 --part-size 5")
            s.cell(f"%download s3://pk-valgrind/mp/mp.bin --to {work}/mp.back --jobs 2",
                   want="ETag = md5 of 3 part md5s (5 MiB parts)")
            s.cell(f"%download s3://pk-valgrind/nope/x.bin --to {work}/nope", ok=False)
        else:
            print("valgrind session: %upload and %s3ls LEFT OUT (PK_SOAK_NO_S3=1)")
        s.cell("%no-such-magic", ok=False, ename="UnknownMagicError")
        s.cell("%echo 'open", ok=False, ename="UsageError")
        s.cell(f"%load {work}/nonexistent", ok=False)

        def interrupt():
            kc.control_channel.send(kc.session.msg("interrupt_request", {}))
        s.cell("%sleep 60", ok=False, ename="KeyboardInterrupt", interrupt=interrupt)
        s.request("complete_request", {"code": "%tr", "cursor_pos": 3})
        s.request("complete_request", {"code": f"%md5 {work}/", "cursor_pos": len(f"%md5 {work}/")})
        s.request("inspect_request", {"code": "%train", "cursor_pos": 2, "detail_level": 0})
        s.request("is_complete_request", {"code": "%echo 'a"})
        s.request("history_request", {"hist_access_type": "search", "pattern": "%echo*",
                                      "unique": True, "n": 5, "output": True, "raw": True})
        s.request("comm_info_request", {})
        s.request("comm_open", {"comm_id": "c", "target_name": "t", "data": {}})
        kc.control_channel.send(kc.session.msg("shutdown_request", {"restart": False}))
        rc = proc.wait(timeout=WAIT)
    finally:
        kc.stop_channels()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    registry = {"help", "lsmagic", "set", "env", "cd", "pwd", "ifset", "time", "echo", "sleep",
                "html", "markdown", "clear", "input", "mkdata", "download", "md5", "extract",
                "verify", "load", "meta", "preview", "upload", "s3ls", "train", "timings",
                "pipeline"}
    if not rgw:
        registry -= {"upload", "s3ls"}
    missed = sorted(registry - set(s.ran))
    logs = sorted(logdir.glob("kernel.*.log"))
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    summary = re.findall(r"(ERROR SUMMARY: .*|definitely lost: .*|indirectly lost: .*|"
                         r"possibly lost: .*|still reachable: .*)", text)
    print("valgrind: " + "\nvalgrind: ".join(summary))
    problems = list(s.failures)
    if missed:
        problems.append(f"magics not run: {missed}")
    if rc != 0:
        problems.append(f"valgrind exit status {rc} (errors or definite/indirect leaks: "
                        f"see {', '.join(map(str, logs))})")
    m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
    if not m or m.group(1) != "0":
        problems.append("valgrind reported errors")
    if problems:
        print("valgrind session FAILED:\n  " + "\n  ".join(problems))
        print(text[-8000:])
        return 1
    print(f"valgrind session: clean ({len(s.ran)} magic lines, every magic of the registry)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
