"""Soak: one kernel (a jupyter_client KernelManager, so restarts are real
restarts) through SOAK_REQUESTS execute requests that mix every magic of the
registry on small data, SOAK_INTERRUPTS interrupts at random points (the
kernelspec's interrupt mode, i.e. SIGINT to the process group) and
SOAK_RESTARTS restarts.

Asserted for every request: exactly one shell reply and one busy/idle pair on
IOPub (matched by parent msg_id), busy first and idle last, nothing for it
after its idle; no cell past DEADLINE; the reply's status and outputs are the
ones the cell must give (errors for the bad cells, KeyboardInterrupt for the
interrupted ones); the kernel serves the next request. The kernel's RSS
(VmRSS) is read after every request of the longest lifetime; the mean over
its first 500 requests (after one warm-up pass over every magic) and over its
last 500 must differ by less than 5 %. The figures are printed (-s).

Everything is seeded (SOAK_SEED): a failure repeats with the same sequence.
%upload and %s3ls run against a throw-away Ceph RGW (tests/s3/rgwctl.py);
without radosgw installed the test fails, unless PK_SOAK_NO_S3=1 leaves
those two magics out (said in the output).
"""
import hashlib
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from pkkernel import WAIT

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "s3"))

SANITIZED = os.environ.get("PK_SANITIZED") == "1"
SOAK_REQUESTS = int(os.environ.get("PK_SOAK_REQUESTS", 2000))
SOAK_INTERRUPTS = int(os.environ.get("PK_SOAK_INTERRUPTS", 200))
SOAK_RESTARTS = int(os.environ.get("PK_SOAK_RESTARTS", 20))
SOAK_SEED = int(os.environ.get("PK_SOAK_SEED", 20240601))
LONG_LIFE = 1100         # requests of the first (longest) lifetime
RSS_WINDOW = 500         # requests averaged at each end of it
RSS_GROWTH_MAX = 0.05
DEADLINE = 120 if SANITIZED else 60   # no cell may stay busy longer
INTERRUPT_DEADLINE = 20               # an interrupted %sleep 30 must end well before 30 s

# Every magic of the registry; the test checks the list against %lsmagic, so
# a new magic cannot be left out of the soak silently.
MAGICS = {"help", "lsmagic", "set", "env", "cd", "pwd", "ifset", "time", "echo", "sleep",
          "html", "markdown", "clear", "input", "mkdata", "download", "md5", "extract",
          "verify", "load", "meta", "preview", "upload", "s3ls", "train", "timings",
          "pipeline"}
S3_MAGICS = {"upload", "s3ls"}


class Fault(AssertionError):
    pass


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Fault(f"no VmRSS in /proc/{pid}/status")


class Driver:
    """Sends one request at a time and checks the protocol around it."""

    def __init__(self, km, kc):
        self.km, self.kc = km, kc
        self.done = set()          # msg_ids whose idle was seen
        self.stray = []            # messages that belong to no pending request
        self.counts = Counter()

    def pid(self):
        return self.km.provisioner.process.pid

    def _note_stray(self, m, where):
        pid = m["parent_header"].get("msg_id")
        if pid in self.done:
            self.stray.append(f"{where}: {m['msg_type']} for finished request {pid}")

    def execute(self, code, stdin_answer=None, interrupt_after=None, allow_stdin=False):
        """Runs code; returns (reply content, iopub messages busy..idle, seconds)."""
        kc = self.kc
        t0 = time.monotonic()
        msg_id = kc.execute(code, allow_stdin=allow_stdin, stop_on_error=False)
        deadline = t0 + (INTERRUPT_DEADLINE if interrupt_after is not None else DEADLINE)
        reply, msgs, busy, idle = None, [], 0, 0
        interrupted = interrupt_after is None
        asked = stdin_answer is None
        while reply is None or not idle:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fault(f"cell stuck: no {'reply' if reply is None else 'idle'} within "
                            f"{deadline - t0:.0f} s: {code!r}")
            got = False
            if not asked and kc.stdin_channel.msg_ready():
                req = kc.get_stdin_msg(timeout=1)
                if req["parent_header"].get("msg_id") != msg_id:
                    raise Fault(f"input_request for another request: {req['parent_header']}")
                kc.input(stdin_answer)
                asked = got = True
            if kc.shell_channel.msg_ready():
                m = kc.get_shell_msg(timeout=1)
                got = True
                if m["parent_header"].get("msg_id") != msg_id:
                    self._note_stray(m, "shell")
                    raise Fault(f"shell message for another request: {m['msg_type']} "
                                f"{m['parent_header'].get('msg_id')}")
                if reply is not None:
                    raise Fault(f"a second reply for {code!r}")
                reply = m
            if kc.iopub_channel.msg_ready():
                m = kc.get_iopub_msg(timeout=1)
                got = True
                if m["parent_header"].get("msg_id") != msg_id:
                    self._note_stray(m, "iopub")
                    continue
                if idle:
                    raise Fault(f"{m['msg_type']} after idle for {code!r}")
                msgs.append(m)
                if m["msg_type"] == "status":
                    st = m["content"]["execution_state"]
                    if st == "busy":
                        busy += 1
                        if len(msgs) != 1:
                            raise Fault(f"busy is not the first message of {code!r}")
                    elif st == "idle":
                        idle += 1
                if (not interrupted and m["msg_type"] == "execute_input"):
                    time.sleep(interrupt_after)
                    self.km.interrupt_kernel()
                    interrupted = True
            if not got:
                time.sleep(0.001)
        if busy != 1 or idle != 1:
            raise Fault(f"{busy} busy and {idle} idle for {code!r}")
        if not interrupted:
            raise Fault(f"no execute_input seen for {code!r}")
        if not asked:
            raise Fault(f"no input_request for {code!r}")
        self.done.add(msg_id)
        return reply["content"], msgs, time.monotonic() - t0

    def drain(self, seconds=0.2):
        """Nothing more may arrive for finished requests."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for ch, name in ((self.kc.shell_channel, "shell"), (self.kc.iopub_channel, "iopub")):
                while ch.msg_ready():
                    m = ch.get_msg(timeout=1)
                    self._note_stray(m, name)
                    if name == "shell":
                        self.stray.append(f"shell: unexpected {m['msg_type']}")
            time.sleep(0.02)
        if self.stray:
            raise Fault("messages after their request ended:\n" + "\n".join(self.stray[:20]))


def text(msgs, name="stdout"):
    return "".join(m["content"]["text"] for m in msgs
                   if m["msg_type"] == "stream" and m["content"]["name"] == name)


def kinds(msgs):
    return [m["msg_type"] for m in msgs]


def result_text(msgs):
    r = [m for m in msgs if m["msg_type"] == "execute_result"]
    return r[-1]["content"]["data"]["text/plain"] if r else None


class Mix:
    """The cells: each maker returns (code, check, options). check(reply,
    msgs) raises Fault when the cell did not do what it must."""

    def __init__(self, rnd, root, s3):
        self.r = rnd
        self.root = root
        self.data = root / "data"
        self.tar = self.data / "cifar-10-python.tar.gz"
        self.manifest = self.data / "MANIFEST.md5"
        self.s3 = s3
        self.tar_md5 = None
        self.loaded = False
        self.vars = {}
        self.used = Counter()
        self.n = 0

    # -- checks ----------------------------------------------------------------
    @staticmethod
    def ok(pred=None, what=""):
        def check(reply, msgs):
            if reply["status"] != "ok":
                raise Fault(f"expected ok, got {reply.get('ename')}: {reply.get('evalue')}")
            if pred and not pred(msgs):
                raise Fault(f"output check failed: {what}; got {kinds(msgs)} "
                            f"stdout={text(msgs)[-400:]!r}")
        return check

    @staticmethod
    def error(ename=None, contains=None):
        def check(reply, msgs):
            if reply["status"] != "error":
                raise Fault(f"expected an error, got {reply['status']}")
            errs = [m["content"] for m in msgs if m["msg_type"] == "error"]
            if len(errs) != 1 or errs[0]["ename"] != reply["ename"]:
                raise Fault(f"error on IOPub does not match the reply: {errs} vs {reply}")
            if ename and reply["ename"] != ename:
                raise Fault(f"expected {ename}, got {reply['ename']}: {reply['evalue']}")
            if contains and contains not in reply["evalue"]:
                raise Fault(f"{contains!r} not in {reply['evalue']!r}")
        return check

    # -- setup of a lifetime -----------------------------------------------------
    def first_cells(self):
        """The data set, once per test."""
        d = self.data
        return [(f"%mkdata {d} --train-batches 2 --images-per-batch 40 --seed 7", self.ok(), {})]

    # -- the cells -------------------------------------------------------------
    def m_help(self):
        name = self.r.choice(sorted(MAGICS - S3_MAGICS if not self.s3 else MAGICS))
        if self.r.random() < 0.3:
            return f"%{name}?", self.ok(lambda m: True), {}
        return f"%help {name}", self.ok(lambda m: f"%{name}" in text(m), "usage printed"), {}

    def m_lsmagic(self):
        return "%lsmagic", self.ok(lambda m: "%train" in text(m) and "%sleep" in text(m)), {}

    def m_set(self):
        name = f"V{self.r.randrange(8)}"
        val = f"x{self.r.randrange(1000)}"
        self.vars[name] = val
        return (f"%set {name}={val}\n%set {name}",
                self.ok(lambda m: result_text(m) == val, f"${name} = {val}"), {})

    def m_env(self):
        val = f"e{self.r.randrange(1000)}"
        return (f"%env PK_SOAK_E={val}\n%env PK_SOAK_E",
                self.ok(lambda m: result_text(m) == val, "env value"), {})

    def m_cd(self):
        d = self.root / f"wd{self.r.randrange(3)}"
        return f"%cd {d}\n%pwd", self.ok(lambda m: result_text(m) == str(d), "pwd"), {}

    def m_ifset(self):
        if self.vars and self.r.random() < 0.7:
            name = self.r.choice(sorted(self.vars))
            return (f"%ifset {name} %echo set-{name}",
                    self.ok(lambda m: text(m) == f"set-{name}\n", "ifset ran"), {})
        return ("%ifset PK_SOAK_NEVER_SET %echo no",
                self.ok(lambda m: text(m).startswith("skipped"), "reported as skipped"), {})

    def m_time(self):
        return "%time %echo timed", self.ok(lambda m: text(m).startswith("timed\n")), {}

    def m_echo(self):
        n = self.r.randrange(1, 20)
        lines = [f"line {self.n} {i} \u00e9\u2713" for i in range(n)]
        code = "\n".join(f"%echo '{s}'" for s in lines)
        if self.r.random() < 0.3:
            return ("%echo --stderr oops",
                    self.ok(lambda m: text(m, "stderr") == "oops\n", "stderr"), {})
        want = "".join(s + "\n" for s in lines)
        return code, self.ok(lambda m: text(m) == want, "echo text"), {}

    def m_sleep(self):
        return "%sleep 0.02", self.ok(), {}

    def m_html(self):
        if self.r.random() < 0.5:
            return self.m_markdown()
        return ("%html <b>soak</b>",
                self.ok(lambda m: any("text/html" in x["content"]["data"] for x in m
                                      if x["msg_type"] == "display_data")), {})

    def m_markdown(self):
        return ("%%markdown\n# soak\n*text*",
                self.ok(lambda m: any("text/markdown" in x["content"]["data"] for x in m
                                      if x["msg_type"] == "display_data")), {})

    def m_clear(self):
        return "%echo gone\n%clear", self.ok(lambda m: "clear_output" in kinds(m)), {}

    def m_input(self):
        if self.r.random() < 0.5:
            ans = f"answer {self.n}"
            return ("%input 'Name? '", self.ok(lambda m: result_text(m) == ans, "input value"),
                    {"allow_stdin": True, "stdin_answer": ans})
        return "%input 'Name? '", self.error("StdinNotImplementedError"), {}

    def m_mkdata(self):
        d = self.root / f"mk{self.r.randrange(2)}"
        return (f"%mkdata {d} --train-batches 1 --images-per-batch 10 --seed {self.r.randrange(99)}",
                self.ok(), {})

    def m_download(self):
        dst = self.root / "dl"
        dst.mkdir(exist_ok=True)
        x = self.r.random()
        if x < 0.4:
            return (f"%download file://{self.tar} --to {dst}/c.tgz --md5 {self.tar_md5}",
                    self.ok(), {})
        if x < 0.8:
            return (f"%download file://{self.tar} --to {dst}/f.tgz --extract {dst}/x "
                    f"--verify {self.manifest}", self.ok(), {})
        return (f"%download file://{self.root}/missing.tgz --to {dst}/m.tgz --retries 0",
                self.error("FileNotFoundError"), {})

    def m_md5(self):
        if self.r.random() < 0.8:
            return (f"%md5 {self.tar} --expect {self.tar_md5}",
                    self.ok(lambda m: self.tar_md5 in text(m), "md5 printed"), {})
        return f"%md5 {self.tar} --expect {'0' * 32}", self.error("ChecksumError"), {}

    def m_extract(self):
        return f"%extract {self.tar} --to {self.root / 'ex'}", self.ok(), {}

    def m_verify(self):
        return f"%verify {self.manifest}", self.ok(), {}

    def _need_load(self, code):
        if self.loaded:
            return code
        self.loaded = True
        return f"%load {self.data} --no-md5\n{code}"

    def m_load(self):
        self.loaded = True
        opt = " --no-md5" if self.r.random() < 0.5 else ""
        return f"%load {self.data}{opt}", self.ok(lambda m: "train: 2 files" in text(m)), {}

    def m_meta(self):
        return self._need_load("%meta"), self.ok(lambda m: "display_data" in kinds(m)), {}

    def m_preview(self):
        s = self.r.randrange(1000)
        return (self._need_load(f"%preview --n 4 --seed {s} --scale 1"),
                self.ok(lambda m: any("image/png" in x["content"]["data"] for x in m
                                      if x["msg_type"] == "display_data")), {})

    def m_train(self):
        return (self._need_load("%train --epochs 1 --batch-size 8 --seed 3 --log-every 5"),
                self.ok(lambda m: "Finished Training" in text(m)), {})

    def m_timings(self):
        x = self.r.random()
        if x < 0.3:
            return "%timings --chart", self.ok(), {}
        if x < 0.5:
            return f"%timings --json {self.root / 'timings.json'}", self.ok(), {}
        if x < 0.6:
            return "%timings --clear", self.ok(), {}
        return "%timings", self.ok(), {}

    def m_pipeline(self):
        self.loaded = True
        s3 = f" --s3 s3://soak/pipe{self.n % 3}" if self.s3 and self.r.random() < 0.5 else ""
        return (f"%pipeline --mode inplace --source {self.data} --epochs 1 --seed 1{s3}",
                self.ok(lambda m: "pipeline (inplace" in text(m)), {})

    def m_upload(self):
        p = self.data / "cifar-10-batches-py" / "batches.meta"
        opt = " --skip-existing" if self.r.random() < 0.5 else ""
        return (f"%upload {p} s3://soak/k{self.r.randrange(4)}/ --create-bucket{opt}",
                self.ok(lambda m: "upload:" in text(m)), {})

    def m_s3ls(self):
        return "%s3ls s3://soak --max 50", self.ok(), {}

    BAD = [
        ("%no-such-magic", "UnknownMagicError"),
        ("%sleep notanumber", "UsageError"),
        ("%echo 'unterminated", "UsageError"),
        ("%echo $PK_SOAK_UNSET_VARIABLE", "UsageError"),
        ("%md5 /nonexistent/pk-soak", "FileNotFoundError"),
        ("%load /nonexistent/pk-soak", "FileNotFoundError"),
        ("%extract /nonexistent/pk-soak.tgz", "UsageError"),
        ("%train --epochs -1", "UsageError"),
        ("%echo fine\n%verify /nonexistent/MANIFEST.md5", "FileNotFoundError"),
        ("%preview --n 1 --name no-such-dataset", "StateError"),
    ]

    def bad(self):
        code, ename = self.r.choice(self.BAD)
        return code, self.error(ename), {}

    # -- interrupt targets: long enough that the interrupt lands inside --------
    def long_cell(self):
        x = self.r.random()
        if x < 0.4:
            code = "%sleep 30"
        elif x < 0.55:
            code = "%time %sleep 30"
        elif x < 0.65:
            code = "%echo before\n%sleep 30\n%echo never"
        elif x < 0.75:
            self.vars.setdefault("V0", "x")
            code = "%set V0=x\n%ifset V0 %sleep 30"
        else:
            code = self._need_load("%train --epochs 10000 --batch-size 4 --log-every 100000")
        return code

    # -- the weighted choice -----------------------------------------------------
    WEIGHTS = {
        "help": 4, "lsmagic": 1, "set": 8, "env": 3, "cd": 3, "ifset": 4, "time": 3, "echo": 14,
        "sleep": 4, "html": 3, "clear": 2, "input": 4, "mkdata": 1, "download": 3, "md5": 3,
        "extract": 2, "verify": 3, "load": 3, "meta": 2, "preview": 3, "train": 2,
        "timings": 3, "pipeline": 1, "upload": 2, "s3ls": 1, "bad": 8,
    }

    WARM = ["help", "lsmagic", "set", "env", "cd", "ifset", "time", "echo", "sleep", "html",
            "markdown", "clear", "input", "mkdata", "download", "md5", "extract", "verify",
            "load", "meta", "preview", "train", "timings", "pipeline", "upload", "s3ls", "bad"]

    def warm_names(self):
        return [n for n in self.WARM if self.s3 or n not in S3_MAGICS]

    def make(self, name):
        return getattr(self, "m_" + name if name != "bad" else "bad")()

    def pick(self):
        names = [n for n in self.WEIGHTS if self.s3 or n not in S3_MAGICS]
        name = self.r.choices(names, [self.WEIGHTS[n] for n in names])[0]
        return name


def lifetimes(total, restarts):
    """Requests per kernel lifetime: the first covers LONG_LIFE, the rest is
    spread over the restarted ones."""
    first = min(total, LONG_LIFE) if restarts else total
    rest = total - first
    sizes = [first]
    for i in range(restarts):
        sizes.append(rest // restarts + (1 if i < rest % restarts else 0))
    return sizes


@pytest.fixture(scope="module")
def soak_s3():
    if os.environ.get("PK_SOAK_NO_S3") == "1":
        yield None
        return
    import rgwctl
    missing = rgwctl.missing_binaries()
    if missing:
        pytest.fail("the soak needs a Ceph RGW for %upload/%s3ls (missing: " + ", ".join(missing)
                    + "); install radosgw ceph-mon ceph-osd, or set PK_SOAK_NO_S3=1 to leave "
                    "those two magics out")
    r = rgwctl.RGW(memstore_bytes=1 << 30).start()
    try:
        r.client().create_bucket(Bucket="soak")  # %pipeline --s3 does not create it
        yield r
    finally:
        r.stop()


def test_soak(tmp_path, soak_s3):
    rnd = random.Random(SOAK_SEED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if soak_s3:
        env.update(AWS_ACCESS_KEY_ID=soak_s3.access_key,
                   AWS_SECRET_ACCESS_KEY=soak_s3.secret_key, AWS_REGION="us-east-1",
                   AWS_ENDPOINT_URL=soak_s3.endpoint,
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
                   AWS_CONFIG_FILE=str(tmp_path / "no-config"))
    for d in ("wd0", "wd1", "wd2"):
        (tmp_path / d).mkdir()
    mix = Mix(rnd, tmp_path, soak_s3 is not None)
    sizes = lifetimes(SOAK_REQUESTS, SOAK_RESTARTS)
    # which requests are interrupted, and after how long (seconds after the
    # frontend saw execute_input): seeded, uniform over the whole run except
    # the warm-up pass
    warm = len(mix.first_cells()) + len(mix.warm_names())
    candidates = list(range(warm, SOAK_REQUESTS))
    interrupts = set(rnd.sample(candidates, min(SOAK_INTERRUPTS, len(candidates))))

    km = KernelManager(kernel_name="pipekernel")
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=WAIT)
    drv = Driver(km, kc)
    stats = Counter()
    per_magic = Counter()
    slow = []
    rss = []                         # KiB after each request of lifetime 0
    rss_log = []
    exits = []                       # exit status of each kernel process
    t_start = time.monotonic()
    i = 0
    try:
        for life, size in enumerate(sizes):
            if life:
                drv.drain()
                old, old_proc = drv.pid(), km.provisioner.process
                km.restart_kernel(now=False)
                kc.wait_for_ready(timeout=WAIT)
                if drv.pid() == old:
                    raise Fault("restart kept the same process")
                exits.append(old_proc.wait(timeout=WAIT))
                stats["restarts"] += 1
                mix.loaded = False
                mix.vars.clear()
            queue = []
            if i == 0:
                queue += [("mkdata", c) for c in mix.first_cells()]
            if life == 0:
                queue += mix.warm_names()
            for k in range(size):
                if i >= SOAK_REQUESTS:
                    break
                if queue:
                    name = queue.pop(0)
                    if isinstance(name, tuple):
                        name, (code, check, opt) = name
                    else:
                        code, check, opt = mix.make(name)
                    after = None
                elif i in interrupts:
                    name, code = "interrupt", mix.long_cell()
                    check, opt = Mix.error("KeyboardInterrupt"), {}
                    after = rnd.uniform(0, 0.25)
                else:
                    name = mix.pick()
                    code, check, opt = mix.make(name)
                    after = None
                mix.n = i
                if mix.tar_md5 is None and mix.tar.exists():
                    mix.tar_md5 = hashlib.md5(mix.tar.read_bytes()).hexdigest()
                try:
                    reply, msgs, dt = drv.execute(code, interrupt_after=after, **opt)
                    check(reply, msgs)
                except Fault as e:
                    raise Fault(f"request {i} (lifetime {life}, #{k}) {name}: {code!r}: {e}") \
                        from None
                if name == "mkdata" and mix.tar_md5 is None:
                    mix.tar_md5 = hashlib.md5(mix.tar.read_bytes()).hexdigest()
                if after is not None:
                    stats["interrupts"] += 1
                per_magic[name] += 1
                for word in re.findall(r"%%?([a-z0-9]+)", code):
                    mix.used[word] += 1
                stats["requests"] += 1
                if dt > 5:
                    slow.append((round(dt, 1), code[:60]))
                if life == 0:
                    rss.append(vmrss_kib(drv.pid()))
                    rss_log.append(f"{i}\t{rss[-1]}\t{name}\t{code.splitlines()[-1][:60]}")
                i += 1
        drv.drain()
        info = kc.kernel_info(reply=True, timeout=WAIT)
        assert info["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        last_proc = km.provisioner.process
        km.shutdown_kernel(now=False)
        exits.append(last_proc.wait(timeout=WAIT))
    elapsed = time.monotonic() - t_start
    (tmp_path / "rss.tsv").write_text("\n".join(rss_log) + "\n")

    lsmagic_names = MAGICS if soak_s3 else MAGICS - S3_MAGICS
    missing = sorted(n for n in lsmagic_names if not mix.used[n])
    warm_n = warm
    window = min(RSS_WINDOW, (len(rss) - warm_n) // 2)  # 500 unless the counts were reduced
    first = rss[warm_n:warm_n + window]
    last = rss[-window:]
    a, b = sum(first) / len(first), sum(last) / len(last)
    growth = (b - a) / a
    print(f"\nsoak: {stats['requests']} execute requests, {stats['interrupts']} interrupts, "
          f"{stats['restarts']} restarts in {elapsed:.1f} s"
          f"{' (sanitizer build)' if SANITIZED else ''}; seed {SOAK_SEED}")
    print(f"soak: longest lifetime {len(rss)} requests; VmRSS mean of requests "
          f"{warm_n}-{warm_n + len(first) - 1}: {a / 1024:.1f} MiB, of the last {len(last)}: "
          f"{b / 1024:.1f} MiB, growth {growth * 100:+.2f} % (bound {RSS_GROWTH_MAX * 100:.0f} %); "
          f"min {min(rss) / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB")
    print("soak: cells per kind: " + ", ".join(f"{k} {v}" for k, v in sorted(per_magic.items())))
    if not soak_s3:
        print("soak: %upload and %s3ls LEFT OUT (PK_SOAK_NO_S3=1: no S3 server in this run)")
    if slow:
        print(f"soak: cells over 5 s: {slow[:10]}")
    print(f"soak: exit status of the {len(exits)} kernel processes: {sorted(Counter(exits).items())}")
    assert not missing, f"magics the soak never ran: {missing}"
    assert stats["requests"] == SOAK_REQUESTS
    assert stats["interrupts"] == len(interrupts)
    assert stats["restarts"] == SOAK_RESTARTS
    # a clean exit each time: under `make check` LeakSanitizer makes it 23
    # when the process leaked, and a sanitizer report ends it with an error
    assert exits == [0] * (SOAK_RESTARTS + 1), f"kernel exit statuses: {exits}"
    if SOAK_REQUESTS >= LONG_LIFE:
        assert window == RSS_WINDOW
    if SANITIZED:
        # ASan keeps up to 256 MiB of freed memory in its quarantine, so RSS
        # there says nothing about the kernel's own growth; the normal build
        # (make test) checks the bound, LeakSanitizer the leaks (above).
        print("soak: RSS bound not checked in the sanitizer build (ASan quarantine)")
        return
    assert growth < RSS_GROWTH_MAX, f"RSS grew {growth * 100:.2f} % over one kernel lifetime"


def test_soak_covers_the_registry(pk):
    """MAGICS above is the registry: %lsmagic lists exactly these."""
    from pkkernel import run, stream_text
    km, kc = pk
    reply, msgs = run(kc, "%lsmagic")
    names = set(re.findall(r"^\s+%([a-z0-9]+)", stream_text(msgs), re.M))
    assert names == MAGICS
