"""The classroom lesson: per-epoch training headless (memorisation at noise 0.6 shows in the numbers), Stop,
papermill running notebooks/00_classroom.ipynb in batch, and headless Chromium pressing Train and Stop in
JupyterLab and on the page Voila serves. Everything is tiny: together about two and a half minutes on a 2-core
CPU."""

import hashlib
import re
import sys
import threading
import time
from pathlib import Path

import nbformat
import papermill
import pytest

from nbstudy import classroom, figures
from nbstudy.errors import NbstudyError

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00_classroom.ipynb"
TINY = {"dataset_options": {"num_classes": 2, "per_class": 16, "test_per_class": 8}, "resolution": 16,
        "batch_size": 8, "val_fraction": 0.0}
TINY_PRETRAIN = {"epochs": 1, "batch_size": 16}


def test_notebook_is_committed_without_outputs_and_has_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])


@pytest.mark.parametrize("bad, named", [({"noise_rate": 1.5}, "noise_rate=1.5"), ({"init": "nope"}, "init='nope'"),
                                        ({"method": "mixup"}, "method='mixup'"), ([1], "[1]")])
def test_bad_lesson_parameters_are_one_line_errors(bad, named):
    with pytest.raises(NbstudyError) as e:
        classroom.lesson_params(bad)
    assert named in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_ce_at_noise_06_fits_the_wrong_labels_while_test_accuracy_falls(one_torch_thread):
    """Seed 0, 50 images per class, 12 epochs, one torch thread: measured peak 0.79 at epoch 5, last 0.63."""
    live, frames = classroom.LiveFigure(), []

    def on_epoch(run):
        live.update(run)
        frames.append(hashlib.sha256(live.png()).hexdigest())

    run = classroom.train_live(dataset_options={"num_classes": 2, "per_class": 50, "test_per_class": 50},
                               epochs=12, val_fraction=0.0, method="ce", noise_rate=0.6, seed=0, device="cpu",
                               on_epoch=on_epoch)
    hist = run.table()
    assert list(hist.index) == list(range(1, 13)) and not run.stopped
    assert hist[["train_acc_given", "train_acc_true", "test_acc", "wrong_fitted"]].stack().between(0, 1).all()
    best, last = run.best(), run.history[-1]
    at_best = run.history[best["epoch"] - 1]
    assert best["epoch"] < last["epoch"] and last["test_acc"] <= best["test_acc"] - 0.05   # test falls after its peak
    assert last["train_acc_given"] >= at_best["train_acc_given"] + 0.03                   # while fitting given labels
    assert last["wrong_fitted"] > at_best["wrong_fitted"]                                 # ... the wrong ones too
    assert len(set(frames)) == 12   # one figure, redrawn with every epoch
    text = classroom.story([run])
    fall = 100 * (best["test_acc"] - last["test_acc"])
    assert f"peaked at {100 * best['test_acc']:.1f}% at epoch {best['epoch']} and fell {fall:.1f} points" in text


@pytest.mark.slow
def test_stop_ends_between_epochs_and_the_same_seed_gives_the_same_numbers(one_torch_thread):
    def stopped_after_two():
        stop = threading.Event()
        return classroom.train_live(TINY, epochs=5, device="cpu", stop=stop,
                                    on_epoch=lambda run: run.done == 2 and stop.set())

    first, second = stopped_after_two(), stopped_after_two()
    assert first.stopped and first.done == 2 and len(first.losses) == 2
    assert "stopped after epoch 2 of 5" in classroom.story([first])
    numbers = lambda run: [{k: v for k, v in r.items() if k != "seconds"} for r in run.history]  # noqa: E731
    assert numbers(first) == numbers(second)
    assert all((a == b).all() for a, b in zip(first.losses, second.losses))


@pytest.mark.slow
def test_the_lesson_runs_under_papermill_and_states_what_its_runs_did(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: one thread is fastest on a shared CPU
    out = tmp_path / "lesson"
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(executed), kernel_name="python3", cwd=str(tmp_path),
                               progress_bar=False, parameters={"interactive": False, "lesson": {**TINY, "epochs": 3},
                                                               "pretrain": TINY_PRETRAIN, "output_dir": str(out)})
    live, replay = figures.load(out, "live"), figures.load(out, "replay")
    assert live["label"] == "ce, random init" and [h["epoch"] for h in live["history"]] == [1, 2, 3]
    assert [r["label"] for r in replay["runs"]] == ["ce, random init", "ce, rotation (pretrained live) init"]
    assert replay["runs"][0]["history"] == live["history"]   # same parameters and seed, same numbers
    assert figures.load(out, "noise_symmetric_0.6")["rate"] == 0.6
    assert len(list(out.glob("pretrain_rotation_*/backbone.pt"))) == 1
    closing = "".join(o.get("text", "") for o in nbformat.read(executed, as_version=4).cells[-1].outputs)
    best = max(live["history"], key=lambda h: h["test_acc"])
    assert f"{100 * best['test_acc']:.1f}%" in closing and "against ce, random init, same noise" in closing


def _interactive_lesson(folder) -> Path:
    """The lesson set to a tiny interactive run, in `folder`."""
    path = folder / NOTEBOOK.name
    papermill.execute_notebook(str(NOTEBOOK), str(path), prepare_only=True, kernel_name="python3",
                               parameters={"interactive": True, "lesson": {**TINY, "epochs": 60},
                                           "pretrain": TINY_PRETRAIN, "output_dir": str(folder / "lesson")})
    return path


@pytest.fixture
def classroom_lab(tmp_path):
    """JupyterLab serving tmp_path with the lesson set to a tiny interactive run; shut down after."""
    from test_browser import jupyter_lab

    _interactive_lesson(tmp_path)
    with jupyter_lab(tmp_path, NOTEBOOK.name, env={"OMP_NUM_THREADS": "1"}) as (url, _):
        yield url


def _train_then_stop(page, tmp_path) -> None:
    """Press Train, see the live figure change three times and the numbers appear; press Stop, see it stop."""
    from test_browser import DIGEST

    train = page.locator(".widget-button", has_text="Train")
    train.scroll_into_view_if_needed()
    train.click()

    image, status = page.locator(".nbstudy-live img, img.nbstudy-live").first, page.locator(".nbstudy-status")
    seen, end = [], time.monotonic() + 60
    while len(seen) < 4:   # the first figure, then three changes
        assert time.monotonic() < end, f"the live figure changed only {len(seen) - 1} times in 60 s"
        if image.count() and image.evaluate("img => img.complete && img.naturalWidth > 0"):
            digest = image.evaluate(DIGEST)
            if not seen or digest != seen[-1]:
                seen.append(digest)
        time.sleep(0.05)
    assert re.search(r"epoch \d+/60 · train acc given labels [01]\.\d\d · true labels [01]\.\d\d · "
                     r"test [01]\.\d\d", status.inner_text())

    page.locator(".widget-button", has_text="Stop").click()
    page.wait_for_function("el => el.innerText.includes('stopped after epoch')", arg=status.element_handle(),
                           timeout=30_000)
    stopped_at = int(re.search(r"stopped after epoch (\d+)", status.inner_text()).group(1))
    assert 3 <= stopped_at < 60
    after = image.evaluate(DIGEST)
    time.sleep(2)   # several epochs' time: a run still going would have redrawn by now
    assert image.evaluate(DIGEST) == after and f"stopped after epoch {stopped_at}" in status.inner_text()
    assert page.locator(".widget-button", has_text="Train").is_enabled()
    page.screenshot(path=str(tmp_path / "stopped.png"))


def _chromium(p):
    from test_browser import CHROMIUM

    return p.chromium.launch(executable_path=CHROMIUM, headless=True,
                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_train_updates_the_live_figure_and_stop_stops_it(classroom_lab, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(classroom_lab)
            page.locator(".jp-Notebook").wait_for()
            try:  # JupyterLab may ask which kernel to start: the notebook's own, python3
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=10_000)
            except PlaywrightTimeout:
                pass
            page.wait_for_function("window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status"
                                   " === 'idle'")
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            train = page.locator(".widget-button", has_text="Train")
            try:
                train.wait_for(state="visible", timeout=90_000)
            finally:
                page.screenshot(path=str(tmp_path / "lab.png"))
            assert page.get_by_text("Error displaying widget").count() == 0
            page.wait_for_function("window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status"
                                   " === 'idle'")   # every cell has run: the kernel is free for the buttons
            assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0
            _train_then_stop(page, tmp_path)
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_the_lesson_served_as_a_page_by_voila_trains_and_stops(tmp_path):
    """`voila notebooks/00_classroom.ipynb` (README, Teaching with nbstudy): the page runs the lesson and its
    Train / Stop work as in JupyterLab."""
    from playwright.sync_api import sync_playwright
    from test_browser import _free_port, served

    lesson, port = _interactive_lesson(tmp_path), _free_port()
    argv = [sys.executable, "-m", "voila", str(lesson), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
            "--ServerApp.port_retries=0"]
    # a static file answers once the server is up; the page itself would start a kernel and run the lesson
    with served(argv, f"http://127.0.0.1:{port}/voila/static/voila.js", tmp_path, env={"OMP_NUM_THREADS": "1"}):
        with sync_playwright() as p:
            browser = _chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.set_default_timeout(90_000)
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator(".widget-button", has_text="Train").wait_for(state="visible")
                assert page.get_by_text("Error displaying widget").count() == 0
                assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0
                _train_then_stop(page, tmp_path)
            finally:
                browser.close()

