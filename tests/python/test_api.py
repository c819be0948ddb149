"""The Python API (pipekernel.run, load, dataset, timings, interrupt), each
scenario in a fresh interpreter: values and output, the arrays against
pickle.load + numpy, zero copy, datasets replaced under live views,
interrupts (signal and API, also at many points of real stages), the GIL
released while a stage runs, and each error's exception class."""
import json
import shutil

from pkutil import ROOT, free_port

INVALID = ROOT / "tests/data/pickle/invalid"


def test_run_values_and_output(py, tmp_path):
    r, p = py("""
        import json, os, pipekernel
        out = {}
        out["echo"] = pipekernel.run("%echo hello")
        out["pwd"] = pipekernel.run("%pwd")
        pipekernel.run("set GREETING='hi there'")     # one line may leave out its %
        out["set"] = pipekernel.run("%set GREETING")
        out["cell"] = pipekernel.run("# a comment\\n%set N=3\\n%echo n=$N $GREETING\\n%set N")
        out["err_line"] = pipekernel.run("%echo --stderr on stderr")
        try:
            pipekernel.run(b"%echo bytes")
        except TypeError as e:
            out["typeerror"] = str(e)
        out["magics"] = [m[0] for m in pipekernel.magics()][:3]
        print("RESULT " + json.dumps(out), flush=True)
    """, cwd=tmp_path)
    assert r["echo"] is None
    assert r["pwd"] == str(tmp_path)
    assert r["set"] == "hi there"
    assert r["cell"] == "3"  # the last line's value
    assert r["err_line"] is None
    assert "str" in r["typeerror"]
    assert r["magics"] == ["help", "lsmagic", "set"]
    assert "hello\n" in p.stdout and "n=3 hi there\n" in p.stdout
    assert "on stderr\n" in p.stderr


def test_arrays_equal_pickle_and_numpy(py, cifar):
    """What %load put in the session, seen through the arrays, is byte for
    byte what pickle.load(encoding='bytes') + np.vstack makes of the files."""
    r, _ = py(f"""
        import glob, hashlib, json, pickle
        import numpy as np
        import pipekernel
        root = {str(cifar)!r} + "/cifar-10-batches-py"

        def ref(files):
            data, labels = [], []
            for f in files:
                with open(f, "rb") as fh:
                    b = pickle.load(fh, encoding="bytes")
                data.append(b[b"data"])
                labels += b[b"labels"]
            return np.vstack(data), np.array(labels, dtype=np.uint8)

        md5 = lambda a: hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()
        train = ref(sorted(glob.glob(root + "/data_batch_*")))
        test = ref([root + "/test_batch"])
        with open(root + "/batches.meta", "rb") as fh:
            names = [n.decode() for n in pickle.load(fh, encoding="bytes")[b"label_names"]]
        ds = pipekernel.load({str(cifar)!r}, hash="md5")
        out = dict(
            shape=list(ds.train.data.shape), dtype=str(ds.train.data.dtype),
            lshape=list(ds.train.labels.shape), ldtype=str(ds.train.labels.dtype),
            train=[md5(ds.train.data), md5(train[0])], train_l=[md5(ds.train.labels), md5(train[1])],
            test=[md5(ds.test.data), md5(test[0])], test_l=[md5(ds.test.labels), md5(test[1])],
            stage_md5=[ds.train.pixels_md5, ds.train.labels_md5, ds.test.pixels_md5],
            images=bool((ds.train.data.reshape(-1, 3, 32, 32) == train[0].reshape(-1, 3, 32, 32)).all()),
            classes=[ds.classes, names], n=[ds.train.n, len(ds.train), ds.train.files, ds.test.n])
        print("RESULT " + json.dumps(out), flush=True)
    """, cwd=cifar.parent)
    assert r["shape"] == [1000, 3072] and r["dtype"] == "uint8"
    assert r["lshape"] == [1000] and r["ldtype"] == "uint8"
    for k in ("train", "train_l", "test", "test_l"):
        assert r[k][0] == r[k][1], k
    assert r["stage_md5"] == [r["train"][0], r["train_l"][0], r["test"][0]]  # as %load printed
    assert r["images"]
    assert r["classes"][0] == r["classes"][1]
    assert r["n"] == [1000, 1000, 2, 500]


def test_zero_copy(py, cifar):
    """dataset() copies nothing: every view's first byte is the session's
    block, two views share their memory, numpy owns none of it and
    tracemalloc (which numpy reports its buffers to) sees no array-sized
    allocation; a write through one view shows in the other."""
    r, _ = py(f"""
        import json, tracemalloc
        import numpy as np
        import pipekernel
        from pipekernel import _core
        pipekernel.load({str(cifar)!r})
        tracemalloc.start()
        a, b = pipekernel.dataset(), pipekernel.dataset("cifar10")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        x, y = a.train.data, b.train.data
        base = x.base
        while base is not None and not isinstance(base, _core.Block) and hasattr(base, "obj"):
            base = base.obj
        before = int(y[7, 11])
        x[7, 11] = (before + 1) % 256
        out = dict(
            session=_core.session_pixels(None, "train"), x=x.ctypes.data, y=y.ctypes.data,
            test=[a.test.data.ctypes.data, _core.session_pixels(None, "test")],
            shares=bool(np.shares_memory(x, y)), owndata=[x.flags.owndata, a.train.labels.flags.owndata],
            block=type(base).__name__, writable=bool(x.flags.writeable),
            peak=peak, nbytes=x.nbytes, seen=[int(y[7, 11]), (before + 1) % 256])
        print("RESULT " + json.dumps(out), flush=True)
    """, cwd=cifar.parent)
    assert r["x"] == r["session"] == r["y"]
    assert r["test"][0] == r["test"][1]
    assert r["shares"] and r["owndata"] == [False, False]
    assert r["block"] == "Block" and r["writable"]
    assert r["peak"] < r["nbytes"] / 10, r  # nothing array-sized was allocated
    assert r["seen"][0] == r["seen"][1]


def test_replaced_dataset_under_live_views(py, cifar, cifar_b):
    """Arrays (and a torch tensor over one) of a dataset that later loads
    replaced stay readable and unchanged; the replacement is other memory;
    several generations live side by side; the split a `--split train` load
    keeps from the earlier load is the same memory."""
    r, _ = py(f"""
        import gc, hashlib, json
        import numpy as np
        import torch
        import pipekernel
        A, B = {str(cifar)!r}, {str(cifar_b)!r}
        md5 = lambda a: hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()
        ds = pipekernel.load(A, hash="md5")
        want = [ds.train.pixels_md5, ds.train.labels_md5, ds.test.pixels_md5]
        x, lab = ds.train.data, ds.train.labels
        t = torch.from_numpy(ds.test.data).view(-1, 3, 32, 32)
        del ds
        gc.collect()
        new = pipekernel.load(B, hash="md5")          # same name: replaces the dataset
        gc.collect()
        out = dict(kept=[md5(x), md5(lab), md5(t.numpy().reshape(-1, 3072))], want=want,
                   new_n=new.train.n, other=new.train.data.ctypes.data != x.ctypes.data)
        x[:] = 0                            # the old memory is ours now
        out["new_intact"] = md5(new.train.data) == new.train.pixels_md5
        gens = []
        for i in range(6):
            d = pipekernel.load(B if i % 2 else A, hash="md5")
            gens.append((d.train.data, d.train.pixels_md5))
            del d
        gc.collect()
        out["gens"] = all(md5(a) == h for a, h in gens)
        del gens
        a = pipekernel.load(A, hash="md5")
        test_before = a.test.data.ctypes.data
        del a
        kept = pipekernel.load(A, split="train", hash="md5")   # keeps the earlier test split
        out["moved"] = [kept.test.data.ctypes.data == test_before,
                        md5(kept.test.data) == kept.test.pixels_md5, kept.train.n]
        del new, kept, x, lab, t
        gc.collect()
        out["after"] = pipekernel.run("%echo ok") is None
        print("RESULT " + json.dumps(out), flush=True)
    """, cwd=cifar.parent)
    assert r["kept"] == r["want"]
    assert r["new_n"] == 300 and r["other"]
    assert r["new_intact"]
    assert r["gens"]
    assert r["moved"] == [True, True, 1000]
    assert r["after"]


def test_gil_released_while_a_stage_runs(py, big_manifest):
    """A Python thread keeps running while %verify hashes 256 MiB: it takes
    samples of the clock in the middle half of the run (a stage holding the
    GIL would leave it none)."""
    r, _ = py(f"""
        import json, threading, time
        import pipekernel
        samples, stop = [], threading.Event()
        def spin():
            while not stop.is_set():
                samples.append(time.monotonic())
        th = threading.Thread(target=spin)
        th.start()
        time.sleep(0.05)
        t0 = time.monotonic()
        pipekernel.run("%verify {big_manifest} --jobs 1")
        t1 = time.monotonic()
        stop.set()
        th.join()
        q = (t1 - t0) / 4
        middle = sum(1 for s in samples if t0 + q <= s <= t1 - q)
        print("RESULT " + json.dumps(dict(middle=middle, took=t1 - t0)), flush=True)
    """, cwd=big_manifest.parent)
    assert r["middle"] > 100, r


def test_interrupt_by_signal(py, tmp_path):
    """SIGINT (Ctrl-C) during %sleep 30: KeyboardInterrupt within a second,
    the bar ends as interrupted, and the session goes on."""
    r, p = py("""
        import json, os, signal, threading, time
        import pipekernel
        sent = []
        def later():
            time.sleep(0.5)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=later).start()
        out = {}
        try:
            pipekernel.run("%sleep 30")
            out["raised"] = None
        except KeyboardInterrupt:
            out["raised"] = "KeyboardInterrupt"
            out["after"] = time.monotonic() - sent[0]
        out["ok"] = pipekernel.run("%echo ok\\n%set X=1\\n%set X")
        print("RESULT " + json.dumps(out), flush=True)
    """, cwd=tmp_path)
    assert r["raised"] == "KeyboardInterrupt"
    assert r["after"] < 1.0, r
    assert r["ok"] == "1"
    assert "interrupted" in p.stderr  # the bar's final state


def test_interrupt_from_another_thread(py, tmp_path):
    r, _ = py("""
        import json, threading, time
        import pipekernel
        out = {"idle": pipekernel.interrupt()}
        hit = []
        def later():
            time.sleep(0.3)
            hit.append((pipekernel.interrupt(), time.monotonic()))
        threading.Thread(target=later).start()
        try:
            pipekernel.run("%sleep 30")
        except KeyboardInterrupt as e:
            out["raised"] = [type(e).__name__, str(e), time.monotonic() - hit[0][1], hit[0][0]]
        out["ok"] = pipekernel.run("%pwd")
        print("RESULT " + json.dumps(out), flush=True)
    """, cwd=tmp_path)
    assert r["idle"] is False
    assert r["raised"][0] == "KeyboardInterrupt" and r["raised"][3] is True
    assert r["raised"][2] < 1.0
    assert r["ok"] == str(tmp_path)


def test_interrupts_at_many_points(py, cifar, big_manifest, tmp_path):
    """pipekernel.interrupt() and SIGINT at many moments of real stages
    (mkdata, extract, verify, load, train): each run either completes or raises
    KeyboardInterrupt, the session stays usable, and a dataset that is there
    afterwards is whole (the ASan build checks the memory on the way)."""
    tarball = cifar / "cifar-10-python.tar.gz"
    r, _ = py(f"""
        import hashlib, json, os, signal, threading, time
        import numpy as np
        import pipekernel
        lines = ["%mkdata {tmp_path}/mk --train-batches 1 --images-per-batch 2000",
                 "%extract {tarball} --to {tmp_path}/x",
                 "%verify {big_manifest}",
                 "%load {cifar} --md5",
                 "%train --epochs 1 --batch-size 4 --log-every 100000 --threads 2"]
        delays = [0, 0.001, 0.003, 0.01, 0.02, 0.05, 0.1]
        md5 = lambda a: hashlib.md5(np.ascontiguousarray(a).tobytes()).hexdigest()
        done = interrupted = 0
        for i, line in enumerate(lines):
            for k, d in enumerate(delays):
                use_signal = (i + k) % 3 == 0
                go = threading.Event()
                def later():
                    go.wait()  # not before the try below: a SIGINT there would escape it
                    time.sleep(d)
                    if use_signal:
                        os.kill(os.getpid(), signal.SIGINT)
                    else:
                        pipekernel.interrupt()
                th = threading.Thread(target=later)
                th.start()
                try:
                    go.set()
                    pipekernel.run(line)
                    done += 1
                except KeyboardInterrupt:
                    interrupted += 1
                while True:  # a SIGINT sent after the run ended lands here
                    try:
                        th.join()
                        time.sleep(0.02)
                        break
                    except KeyboardInterrupt:
                        pass
                assert pipekernel.run("%echo ok\\n%pwd") == os.getcwd()
                try:
                    ds = pipekernel.dataset()
                    assert md5(ds.train.data) == ds.train.pixels_md5
                    assert md5(ds.test.data) == ds.test.pixels_md5
                except pipekernel.StateError:
                    pass
        ds = pipekernel.load("{cifar}", hash="md5")
        whole = md5(ds.train.data) == ds.train.pixels_md5
        print("RESULT " + json.dumps(dict(done=done, interrupted=interrupted, whole=whole)), flush=True)
    """, cwd=tmp_path, timeout=600)
    assert r["interrupted"] > 0 and r["done"] + r["interrupted"] == 35
    assert r["whole"]


def http_servers_script():
    return """
        import http.server, socket, threading
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
        srv.RequestHandlerClass.log_message = lambda *a: None
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        HTTP = srv.server_address[1]
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        SILENT = silent.getsockname()[1]
    """


def test_each_error_raises_its_class(py, tmp_path, cifar):
    """Stage errors from real runs, each as the class named as the kernel
    names it, with where / offset / lineno / line; the built-in bases."""
    bad = tmp_path / "bad" / "cifar-10-batches-py"
    bad.mkdir(parents=True)
    shutil.copy(INVALID / "no_stop" / "input.pkl", bad / "data_batch_1")
    unsafe = tmp_path / "unsafe" / "cifar-10-batches-py"
    unsafe.mkdir(parents=True)
    shutil.copy(INVALID / "global_os_system" / "input.pkl", unsafe / "data_batch_1")
    home = tmp_path / "home"
    home.mkdir()
    tarball = cifar / "cifar-10-python.tar.gz"
    cases = [
        ("%sleep abc", "UsageError"),
        ("%md5 /nonexistent/x", "FileNotFoundError"),
        (f"%md5 {tarball} --expect {'0' * 32}", "ChecksumError"),
        ("%nosuch", "UnknownMagicError"),
        ("%preview", "StateError"),
        (f"%load {bad.parent}", "FormatError"),
        (f"%load {unsafe.parent}", "UnsafeInputError"),
        (f"%download http://127.0.0.1:{free_port()}/x --to y --retries 0", "NetworkError"),
        ("%download http://127.0.0.1:{HTTP}/missing --to y --retries 0", "HTTPError"),
        ("%download http://127.0.0.1:{SILENT}/x --to y --retries 0 --timeout 1", "TimeoutError"),
        ("%download https://127.0.0.1:{HTTP}/x --to y --retries 0", "TLSError"),
        (f"%upload {cifar} s3://bucket/x", "CredentialsError"),
        ("%input", "StdinNotImplementedError"),
        ("%echo " + "x" * (1 << 20), "LimitError"),
        ("%echo first\n%echo second\n%md5 /nonexistent/y", "FileNotFoundError"),
    ]
    r, _ = py(http_servers_script() + f"""
        import builtins, json, os
        import pipekernel
        cases = {json.dumps(cases)}
        out = []
        for line, want in cases:
            line = line.replace("{{HTTP}}", str(HTTP)).replace("{{SILENT}}", str(SILENT))
            try:
                pipekernel.run(line)
                out.append(None)
            except pipekernel.StageError as e:
                out.append(dict(cls=type(e).__name__, ename=e.ename, code=e.code, where=e.where,
                                offset=e.offset, lineno=e.lineno, line=e.line, text=e.text,
                                msg=str(e), module=type(e).__module__,
                                builtin_fnf=isinstance(e, builtins.FileNotFoundError),
                                builtin_timeout=isinstance(e, builtins.TimeoutError),
                                oserror=isinstance(e, OSError)))
        try:
            pipekernel.dataset("nothing-here")
        except pipekernel.StateError as e:
            out.append(dict(cls=type(e).__name__, msg=str(e)))
        print("RESULT " + json.dumps(out), flush=True)
    """, cwd=tmp_path, extra_env={"HOME": str(home), "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                                  "AWS_PROFILE": "", "AWS_SHARED_CREDENTIALS_FILE": "",
                                  "AWS_CONFIG_FILE": ""})
    got = {line: res for (line, _), res in zip(cases, r)}
    for line, want in cases:
        res = got[line]
        assert res is not None, f"{line[:60]!r} did not fail"
        assert res["cls"] == want and res["ename"] == want, (line[:60], res)
        assert res["module"] == "pipekernel.errors"
        assert isinstance(res["code"], int) and res["code"] < 0
    fnf = got["%md5 /nonexistent/x"]
    assert fnf["where"] == "/nonexistent/x" and fnf["builtin_fnf"] and fnf["oserror"]
    assert fnf["lineno"] == 1 and fnf["line"] == "md5 /nonexistent/x"
    assert fnf["msg"].startswith("/nonexistent/x: ")
    assert got["%download http://127.0.0.1:{SILENT}/x --to y --retries 0 --timeout 1"]["builtin_timeout"]
    chk = got[f"%md5 {tarball} --expect {'0' * 32}"]
    assert chk["where"] == str(tarball) and "0" * 32 in chk["text"]
    fmt = got[f"%load {bad.parent}"]
    assert fmt["where"].endswith("data_batch_1")
    uns = got[f"%load {unsafe.parent}"]
    assert uns["where"].endswith("data_batch_1") and uns["offset"] is not None
    assert got["%preview"]["offset"] is None
    third = got["%echo first\n%echo second\n%md5 /nonexistent/y"]
    assert third["lineno"] == 3 and third["line"] == "md5 /nonexistent/y"
    assert r[-1]["cls"] == "StateError" and "nothing-here" in r[-1]["msg"]


def test_error_table_maps_every_code(py, tmp_path):
    """Every code of the stage contract has its class, named as the kernel
    names it, a StageError (ECANCELED is the built-in KeyboardInterrupt);
    the classes whose names are built-in exceptions' derive from those."""
    r, _ = py("""
        import builtins, json
        import pipekernel
        from pipekernel import _core, errors
        out = []
        for code, ename, message in _core.error_table():
            e = errors._from_core(code, ename, "w", 5, "t", "w: t (at byte 5)", 2, "md5 x")
            b = getattr(builtins, ename, None)
            out.append(dict(code=code, ename=ename, cls=type(e).__name__,
                            stage=isinstance(e, pipekernel.StageError),
                            exported=getattr(pipekernel, ename, None) is type(e),
                            builtin=None if b is None else isinstance(e, b),
                            where=getattr(e, "where", None), offset=getattr(e, "offset", None),
                            notes=getattr(e, "__notes__", [])))
        print("RESULT " + json.dumps(out), flush=True)
    """, cwd=tmp_path)
    assert len(r) == 24
    for row in r:
        assert row["cls"] == row["ename"], row
        if row["ename"] == "KeyboardInterrupt":
            assert not row["stage"] and row["builtin"]
            continue
        assert row["stage"] and row["exported"], row
        assert row["builtin"] in (None, True), row
        assert row["where"] == "w" and row["offset"] == 5
        assert row["notes"] == ["in line 2: %md5 x"]
    names = {row["ename"] for row in r}
    assert {"ChecksumError", "FormatError", "UnsafeInputError", "StateError"} <= names


def test_timings_records_and_frame(py, cifar):
    r, p = py(f"""
        import json
        import pipekernel
        pipekernel.load({str(cifar)!r}, md5=False)
        pipekernel.run("%preview --n 2")
        pipekernel.add_timing("train", 1.5, magic="torch", items=1000, backend="torch-cpu")
        rows = pipekernel.timings()
        df = pipekernel.timings(frame=True)
        pipekernel.run("%timings")
        print("RESULT " + json.dumps(dict(rows=rows, columns=list(df.columns), n=len(df),
                                          stages=list(df["stage"]))), flush=True)
    """, cwd=cifar.parent)
    rows = r["rows"]
    assert [x["stage"] for x in rows] == ["pickled", "preview", "train"]
    assert set(rows[0]) == {"stage", "magic", "args", "seconds", "bytes", "items", "backend",
                            "hash", "wall", "cache", "fs"}
    assert rows[0]["cache"] in ("cold", "warm") and rows[0]["fs"]
    assert rows[1]["cache"] == "" and rows[1]["fs"] == ""  # %preview reads no file
    assert rows[0]["magic"] == "load" and rows[0]["bytes"] == 1500 * 3072
    assert rows[0]["args"] == f"{cifar} --no-hash"
    assert rows[2] == dict(rows[2], magic="torch", seconds=1.5, items=1000, backend="torch-cpu")
    assert r["columns"][:4] == ["stage", "magic", "args", "seconds"] and r["n"] == 3
    assert "torch-cpu" in p.stdout  # %timings lists the record added from Python


def test_input_and_terminal_output(py, cifar):
    """%input reads this process's stdin; displays print their text; the
    progress of a run without a terminal is its final line on stderr."""
    r, p = py(f"""
        import json
        import pipekernel
        pipekernel.run("%input 'name? ' --var WHO")
        who = pipekernel.run("%set WHO")
        pipekernel.load({str(cifar)!r})
        pipekernel.run("%preview --n 2 --seed 1")
        print("RESULT " + json.dumps(dict(who=who)), flush=True)
    """, cwd=cifar.parent, input="Ada\n")
    assert r == {"who": "Ada"}
    assert "name? " in p.stdout  # input()'s prompt
    assert "train images of cifar10" in p.stdout  # the preview's text/plain
    assert "load train [" in p.stderr and "done" in p.stderr


def test_threads_share_the_session(py, tmp_path):
    """Two threads' runs take turns on the one session; a sink that calls
    back in while its own run is in flight gets a RuntimeError (raised once
    the stage has ended)."""
    r, _ = py("""
        import json, threading
        import pipekernel
        from pipekernel import _core, _output
        results = []
        def worker(k):
            results.append(pipekernel.run(f"%sleep 0.2\\n%set T{k}={k}\\n%set T{k}"))
        ths = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
        for t in ths: t.start()
        for t in ths: t.join()
        class Reentrant(_output.TerminalSink):
            def write(self, stream, data):
                _core.run("%echo inner", _output.TerminalSink())
        try:
            _core.run("%echo outer", Reentrant())
            reentry = None
        except RuntimeError as e:
            reentry = str(e)
        after = pipekernel.run("%set T2")
        print("RESULT " + json.dumps(dict(results=sorted(results), reentry=reentry, after=after)), flush=True)
    """, cwd=tmp_path)
    assert r["results"] == ["0", "1", "2"]
    assert r["reentry"] and "running in this thread" in r["reentry"]
    assert r["after"] == "2"


def test_fork_while_idle_keeps_a_usable_session(py, tmp_path):
    r, _ = py("""
        import json, os
        import pipekernel
        pipekernel.run("%set A=parent")
        rd, wr = os.pipe()
        pid = os.fork()
        if pid == 0:
            v = pipekernel.run("%set A")
            os.write(wr, v.encode())
            os._exit(0)
        os.close(wr)
        child = os.read(rd, 100).decode()
        os.waitpid(pid, 0)
        print("RESULT " + json.dumps(dict(child=child)), flush=True)
    """, cwd=tmp_path)
    assert r["child"] == "parent"


def test_version(py, tmp_path):
    r, _ = py("""
        import json
        import pipekernel
        print("RESULT " + json.dumps(pipekernel.__version__), flush=True)
    """, cwd=tmp_path)
    assert f'#define PK_VERSION "{r}"' in (ROOT / "stages/lib/version.h").read_text()
