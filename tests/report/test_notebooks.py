"""The shipped notebooks, executed headless (nbclient, as nbconvert --execute
does). The saved notebook must hold what a reader needs: the preview PNG,
the timing table and chart, the training loss lines and final (not stale)
progress bars, and no error. (papermill parameters: tests/python.)"""
import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pkutil import ROOT

NB = ROOT / "notebooks"


def run_notebook(src, workdir, env=None, timeout=1200):
    nb = nbformat.read(src, as_version=4)
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="pipekernel",
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    nbformat.write(nb, workdir / src.name)
    return nb


def outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                yield cell, out


def text_of(nb):
    parts = []
    for _, o in outputs(nb):
        if o.output_type == "stream":
            parts.append(o.text)
        elif "data" in o and "text/plain" in o["data"]:
            parts.append(o["data"]["text/plain"])
    return "".join(parts)


def assert_clean(nb):
    errors = [o for _, o in outputs(nb) if o.output_type == "error"]
    assert not errors, errors[0]
    # every progress bar shows its final state in the saved notebook
    for _, o in outputs(nb):
        html = o.get("data", {}).get("text/html", "")
        if "pk-progress" in html:
            assert 'data-state="running"' not in html, html[:300]


def has_mime(nb, mime):
    return any(mime in o.get("data", {}) for _, o in outputs(nb))


@pytest.mark.slow
def test_cifar10_pipeline_headless(tmp_path):
    nb = run_notebook(NB / "cifar10_pipeline.ipynb", tmp_path,
                      env={"WORK": str(tmp_path / "work"), "TRAIN_BATCHES": "2",
                           "IMAGES_PER_BATCH": "1000", "EPOCHS": "1", "LOG_EVERY": "100"})
    assert_clean(nb)
    assert has_mime(nb, "image/png")          # preview (and chart fallback)
    assert has_mime(nb, "image/svg+xml")      # chart
    text = text_of(nb)
    assert re.search(r"\[1, +100\] loss: \d\.\d{3}", text), text[-2000:]
    assert "Accuracy of the network on the" in text
    assert "skipped (S3_URL is not set)" in text
    tables = [o["data"]["text/html"] for _, o in outputs(nb)
              if "text/html" in o.get("data", {}) and "<table" in o["data"]["text/html"]]
    assert any("integrity" in t and "total" in t for t in tables)  # the timing table
    record = json.loads((tmp_path / "work" / "timings.json").read_text())
    stages = [s["stage"] for s in record["stages"]]
    for s in ["download", "integrity", "extract", "verify", "pickled", "meta", "preview", "train"]:
        assert s in stages, stages


@pytest.mark.slow
def test_copy_vs_inplace_headless(tmp_path):
    nb = run_notebook(NB / "copy_vs_inplace.ipynb", tmp_path,
                      env={"WORK": str(tmp_path / "work"), "TRAIN_BATCHES": "2",
                           "IMAGES_PER_BATCH": "500", "EPOCHS": "1"})
    assert_clean(nb)
    text = text_of(nb)
    assert "upload: skipped" in text
    # the comparison table: both runs, per-stage ratios and a total
    cmp = [o["data"]["text/plain"] for _, o in outputs(nb)
           if "text/plain" in o.get("data", {}) and "test1 vs test2" in o["data"]["text/plain"]]
    assert cmp, text[-3000:]
    assert re.search(r"verify .*\d+\.\d\dx", cmp[0])
    assert re.search(r"total .*\d+\.\d\dx", cmp[0])
    assert has_mime(nb, "image/svg+xml")
