"""Writers of CIFAR-10 "python version" folders for the tests and the benchmark.

- write_py2(): the original files' layout, byte by byte (docs/workflow.md): a
  Python 2 cPickle protocol-2 stream with py2 str (SHORT_BINSTRING/BINSTRING),
  BINPUT/LONG_BINPUT memo, APPENDS in groups of 1000, _reconstruct + BUILD.
- pickle.dump at protocols 2..5 by CPython 3 + numpy (the installed numpy 1.x).
- numpy 2 names: a Pickler whose reducer_override re-emits numpy's own reduce
  tuples with stand-in functions registered as numpy._core.multiarray /
  numpy._core.numeric, so the stream is what numpy >= 2 writes (module names
  are the only difference; the installed numpy 1.x has no numpy._core).
"""
import hashlib
import io
import os
import pickle
import struct
import sys
import types

import numpy as np

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
               "horse", "ship", "truck"]


# ---------------------------------------------------------------- py2 stream
class Py2Writer:
    def __init__(self):
        self.out = io.BytesIO()
        self.memo = 0

    def w(self, b):
        self.out.write(b)

    def put(self):
        i = self.memo
        self.memo += 1
        self.w(b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i))

    def str_(self, s):
        if isinstance(s, str):
            s = s.encode("latin-1")
        if len(s) < 256:
            self.w(b"U" + bytes([len(s)]) + s)
        else:
            self.w(b"T" + struct.pack("<i", len(s)) + s)
        self.put()

    def int_(self, v):
        if 0 <= v < 256:
            self.w(b"K" + bytes([v]))
        elif 0 <= v < 65536:
            self.w(b"M" + struct.pack("<H", v))
        else:
            self.w(b"J" + struct.pack("<i", v))

    def global_(self, mod, name):
        self.w(b"c" + mod.encode() + b"\n" + name.encode() + b"\n")
        self.put()

    def list_(self, items, emit):
        self.w(b"]")
        self.put()
        for k in range(0, len(items), 1000):
            group = items[k:k + 1000]
            if len(group) == 1:
                emit(group[0])
                self.w(b"a")
            else:
                self.w(b"(")
                for it in group:
                    emit(it)
                self.w(b"e")

    def dtype_u1(self):
        self.global_("numpy", "dtype")
        self.str_("u1")
        self.int_(0)
        self.int_(1)
        self.w(b"\x87")
        self.put()
        self.w(b"R")
        self.put()
        self.w(b"(")
        self.int_(3)
        self.str_("|")
        self.w(b"NNN")
        self.int_(-1)
        self.int_(-1)
        self.int_(0)
        self.w(b"t")
        self.put()
        self.w(b"b")

    def array(self, arr, module="numpy.core.multiarray"):
        assert arr.dtype == np.uint8 and arr.flags.c_contiguous
        self.global_(module, "_reconstruct")
        self.global_("numpy", "ndarray")
        self.int_(0)
        self.w(b"\x85")
        self.put()
        self.str_("b")
        self.w(b"\x87")
        self.put()
        self.w(b"R")
        self.put()
        self.w(b"(")
        self.int_(1)
        for d in arr.shape:
            self.int_(d)
        self.w({1: b"\x85", 2: b"\x86", 3: b"\x87"}[arr.ndim])
        self.put()
        self.dtype_u1()
        self.w(b"\x89")  # NEWFALSE: not Fortran order
        self.str_(arr.tobytes())
        self.w(b"t")
        self.put()
        self.w(b"b")


def py2_batch_bytes(batch_label, labels, data, filenames):
    """The original layout: keys batch_label, labels, data, filenames."""
    w = Py2Writer()
    w.w(b"\x80\x02}")
    w.put()
    w.w(b"(")
    w.str_("batch_label")
    w.str_(batch_label)
    w.str_("labels")
    w.list_(list(labels), w.int_)
    w.str_("data")
    w.array(data)
    w.str_("filenames")
    w.list_(list(filenames), w.str_)
    w.w(b"u.")
    return w.out.getvalue()


def py2_meta_bytes(names=CIFAR_NAMES, per_batch=10000):
    w = Py2Writer()
    w.w(b"\x80\x02}")
    w.put()
    w.w(b"(")
    w.str_("num_cases_per_batch")
    w.int_(per_batch)
    w.str_("label_names")
    w.list_(list(names), w.str_)
    w.str_("num_vis")
    w.int_(3072)
    w.w(b"u.")
    return w.out.getvalue()


# ---------------------------------------------------------- numpy-2 names
def _fake(module, name):
    f = types.FunctionType((lambda: None).__code__, {}, name)
    f.__module__ = module
    f.__qualname__ = name
    return f


_NP2 = {}


def _np2_modules():
    if _NP2:
        return _NP2
    import numpy.core.multiarray as ma
    import numpy.core.numeric as nu
    for modname, attrs in (("numpy._core.multiarray", {"_reconstruct": ma._reconstruct,
                                                         "scalar": ma.scalar}),
                           ("numpy._core.numeric", {"_frombuffer": nu._frombuffer})):
        mod = sys.modules.get(modname)
        if mod is None:
            mod = types.ModuleType(modname)
            sys.modules[modname] = mod
        for attr, real in attrs.items():
            fake = getattr(mod, attr, None) or _fake(modname, attr)
            setattr(mod, attr, fake)
            _NP2[real] = fake
    if "numpy._core" not in sys.modules:
        sys.modules["numpy._core"] = types.ModuleType("numpy._core")
    return _NP2


class Np2Pickler(pickle.Pickler):
    """Writes numpy arrays and scalars under numpy >= 2's module names."""

    def __init__(self, f, protocol):
        super().__init__(f, protocol=protocol)
        self.protocol = protocol

    def reducer_override(self, obj):
        if isinstance(obj, (np.ndarray, np.generic)):
            rv = obj.__reduce_ex__(self.protocol)
            fn = _np2_modules().get(rv[0], rv[0])
            return (fn,) + tuple(rv[1:])
        return NotImplemented


def dumps(obj, protocol, np2=False):
    if not np2:
        return pickle.dumps(obj, protocol=protocol)
    _np2_modules()
    f = io.BytesIO()
    Np2Pickler(f, protocol=protocol).dump(obj)
    return f.getvalue()


# ------------------------------------------------------------- data sets
def make_batch(rng, n, first=0):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(x) for x in rng.integers(0, 10, size=n)]
    filenames = ["img_%06d_s_%06d.png" % (first + i, i) for i in range(n)]
    return data, labels, filenames


def write_dataset(root, style="py2", n_train=(100, 100), n_test=100, seed=0,
                  keys="str", scalars=False, np2=False, meta=True, folder=True):
    """Write a cifar-10-batches-py folder under root (or root itself with
    folder=False). style: "py2" or a protocol number 2..5. Returns the
    expected (train_pixels_md5, train_labels_md5, test_pixels_md5,
    test_labels_md5, arrays) as numpy sees them."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "cifar-10-batches-py") if folder else root
    os.makedirs(d, exist_ok=True)
    batches = [("data_batch_%d" % (i + 1), n, "training batch %d of %d" % (i + 1, len(n_train)))
               for i, n in enumerate(n_train)]
    if n_test is not None:
        batches.append(("test_batch", n_test, "testing batch 1 of 1"))
    arrays = {}
    first = 0
    for fname, n, label in batches:
        data, labels, filenames = make_batch(rng, n, first)
        first += n
        arrays[fname] = (data, labels)
        if style == "py2":
            blob = py2_batch_bytes(label, labels, data, filenames)
        else:
            lab = list(np.array(labels, dtype=np.int64)) if scalars else labels
            if keys == "bytes":
                obj = {b"batch_label": label.encode(), b"labels": lab, b"data": data,
                       b"filenames": [f.encode() for f in filenames]}
            else:
                obj = {"batch_label": label, "labels": lab, "data": data, "filenames": filenames}
            blob = dumps(obj, int(style), np2=np2)
        with open(os.path.join(d, fname), "wb") as f:
            f.write(blob)
    if meta:
        if style == "py2":
            blob = py2_meta_bytes()
        else:
            m = {"num_cases_per_batch": max(n_train) if n_train else n_test,
                 "label_names": CIFAR_NAMES, "num_vis": 3072}
            if keys == "bytes":
                m = {k.encode(): ([x.encode() for x in v] if isinstance(v, list) else v)
                     for k, v in m.items()}
            blob = dumps(m, int(style), np2=np2)
        with open(os.path.join(d, "batches.meta"), "wb") as f:
            f.write(blob)
    return expected(arrays)


def expected(arrays):
    def md5(b):
        return hashlib.md5(b).hexdigest()
    train = sorted((k for k in arrays if k.startswith("data_batch_")),
                   key=lambda k: int(k.rsplit("_", 1)[1]))
    out = {}
    if train:
        px = np.vstack([arrays[k][0] for k in train])
        lb = bytes(sum((arrays[k][1] for k in train), []))
        out["train"] = (md5(px.tobytes()), md5(lb), px, lb)
    if "test_batch" in arrays:
        px, lb = arrays["test_batch"][0], bytes(arrays["test_batch"][1])
        out["test"] = (md5(px.tobytes()), md5(lb), px, lb)
    return out


def numpy_view(folder):
    """What CPython + numpy see in a folder: pickle.load(encoding='bytes')."""
    def load(p):
        with open(p, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    names = sorted((n for n in os.listdir(folder) if n.startswith("data_batch_")),
                   key=lambda n: int(n.rsplit("_", 1)[1]))
    out = {}
    if names:
        ds = [load(os.path.join(folder, n)) for n in names]
        px = np.vstack([d["data"] for d in ds])
        lb = bytes(int(x) for d in ds for x in d["labels"])
        out["train"] = (hashlib.md5(px.tobytes()).hexdigest(), hashlib.md5(lb).hexdigest())
    if os.path.exists(os.path.join(folder, "test_batch")):
        d = load(os.path.join(folder, "test_batch"))
        lb = bytes(int(x) for x in d["labels"])
        out["test"] = (hashlib.md5(np.ascontiguousarray(d["data"]).tobytes()).hexdigest(),
                       hashlib.md5(lb).hexdigest())
    return out
