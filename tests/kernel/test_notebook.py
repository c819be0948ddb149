"""Headless notebooks: nbclient applies update_display_data, and
`jupyter nbconvert --execute` saves the final state of a progress bar."""
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def _progress_outputs(cell):
    return [o for o in cell["outputs"] if o["output_type"] == "display_data"
            and "pk-progress" in o["data"].get("text/html", "")]


def _assert_final_bar(cell, total):
    bars = _progress_outputs(cell)
    assert len(bars) == 1, cell["outputs"]
    text = bars[0]["data"]["text/plain"]
    html = bars[0]["data"]["text/html"]
    assert "done" in text and f"{total} / {total} ms" in text and "100%" in text, text
    assert 'value="1.0000"' in html and "done" in html, html


def test_nbclient_applies_display_updates():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%sleep 1.2"),
                nbformat.v4.new_code_cell("%echo after")]
    NotebookClient(nb, kernel_name="pipekernel", timeout=120).execute()
    _assert_final_bar(nb.cells[0], 1200)
    assert nb.cells[1]["outputs"][0]["text"] == "after\n"
    assert nb.metadata["language_info"]["name"] == "pipeline"


def test_smoke_notebook_nbconvert(tmp_path):
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
           "--ExecutePreprocessor.kernel_name=pipekernel", "--ExecutePreprocessor.timeout=120",
           "--output-dir", str(tmp_path), str(HERE / "smoke.ipynb")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    nb = nbformat.read(tmp_path / "smoke.ipynb", as_version=4)  # joins multi-line strings
    nbformat.validate(nb)
    cells = nb.cells
    assert "%echo [--stderr] TEXT" in "".join(cells[0]["outputs"][0]["text"])
    assert "".join(cells[1]["outputs"][0]["text"]) == "hello, pipeline\n"
    _assert_final_bar(cells[2], 1500)
    assert "<b>bold</b>" in "".join(cells[3]["outputs"][0]["data"]["text/html"])
    assert "text/markdown" in cells[4]["outputs"][0]["data"]
    res = cells[5]["outputs"][0]
    assert res["output_type"] == "execute_result" and res["data"]["text/plain"] == "pipeline"
    assert [c["execution_count"] for c in cells] == [1, 2, 3, 4, 5, 6]
    # and the executed notebook exports to HTML with the bar's final state
    p = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html",
                        str(tmp_path / "smoke.ipynb")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    html = (tmp_path / "smoke.html").read_text()
    assert "pk-progress" in html and "done" in html
