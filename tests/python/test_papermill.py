"""Plain `papermill` (its own command) on notebooks of the Pipeline kernel:
the package's entry point makes papermill register the "pipeline"
translator, so `-p NAME VALUE` becomes `%set NAME=value` lines after the
notebook's parameters cell."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import pyext
from pkutil import ROOT

PAPERMILL = Path(sys.executable).parent / "papermill"


def papermill(*args, cwd, timeout=600):
    p = subprocess.run([str(PAPERMILL), *map(str, args)], cwd=cwd, env=pyext.env(),
                       capture_output=True, text=True, timeout=timeout)
    pyext.check_sanitizers(p.stderr)
    return p


def text_of(nb):
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.output_type == "stream":
                parts.append(o.text)
            elif "text/plain" in o.get("data", {}):
                parts.append(o["data"]["text/plain"])
    return "".join(parts)


def test_papermill_parameters(package, pk_bin, tmp_path):
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "pipekernel", "display_name": "Pipeline (C)", "language": "pipeline"}})
    p = nbformat.v4.new_code_cell("%set --default GREETING=hello TIMES=1 RATE=0.5")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("%echo $GREETING x$TIMES r$RATE $LIST")]
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    r = papermill(src, out, "-p", "GREETING", "it's me", "-p", "TIMES", "3", "-p", "RATE", "0.25",
                  "-y", "LIST: [a, b]", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    done = nbformat.read(out, as_version=4)
    injected = done.cells[1]
    assert "injected-parameters" in injected.metadata.tags
    assert "%set GREETING='it'\\''s me'" in injected.source
    assert "%set TIMES=3" in injected.source and "%set RATE=0.25" in injected.source
    assert text_of(done).strip().endswith("it's me x3 r0.25 a b")


def test_papermill_without_parameters_translates_nothing(package, pk_bin, tmp_path):
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "pipekernel", "display_name": "Pipeline (C)", "language": "pipeline"}})
    nb.cells = [nbformat.v4.new_code_cell("%echo plain")]
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    r = papermill(src, out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert text_of(nbformat.read(out, as_version=4)).strip() == "plain"


@pytest.mark.slow
def test_papermill_runs_the_pipeline_notebook(package, pk_bin, tmp_path):
    """The issue's command on the shipped notebook: papermill nb out -p EPOCHS 2."""
    out = tmp_path / "out.ipynb"
    r = papermill(ROOT / "notebooks" / "cifar10_pipeline.ipynb", out, "-p", "EPOCHS", "2",
                  "-p", "TRAIN_BATCHES", "1",
                  "-p", "IMAGES_PER_BATCH", "400", "-p", "LOG_EVERY", "50", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    done = nbformat.read(out, as_version=4)
    assert any("%set EPOCHS=2" in c.source for c in done.cells if c.cell_type == "code")
    text = text_of(done)
    assert "[2,    50] loss:" in text, text[-2000:]  # the second epoch ran
