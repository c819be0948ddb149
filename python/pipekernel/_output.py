"""Where a stage's output goes: the sinks pipekernel._core.run hands it to,
on the thread that called run, one call per piece, in order.

KernelSink, inside an IPython kernel (ipykernel: Jupyter, nbclient,
papermill): text to sys.stdout / sys.stderr, displays through
IPython.display with their display ids, progress as a display of its own
updated in place (the HTML bar and text line of the Pipeline kernel), the
pager for help, clear_output, input() for %input.

TerminalSink, anywhere else (a script, terminal IPython): text as above,
the text/plain of a display, progress as one line on stderr redrawn in
place on a terminal (only the final state otherwise), as
`pipekernel run` shows it.
"""
import base64
import codecs
import getpass
import html
import json
import sys

_JSON = ("application/json",)


def _is_json(t):
    return t in _JSON or t.endswith("+json")


def _is_text(t):
    return (t.startswith("text/") or t == "image/svg+xml" or t == "application/javascript"
            or _is_json(t))


def bundle(items):
    """(data, metadata) of a display from (type, bytes, width, height) items,
    as the kernel encodes them: text as str, JSON parsed, binary as base64."""
    data, meta = {}, {}
    for mime, raw, width, height in items:
        if "/" not in mime:
            continue
        value = None
        if _is_json(mime):
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
        if value is None:
            value = (raw.decode("utf-8", "replace") if _is_text(mime)
                     else base64.b64encode(raw).decode("ascii"))
        data[mime] = value
        size = {}
        if width > 0:
            size["width"] = width
        if height > 0:
            size["height"] = height
        if size:
            meta[mime] = size
    data.setdefault("text/plain", "")
    return data, meta


def progress_text(p):
    """The text line of a progress report, as the kernel writes it."""
    pct = f"{p['frac'] * 100:3.0f}% " if p["total"] or p["state"] == "done" else ""
    rate = f", {p['rate']}" if p["rate"] else ""
    state = "" if p["state"] == "running" else f", {p['state']}"
    return f"{p['label']} [{p['bar']}] {pct}{p['amount']}{rate} {p['elapsed']:.1f} s{state}"


_COLOR = {"failed": "#c62828", "interrupted": "#ef6c00", "done": "#2e7d32", "running": "#1565c0"}


def progress_html(p):
    """The HTML bar of a progress report, the markup of the kernel's."""
    determinate = p["total"] or p["state"] == "done"
    pct = f"{p['frac'] * 100:3.0f}% " if determinate else ""
    rate = f", {p['rate']}" if p["rate"] else ""
    state = "" if p["state"] == "running" else f", {p['state']}"
    value = f' value="{p["frac"]:.4f}" max="1"' if determinate else ""
    color = _COLOR[p["state"]]
    tail = html.escape(f"{pct}{p['amount']}{rate}, {p['elapsed']:.1f} s{state}")
    return (f'<div class="pk-progress" data-state="{p["state"]}" style="font-family:monospace">'
            f'<span>{html.escape(p["label"])}</span> <progress{value} style="width:20em;'
            f'vertical-align:middle;accent-color:{color}"></progress> '
            f'<span style="color:{color}">{tail}</span></div>')


class _Streams:
    """Text to sys.stdout / sys.stderr, decoded as UTF-8 across pieces (a
    character split between two writes comes out whole), the other stream
    flushed first when the stream changes, so their order holds."""

    def __init__(self):
        self._dec = {1: codecs.getincrementaldecoder("utf-8")("replace"),
                     2: codecs.getincrementaldecoder("utf-8")("replace")}
        self._last = None

    @staticmethod
    def _file(stream):
        return sys.stderr if stream == 2 else sys.stdout

    def write(self, stream, data):
        text = self._dec[stream].decode(data)
        if self._last is not None and self._last != stream:
            self._file(self._last).flush()
        self._last = stream
        if text:
            self._file(stream).write(text)

    def flush(self):
        for stream, dec in self._dec.items():
            tail = dec.decode(b"", final=True)
            if tail:
                self._file(stream).write(tail)
        for stream in (1, 2):
            try:
                self._file(stream).flush()
            except (OSError, ValueError):
                pass


class KernelSink(_Streams):
    def __init__(self):
        super().__init__()
        self._shown = set()

    def display(self, items, display_id, update):
        from IPython.display import display, update_display
        data, meta = bundle(items)
        self.flush_streams()
        if update and display_id:
            update_display(data, raw=True, metadata=meta, display_id=display_id)
        elif display_id:
            display(data, raw=True, metadata=meta, display_id=display_id)
        else:
            display(data, raw=True, metadata=meta)

    def progress(self, p):
        from IPython.display import display, update_display
        data = {"text/html": progress_html(p), "text/plain": progress_text(p)}
        self.flush_streams()
        if p["id"] in self._shown:
            update_display(data, raw=True, display_id=p["id"])
        else:
            self._shown.add(p["id"])
            display(data, raw=True, display_id=p["id"])

    def clear(self, wait):
        from IPython.display import clear_output
        clear_output(wait=bool(wait))

    def page(self, text):
        from IPython.core import page
        page.page(text)

    def input(self, prompt, password):
        self.flush_streams()
        return getpass.getpass(prompt) if password else input(prompt)

    def flush_streams(self):
        for f in (sys.stdout, sys.stderr):
            f.flush()

    def finish(self):
        self.flush()


class TerminalSink(_Streams):
    def __init__(self):
        super().__init__()
        try:
            self._tty = sys.stderr.isatty()
        except (AttributeError, ValueError):
            self._tty = False
        self._line = False  # a progress line is on the terminal

    def _end_line(self):
        if self._line:
            sys.stderr.write("\n")
            self._line = False

    def write(self, stream, data):
        self._end_line()
        super().write(stream, data)

    def display(self, items, display_id, update):
        if update:  # a terminal shows a display once
            return
        self._end_line()
        for mime, raw, _, _ in items:
            if mime == "text/plain":
                text = raw.decode("utf-8", "replace")
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()

    def progress(self, p):
        line = progress_text(p)
        if self._tty:
            sys.stderr.write("\r" + line + "\033[K")
            self._line = True
            if p["state"] != "running":
                self._end_line()
        elif p["state"] != "running":
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def clear(self, wait):
        pass

    def page(self, text):
        self._end_line()
        sys.stdout.write(text if text.endswith("\n") else text + "\n")

    def input(self, prompt, password):
        self._end_line()
        return getpass.getpass(prompt) if password else input(prompt)

    def finish(self):
        self._end_line()
        self.flush()


def sink():
    """The sink for this process: KernelSink inside an IPython kernel."""
    ip = None
    if "IPython" in sys.modules:
        try:
            from IPython import get_ipython
            ip = get_ipython()
        except ImportError:
            ip = None
    if ip is not None and getattr(ip, "kernel", None) is not None:
        return KernelSink()
    return TerminalSink()
