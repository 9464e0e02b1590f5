"""A real browser: JupyterLab + headless Chromium run an analysis notebook with its widgets live.

Checks what only a browser shows: the widgets render (the widget manager is
installed and the frontend can draw them) and moving the epoch slider sends a
new figure. Needs Debian's chromium (.ci/run installs it); without it the test
fails rather than skips, so CI cannot pass by accident.
"""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import papermill
import pytest
from analysis_fixtures import make_study

CHROMIUM = "/usr/bin/chromium"
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "11_loss_distributions.ipynb"
IMAGE = ".widget-image"
DIGEST = """async img => {  // SHA-256 of the figure's PNG, so a new blob URL with the same picture does not count
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const hash = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(hash), b => b.toString(16).padStart(2, "0")).join("");
}"""

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, server, log: Path, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the server did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def served(argv: list, ready_url: str, root: Path, env: dict | None = None):
    """A Jupyter server (JupyterLab or Voila) started from `argv`, its config, runtime files and log under `root`;
    yields its log once `ready_url` answers, then stops it and the kernels it started."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: install it with `apt-get install chromium` (.ci/run does)")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / "config"), "JUPYTER_RUNTIME_DIR": str(root / "rt"),
           **(env or {})}
    log = root / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_for_server(ready_url, server, log)
        yield log
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


@contextlib.contextmanager
def jupyter_lab(root: Path, notebook: str, env: dict | None = None):
    """JupyterLab serving `root`; yields (the URL that opens `notebook`, the server log)."""
    port, token = _free_port(), secrets.token_hex(16)
    argv = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
            "--allow-root", f"--LabApp.workspaces_dir={root / 'workspaces'}", "--LabApp.expose_app_in_browser=True"]
    with served(argv, f"http://127.0.0.1:{port}/api/status?token={token}", root, env) as log:
        yield f"http://127.0.0.1:{port}/lab/tree/{notebook}?token={token}", log


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving tmp_path (with a fake study and the notebook set to interactive); shut down after."""
    study = make_study(tmp_path / "data", methods=("ce", "dividemix"), seeds=(0,), epochs=4)
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / NOTEBOOK.name), prepare_only=True,
                               parameters={"study_dir": str(study), "interactive": True}, kernel_name="python3")
    with jupyter_lab(tmp_path, NOTEBOOK.name) as served_lab:
        yield served_lab


def test_widgets_render_and_the_slider_changes_the_figure(lab, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    url, log = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.locator(".jp-Notebook").wait_for()
            try:  # JupyterLab may ask which kernel to start: the notebook's own, python3
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=10_000)
            except PlaywrightTimeout:
                pass
            page.wait_for_function("window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status"
                                   " === 'idle'")
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")  # no waiting
            image = page.locator(IMAGE).first
            try:
                image.wait_for(state="visible", timeout=90_000)
            finally:
                page.screenshot(path=str(tmp_path / "lab.png"))
            assert page.get_by_text("Error displaying widget").count() == 0
            assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
            before = image.evaluate(DIGEST)

            handle = page.locator(".widget-slider .noUi-handle").first
            handle.focus()
            handle.press("End")  # the last recorded epoch
            end = time.monotonic() + 30
            while image.evaluate(DIGEST) == before:
                assert time.monotonic() < end, "moving the epoch slider did not change the figure within 30 s"
                time.sleep(0.5)
            assert page.locator(".widget-readout").first.inner_text().strip() == "4"
            image.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "widget.png"))
        finally:
            browser.close()
    assert (tmp_path / "widget.png").stat().st_size > 10_000
