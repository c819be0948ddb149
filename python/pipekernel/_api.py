"""The Python API: thin functions over the stage registry and the session of
this process (pipekernel._core). See the package's docstring."""
import os

from . import _core, _output, quote

IMAGE_BYTES = _core.image_bytes  # 3 x 32 x 32, planar R, G, B


def run(cell):
    """Runs a cell of magic lines (`%md5 FILE`, one per line; `# comments`)
    in this process's session, the way a cell of the Pipeline kernel runs,
    showing the stages' output where this process shows output (an IPython
    kernel's display system, else the terminal). One line may leave out its
    '%'. Returns the value of the last line (%pwd, %set NAME ...) as a str,
    or None. Raises the StageError subclass of a failing line, or
    KeyboardInterrupt when interrupted (the stage has cleaned up by then).
    The GIL is released while the stages run."""
    __tracebackhide__ = True
    text = cell
    if not isinstance(text, str):
        raise TypeError(f"run() takes a str of magic lines, not {type(cell).__name__}")
    line = text.strip()
    if line and "\n" not in line and not line.startswith(("%", "#")):
        text = "%" + line
    sink = _output.sink()
    try:
        return _core.run(text, sink)
    finally:
        sink.finish()


def interrupt():
    """Asks the stage that is running (from any thread) to stop, as Ctrl-C
    does; run() then raises KeyboardInterrupt. False when nothing runs."""
    return _core.interrupt()


class Split:
    """One split of a dataset, its arrays viewing the session's memory.

    data    numpy uint8 array (n, 3072): each row an image in the files'
            planar R, G, B order; data.reshape(-1, 3, 32, 32) is the
            N x C x H x W layout of torchvision
    labels  numpy uint8 array (n,)
    n, files: as %load printed them
    hash    the fingerprint %load computed: "xxh3-128" (the default), "md5"
            (hash="md5"), or None (hash=None)
    pixels_hash, labels_hash: its hex digests as %load printed them (None
            without one); xxhash.xxh3_128_hexdigest(data.tobytes()) and
            hashlib.md5(data.tobytes()).hexdigest() give the same
    pixels_md5, labels_md5: the digests when hash is "md5", else None

    The arrays are views, not copies, and writable: a write changes the
    session's copy (what %train and %preview use). They stay valid after a
    later %load replaced the dataset (the memory lives while any view does).
    """

    __slots__ = ("n", "files", "hash", "pixels_hash", "labels_hash", "pixels_md5", "labels_md5",
                 "data", "labels")

    def __init__(self, d):
        import numpy as np
        self.n = d["n"]
        self.files = d["files"]
        self.hash = d["hash"] or None
        self.pixels_hash = d["pixels_hash"] or None
        self.labels_hash = d["labels_hash"] or None
        self.pixels_md5 = d["pixels_md5"] or None
        self.labels_md5 = d["labels_md5"] or None
        self.data = np.asarray(d["pixels"])
        self.labels = np.asarray(d["labels"])

    def __len__(self):
        return self.n

    def __repr__(self):
        return f"<Split: {self.n} images from {self.files} files>"


class Dataset:
    """A dataset of the session, as dataset() found it.

    name, root (the cifar-10-batches-py folder), train and test (Split, or
    None for a split that was not loaded), classes (the label names from
    batches.meta as a list of str, or None).
    """

    __slots__ = ("name", "root", "classes", "train", "test")

    def __init__(self, d):
        self.name = d["name"]
        self.root = d["root"]
        self.classes = d["classes"]
        self.train = Split(d["train"]) if d["train"] else None
        self.test = Split(d["test"]) if d["test"] else None

    def __repr__(self):
        parts = [f"{k} {len(s)}" for k, s in (("train", self.train), ("test", self.test)) if s]
        return f"<Dataset {self.name!r}: {', '.join(parts) or 'empty'} ({self.root})>"


def dataset(name=None):
    """The session's dataset `name` (the last one loaded when None) as a
    Dataset whose arrays view the session's memory without a copy. Raises
    StateError when there is none."""
    __tracebackhide__ = True
    return Dataset(_core.dataset(name))


def load(path, *, name="cifar10", split="all", hash="xxh3", md5=None):
    """Runs `%load PATH` (PATH: the folder holding cifar-10-batches-py/, or
    that folder) and returns the dataset it loaded. hash: "xxh3" (XXH3-128,
    the default), "md5" (--md5) or None (--no-hash). md5=True is hash="md5"
    and md5=False is hash=None, as the argument's earlier form."""
    __tracebackhide__ = True
    if md5 is not None:
        hash = "md5" if md5 else None
    if hash not in ("xxh3", "md5", None):
        raise ValueError(f"hash must be 'xxh3', 'md5' or None, not {hash!r}")
    line = f"%load {quote(os.fspath(path))}"
    if name != "cifar10":
        line += f" --name {quote(name)}"
    if split != "all":
        line += f" --split {quote(split)}"
    if hash == "md5":
        line += " --md5"
    elif hash is None:
        line += " --no-hash"
    run(line)
    return dataset(name)


_TIMING_KEYS = ("stage", "magic", "args", "seconds", "bytes", "items", "backend", "hash", "wall",
                "cache", "fs")


def timings(frame=False):
    """The session's timing records (what %timings shows), oldest first, as a
    list of dicts with the keys stage, magic, args, seconds, bytes, items,
    backend, hash, wall (unix time at the end), cache ("cold", "warm", or ""
    for a stage that read no files) and fs (the file system read from,
    "ext4 /dev/vda"); frame=True: as a pandas
    DataFrame with those columns (pandas must be importable)."""
    rows = _core.timings()
    if not frame:
        return rows
    try:
        import pandas
    except ImportError as e:
        raise ImportError("pipekernel.timings(frame=True) needs pandas "
                          "(pip install pandas); timings() gives the records as dicts") from e
    return pandas.DataFrame(rows, columns=list(_TIMING_KEYS))


def add_timing(stage, seconds, *, magic="python", args="", bytes=0, items=0, backend="",
               hash=""):
    """Adds a timing record for work done in Python (a training loop), so
    %timings shows it beside the stages'."""
    _core.add_timing(stage, float(seconds), magic=magic, args=args, bytes=int(bytes),
                     items=int(items), backend=backend, hash=hash)


def magics():
    """(name, usage, summary) of every magic, in the registry's order."""
    return _core.magics()
