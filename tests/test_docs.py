"""docs/: the committed magic reference is what the registry generates
(`make docs` rewrites it), every magic is on the README's list, and every
relative link of the README and docs/ leads to a file and heading that
exist."""
import re
import subprocess

from pkutil import PK_BIN, ROOT

DOCS = ROOT / "docs"


def generated():
    p = subprocess.run([str(PK_BIN), "help", "--markdown"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def registry_names():
    p = subprocess.run([str(PK_BIN), "run", "--list"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return [line.split()[0] for line in p.stdout.splitlines()]


def test_magics_md_is_generated_from_the_registry(pk_bin):
    want = generated()
    have = (DOCS / "magics.md").read_text()
    if have != want:
        a, b = have.splitlines(), want.splitlines()
        i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
        raise AssertionError(
            "docs/magics.md is stale: run `make docs` and commit it. First difference at "
            f"line {i + 1}:\n  committed: {a[i] if i < len(a) else '(end)'}\n"
            f"  generated: {b[i] if i < len(b) else '(end)'}")


def test_generated_reference_has_every_magic_and_option(pk_bin):
    md = generated()
    for name in registry_names():
        assert f"\n### {name}\n" in md, name
    assert "| `--to PATH` | where to write" in md            # metavar and help
    assert "paper:&lt;run&gt;" in md                         # no stray HTML
    assert "`--mode copy\\|inplace`" in md                  # a table cell stays one cell


def test_readme_lists_every_magic(pk_bin):
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in registry_names() if not re.search(rf"`{re.escape(n)}\b", readme)]
    assert not missing, f"magics not on the README's list: {missing}"


def anchors(md):
    """The heading anchors of a Markdown file, as GitHub makes them."""
    seen, out = {}, set()
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    for h in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_relative_links_resolve():
    bad = []
    for md in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = md if not path else md.parent / path
            if not dest.exists():
                bad.append(f"{md.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{md.relative_to(ROOT)}: {target} (no such heading)")
    assert not bad, "broken links:\n" + "\n".join(bad)
