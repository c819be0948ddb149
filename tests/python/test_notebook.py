"""notebooks/python_bridge.ipynb executed headless with nbclient on the
.venv's python3 kernel (ipykernel), as nbconvert --execute does: no error,
the preview, table and chart outputs there, the tutorial's training loop on
the arrays, and the progress bars in their final state."""
import re

import nbformat
import pytest
from nbclient import NotebookClient

import pyext
from pkutil import ROOT


@pytest.mark.slow
def test_python_bridge_notebook(package, tmp_path, monkeypatch):
    for k, v in pyext.env({"WORK": str(tmp_path / "work"), "TRAIN_BATCHES": "2",
                           "IMAGES_PER_BATCH": "1000", "EPOCHS": "1",
                           "LOG_EVERY": "100"}).items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(ROOT / "notebooks" / "python_bridge.ipynb", as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    NotebookClient(nb, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "python_bridge.ipynb")
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outs if o.output_type == "error"]
    assert not errors, errors[0]
    text = "".join(o.get("text", "") for o in outs if o.output_type == "stream")
    data = [o.get("data", {}) for o in outs]
    html = [d.get("text/html", "") for d in data]
    for h in html:
        if "pk-progress" in h:
            assert 'data-state="done"' in h, h[:300]
    assert any("pk-progress" in h for h in html)
    assert any("image/png" in d and "train images" in d.get("text/plain", "") for d in data)  # preview
    assert any("<table" in h and "integrity" in h and "train" in h for h in html)  # %timings
    assert any("image/svg+xml" in d for d in data)  # the chart
    assert "same memory as the session's block: True" in text
    assert re.search(r"\[1, +100\] loss: \d\.\d{3}", text), text[-2000:]
    assert "Finished Training" in text
    assert re.search(r"Accuracy of the network on the 1000 test images: \d+ %", text), text[-1000:]
    frame = [d for d in data if "text/html" in d and "torch-" in d["text/html"]
             and "<table" in d["text/html"]]
    assert frame  # pipekernel.timings(frame=True), with the PyTorch loop's record
