#!/usr/bin/env python3
"""lint.py -- the calls and forms the code does not use, as a check.

    tools/lint.py [FILE...]      (default: kernel/ stages/ cli/ tests/*.c)

Fails (exit status 1, one "file:line: what" per finding) on
  - a banned libc call: sprintf, vsprintf, strcpy, strcat, strtok, atoi,
    atol, gets (snprintf, memcpy with a checked length, strtoll and
    getline instead);
  - an assignment inside the condition of an if, while or do-while, even in
    the doubled parentheses that silence -Wparentheses: assign first, then
    test (`n = read(...); if (n <= 0)`); for (;;) headers are not
    conditions and may assign;
  - in stages/, an include of ZeroMQ or of a kernel/ header, or of jansson
    outside the files stages/lib/stage.h names (JANSSON_STAGES).
Comments, string and character literals are blanked before the checks, so
text that merely names a call is not a finding.

CONDITIONS_PENDING names the files whose conditions still assign (the long
stage entry points and kernel files due to be rewritten as step chains, and
the S3 room's files); their conditions are not checked. A file on the list
that is clean, or gone, is a finding too, so the list only shrinks.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BANNED = ("sprintf", "vsprintf", "strcpy", "strcat", "strtok", "atoi", "atol", "gets")
BANNED_RE = re.compile(r"(?<![\w.>])(" + "|".join(BANNED) + r")\s*\(")
# '=' that is an assignment: not part of == != <= >=; compound ones count.
JANSSON_STAGES = {"stages/report/timings.c", "stages/train/train.c"}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
CONDITIONS_PENDING: set = set()
ASSIGN_RE = re.compile(r"(?<![=!<>])(?:[-+*/%&|^]|<<|>>)?=(?!=)")


def default_files():
    files = []
    for d in ("kernel", "stages", "cli"):
        files += sorted(p for p in (ROOT / d).rglob("*") if p.suffix in (".c", ".h", ".cu"))
    files += sorted((ROOT / "tests").glob("*.c"))
    return files


def blank(src):
    """src with comments, strings and char literals replaced by spaces
    (newlines kept, so offsets and line numbers stay)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", src[i + 1:j - 1]) + (src[j - 1] if j - 1 > i else ""))
            i = j
            continue
        else:
            out.append(c)
            i += 1
            continue
        out.append(re.sub(r"[^\n]", " ", src[i:j]))
        i = j
    return "".join(out)


def conditions(code):
    """(offset, text) of each if/while condition, the outer parentheses
    stripped."""
    for m in re.finditer(r"(?<!#)\b(if|while)\s*\(", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"(": 1, ")": -1}.get(code[j], 0)
            j += 1
        yield m.end(), code[m.end():j - 1]


def lint(path):
    src = path.read_text(errors="replace")
    code = blank(src)
    if ROOT in path.parents:
        rel = path.relative_to(ROOT).as_posix()
    else:  # a file elsewhere (the linter's own tests): from its stages/ part on
        parts = path.parts
        rel = "/".join(parts[parts.index("stages"):]) if "stages" in parts else path.as_posix()
    found = []

    def line(off):
        return code.count("\n", 0, off) + 1

    for m in BANNED_RE.finditer(code):
        found.append((line(m.start()), f"{m.group(1)}() is banned (see tools/lint.py)"))
    if str(rel).startswith("stages/"):
        for m in INCLUDE_RE.finditer(src):
            inc = m.group(1)
            if inc == "zmq.h" or "kernel/" in inc:
                found.append((line(m.start()), f"a stage includes <{inc}> (stage.h: never)"))
            elif inc == "jansson.h" and str(rel) not in JANSSON_STAGES:
                found.append((line(m.start()), "jansson in a stage stage.h does not name"))
    pending = str(rel) in CONDITIONS_PENDING
    assigns = 0
    for off, cond in conditions(code):
        # '=' alone (or compound) inside a condition is an assignment: C
        # has no other use for it there
        a = ASSIGN_RE.search(cond)
        if a:
            assigns += 1
            if not pending:
                found.append((line(off + a.start()), "assignment in a condition"))
    if pending and not assigns:
        found.append((1, "no assignment in a condition left: take it off CONDITIONS_PENDING"))
    return [f"{rel}:{ln}: {what}" for ln, what in sorted(set(found))]


def main(argv):
    files = [pathlib.Path(a).resolve() for a in argv] or default_files()
    problems = []
    if not argv:
        problems += [f"{p}:1: no such file: take it off CONDITIONS_PENDING"
                     for p in sorted(CONDITIONS_PENDING) if not (ROOT / p).exists()]
    for f in files:
        problems += lint(f)
    for p in problems:
        print(p)
    if problems:
        print(f"lint: {len(problems)} finding(s) in {len(files)} files", file=sys.stderr)
        return 1
    print(f"lint: {len(files)} files clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
