"""tools/lint.py (`make lint`): the C sources use no banned call and no
assignment in a condition, and the checker finds both where they are code
and not where they are only text."""
import subprocess
import sys

from pkutil import ROOT

LINT = ROOT / "tools" / "lint.py"


def lint(*files):
    return subprocess.run([sys.executable, str(LINT), *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def test_the_tree_is_clean():
    p = lint()
    assert p.returncode == 0, p.stdout + p.stderr


def test_findings_are_code_not_text(tmp_path):
    f = tmp_path / "x.c"
    f.write_text(
        '/* sprintf(buf, "x") and if (a = b) in a comment */\n'
        'static const char *s = "strcpy(a, b) if (a = b)";\n'
        "int f(char *d, const char *s2, int a, int b) {\n"
        "  if (a == b || a <= b || a >= b || a != b) return 0;\n"
        "  for (a = 0; a < b; a++) {}\n"
        "  while ((a = b)) {}\n"
        "  if (d[0] != 'x') a += 1;\n"
        "  strcat(d, s2);\n"
        "  do { a--; } while (a >>= 1);\n"
        "#if (1 == 1)\n"
        "#endif\n"
        "  return atoi(s2) + snprintf(d, 4, \"%d\", a);\n"
        "}\n")
    p = lint(f)
    assert p.returncode == 1
    found = sorted(line.split(":", 2)[1] + ":" + line.split(": ", 1)[1]
                   for line in p.stdout.splitlines())
    assert found == sorted([
        "6:assignment in a condition",
        "8:strcat() is banned (see tools/lint.py)",
        "9:assignment in a condition",
        "12:atoi() is banned (see tools/lint.py)",
    ]), p.stdout


def test_stage_includes(tmp_path):
    room = tmp_path / "stages" / "data"
    room.mkdir(parents=True)
    f = room / "x.c"
    f.write_text('#include <zmq.h>\n#include "../../kernel/wire.h"\n#include <jansson.h>\n'
                 '#include "lib/stage.h"\n/* #include <zmq.h> in a comment is still a line */\n')
    p = lint(f)
    assert p.returncode == 1
    assert [line.split(":")[1] for line in p.stdout.splitlines()] == ["1", "2", "3"], p.stdout
