"""JupyterLab 4 in headless Chromium (Playwright driving Debian's chromium):
open cifar10_pipeline.ipynb, run all cells, wait for the kernel to go idle,
and check that the preview image, the timing table and the chart are shown
and that no cell shows an error. A screenshot is saved under
build/screenshots/ for a person to look at."""
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pkutil import BUILD, ROOT, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def lab(tmp_path):
    port = free_port()
    token = "pk-test-token"
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    shutil.copy(ROOT / "notebooks" / "cifar10_pipeline.ipynb", nbdir)
    # 20,000 training images: about a second of training, and a confusion
    # table well above chance in the screenshot (about 48 % after one epoch)
    env = dict(os.environ, WORK=str(tmp_path / "work"), TRAIN_BATCHES="4",
               IMAGES_PER_BATCH="5000", EPOCHS="1", LOG_EVERY="1000",
               JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    # no "news" prompt over the page
    labcfg = tmp_path / "cfg" / "labconfig"
    labcfg.mkdir(parents=True)
    (labcfg / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}')
    jupyter = Path(os.environ.get("PK_JUPYTER", Path(os.sys.executable).parent / "jupyter"))
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={nbdir}",
         "--ServerApp.open_browser=False", "--allow-root",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except Exception:
                if proc.poll() is not None:
                    pytest.fail("jupyter lab exited:\n" + proc.stdout.read().decode())
                time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not answer")
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_jupyterlab_runs_pipeline_notebook(lab):
    from playwright.sync_api import sync_playwright

    base, token = lab
    shots = BUILD / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            run_all_and_check(page, base, token, shots)
        except Exception:
            page.screenshot(path=str(shots / "cifar10_pipeline-failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def run_all_and_check(page, base, token, shots):
    if True:
        page.goto(f"{base}/lab/tree/cifar10_pipeline.ipynb?token={token}")
        # the kernel is up when the toolbar shows "Pipeline (C)" and idle
        page.wait_for_selector(".jp-Notebook", timeout=60000)
        page.wait_for_selector("text=Pipeline (C)", timeout=60000)
        page.wait_for_function(
            "() => document.querySelector('.jp-Notebook-ExecutionIndicator')"
            "?.getAttribute('data-status') === 'idle'", timeout=60000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        # done: every code cell has run ([n]), none is running ([*]), kernel idle
        page.wait_for_function(
            """() => {
                const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                const st = document.querySelector('.jp-Notebook-ExecutionIndicator');
                return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent))
                    && st && st.getAttribute('data-status') === 'idle';
            }""", timeout=900000, polling=500)
        news = page.get_by_role("button", name="No", exact=True)
        if news.count():
            news.first.click()
        page.screenshot(path=str(shots / "cifar10_pipeline-top.png"))
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        assert errors.count() == 0, errors.first.inner_text()
        # the preview PNG, the timing table, the chart (SVG or its PNG)
        imgs = page.locator(".jp-OutputArea-output img")
        assert imgs.count() >= 1
        pngs = [imgs.nth(i).get_attribute("src") or "" for i in range(imgs.count())]
        assert any(s.startswith("data:image/png") for s in pngs), pngs[:3]
        svg = page.locator(".jp-OutputArea-output[data-mime-type='image/svg+xml']")
        assert svg.count() >= 1
        table = page.locator(".jp-OutputArea-output table:has-text('integrity')")
        assert table.count() >= 1
        table.last.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "cifar10_pipeline.png"), full_page=True)
