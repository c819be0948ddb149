"""stages/lib/limits.h and the table of docs/limits.md list the same limits,
with the same defaults, and every limit is used by the code."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def header_limits():
    src = (ROOT / "stages" / "lib" / "limits.h").read_text()
    return dict(re.findall(r"^#define (PK_LIMIT_\w+) (.+?)\s*/\*", src, re.M))


def doc_limits():
    text = (ROOT / "docs" / "limits.md").read_text()
    return dict(re.findall(r"^\| `(PK_LIMIT_\w+)` \| ([^|]+?) \|", text, re.M))


def value(expr):
    return eval(re.sub(r"(\d+)(?:ull|LL|u)\b", r"\1", expr))  # noqa: S307 (our own header)


def doc_value(text):
    m = re.fullmatch(r"([\d,]+)(?: (KiB|MiB|GiB|TiB))?", text.strip())
    assert m, f"docs/limits.md value {text!r} is not 'N' or 'N KiB|MiB|GiB|TiB'"
    n = int(m.group(1).replace(",", ""))
    return n << {"KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40, None: 0}[m.group(2)]


def test_docs_list_every_limit_with_its_default():
    h, d = header_limits(), doc_limits()
    assert h, "no limits parsed from stages/lib/limits.h"
    assert sorted(h) == sorted(d), (
        f"only in limits.h: {sorted(set(h) - set(d))}; "
        f"only in docs/limits.md: {sorted(set(d) - set(h))}")
    for name, expr in h.items():
        assert value(expr) == doc_value(d[name]), (
            f"{name}: limits.h {expr}, docs/limits.md {d[name]}")


def test_every_limit_is_used():
    code = ""
    for d in ("kernel", "stages", "cli"):
        for f in sorted((ROOT / d).rglob("*")):
            if f.suffix in (".c", ".h", ".cu") and f.name != "limits.h":
                code += f.read_text(errors="replace")
    unused = [n for n in header_limits() if not re.search(rf"\b{n}\b", code)]
    assert not unused, f"limits defined but never used: {unused}"
