"""Kernels kept from run to run (nbstudy.kernels): a run in a kept kernel sees what a run in a new kernel sees.

The real runs' equivalence is tested end to end elsewhere: the smoke study through the local executor (kept
kernels) and through Ray (a kernel per run) give the same results table (tests/test_ray.py).
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from nbstudy import kernels
from nbstudy.executors import local_executor

ROOT = Path(__file__).resolve().parents[1]

FIRST = """
import os, warnings
warnings.simplefilter("ignore")   # for this run only
left_behind = 1
import matplotlib.pyplot as plt
plt.figure()
print("pid", os.getpid(), "figures", len(plt.get_fignums()))
"""
SECOND = """
import os, matplotlib.pyplot as plt
print("pid", os.getpid(), "left behind" if "left_behind" in globals() else "clean", "figures", len(plt.get_fignums()))
"""
# Python shows a warning once per place in a module (its __warningregistry__): only the reset shows it again
MODULE = 'import warnings\ndef warn():\n    warnings.warn("a warning each run should show")\n'
WARN = "import sys; sys.path.insert(0, {folder!r}); import warner; warner.warn()"
# in every run, as a fresh kernel has them: the warning filters libraries add when first imported, and __main__'s
# module attributes (multiprocessing's spawn reads __main__.__spec__)
FRESH = """
import sys, warnings, nbstudy.lnl
print("filters", len(warnings.filters), "main", all(hasattr(sys.modules["__main__"], name)
                                                    for name in ("__spec__", "__loader__", "__package__", "__doc__")))
"""


def notebook(path, source):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(WARN.format(folder=str(path.parent))), nbformat.v4.new_code_cell(FRESH),
                nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return str(path)


def run(pool, source, tmp_path, name, cells=notebook):
    (tmp_path / "warner.py").write_text(MODULE)
    out, path = tmp_path / f"{name}.out.ipynb", cells(tmp_path / f"{name}.ipynb", source)
    with pool.kernel(path) as kernel:
        papermill.execute_notebook(path, str(out), km=kernel.manager, kernel_name=kernels.KERNEL, progress_bar=False)
    cells = nbformat.read(out, as_version=4).cells
    text = "".join(o.get("text", "") for c in cells for o in c.get("outputs", []))
    return text, [c["execution_count"] for c in cells if c["cell_type"] == "code"]


def fresh(text):
    words = text.split("filters ")[1].split()
    return words[0], words[2]


def pid(text):
    return text.split("pid ")[1].split()[0]


def test_a_kept_kernel_starts_each_run_as_a_new_kernel_would(tmp_path):
    pool = kernels.KernelPool()
    try:
        first, first_counts = run(pool, FIRST, tmp_path, "first")
        second, second_counts = run(pool, SECOND, tmp_path, "second")
    finally:
        pool.close()
    assert pid(first) == pid(second)                      # the same process: no start-up paid twice
    assert "clean figures 0" in second                    # no variable, no figure from the run before
    assert "a warning each run should show" in first and "a warning each run should show" in second
    assert first_counts == second_counts                  # In [1] again (papermill's injected cell counts too)
    assert fresh(first) == fresh(second) and fresh(first)[1] == "True"
    assert not kernels.RUNNING


def bare(path, source):
    """A notebook of the parameters cell and `source` only."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return str(path)


def test_a_kernel_imports_only_the_nbstudy_modules_its_notebook_imports_before_it_runs(tmp_path):
    """A notebook that needs no torch does not pay for importing it; a module of its own is imported by its cell,
    after what the cells before set up, as in a new kernel; an nbstudy module that cannot be imported is the
    notebook's own error, in its cell, not a kernel that fails to reset."""
    (tmp_path / "cfg.py").write_text("import os\nMODE = os.environ.get('NBSTUDY_TEST_MODE', 'default')\n")
    pool = kernels.KernelPool(cwd=str(tmp_path))
    try:
        light, _ = run(pool, "import sys\nprint('torch', 'torch' in sys.modules)", tmp_path, "light", cells=bare)
        own, _ = run(pool, "import os\nos.environ['NBSTUDY_TEST_MODE'] = 'set'\nimport cfg\nprint('mode', cfg.MODE)",
                     tmp_path, "own", cells=bare)
        with pytest.raises(papermill.PapermillExecutionError, match="ModuleNotFoundError"):
            run(pool, "import nbstudy.no_such_module_here", tmp_path, "missing", cells=bare)
    finally:
        pool.close()
    assert "torch False" in light and "mode set" in own


def test_nbstudy_imports_reads_every_nbstudy_import_past_magics(tmp_path):
    path = tmp_path / "n.ipynb"
    bare(path, "%matplotlib inline\nimport os.path, numpy as np, nbstudy.lnl as L\n"
               "from nbstudy.analysis import plots, runs\nfrom nbstudy import *\nfrom . import local\n"
               "def f():\n    import nbstudy.widgets")
    (tmp_path / "bad.ipynb").write_text(path.read_text().replace("%matplotlib inline", "this is (not python"))
    assert kernels.nbstudy_imports(path) == ("nbstudy.lnl", "nbstudy.analysis", "nbstudy.analysis.plots",
                                             "nbstudy.analysis.runs", "nbstudy", "nbstudy.widgets")
    assert kernels.nbstudy_imports(tmp_path / "bad.ipynb") == ()


LAZY = """
import ast, importlib, pathlib, sys, warnings
from nbstudy.kernels import nbstudy_imports
for name in nbstudy_imports(pathlib.Path(sys.argv[1])):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
before = list(warnings.filters)
for path in pathlib.Path("nbstudy").rglob("*.py"):
    if path.name in ("cli.py", "executors.py"):   # the study runner's process (papermill, ray), not a kernel's
        continue
    for function in ast.walk(ast.parse(path.read_text())):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                for name in names:
                    try:
                        importlib.import_module(name)
                    except ImportError:   # optional extras (ray, medmnist) absent here
                        pass
print(len(before), len(warnings.filters))
"""


@pytest.mark.parametrize("name", ["01_pretrain", "02_train_noisy", "15_suspects"])
def test_what_nbstudy_imports_inside_functions_adds_no_warning_filter_after_a_notebooks_imports(name):
    """The reset keeps the filters libraries add when imported only for the nbstudy modules a notebook imports; what
    the notebook imports besides, and what nbstudy imports later, inside functions (pandas, sklearn, cleanlab, ...), must add none, or a kept kernel's
    second run would lack them. The two stage notebooks, and the analysis notebook that uses the most of those (each
    analysis notebook imports nbstudy.widgets and nbstudy.analysis; a subprocess each, about 10 CPU-s)."""
    done = subprocess.run([sys.executable, "-c", LAZY, str(ROOT / "notebooks" / f"{name}.ipynb")], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    before, after = done.stdout.split()
    assert before == after, done.stdout


def test_a_failed_run_gives_up_its_kernel(tmp_path):
    pool = kernels.KernelPool()
    try:
        before, _ = run(pool, FIRST, tmp_path, "before")
        with pytest.raises(papermill.PapermillExecutionError):
            run(pool, "raise ValueError('broken run')", tmp_path, "broken")
        after, _ = run(pool, SECOND, tmp_path, "after")
    finally:
        pool.close()
    assert pid(before) != pid(after) and "clean" in after


def test_a_kept_kernel_that_died_or_cannot_be_reset_is_replaced(tmp_path):
    pool = kernels.KernelPool()
    try:
        first, _ = run(pool, FIRST, tmp_path, "first")
        (kept,) = pool._idle
        kept.reset = lambda imports: (_ for _ in ()).throw(TimeoutError("no reply"))   # as a hung kernel would
        second, _ = run(pool, SECOND, tmp_path, "second")
        (kept,) = pool._idle
        os.kill(int(pid(second)), signal.SIGKILL)
        third, _ = run(pool, SECOND, tmp_path, "third")
    finally:
        pool.close()
    assert len({pid(first), pid(second), pid(third)}) == 3 and "clean" in second and "clean" in third
    assert not kernels.RUNNING


def test_a_new_kernel_that_dies_before_its_first_reply_is_started_once_more(monkeypatch):
    reset, deaths = kernels.Kernel.reset, []

    def dies_once(kernel, imports):   # as a kernel killed while it starts on a loaded machine
        if not deaths:
            deaths.append(kernel)
            raise RuntimeError("the kernel died")
        reset(kernel, imports)

    monkeypatch.setattr(kernels.Kernel, "reset", dies_once)
    pool = kernels.KernelPool()
    try:
        with pool.kernel() as kernel:
            assert kernel.alive() and kernel is not deaths[0] and not deaths[0].alive()
    finally:
        pool.close()
    assert not kernels.RUNNING


def test_the_local_executor_ends_its_kernels_with_it(tmp_path):
    with local_executor(1) as executor:
        with executor.kernels.kernel() as kernel:
            assert kernel.alive()
        assert len(kernels.RUNNING) == 1
    assert not kernels.RUNNING and not kernel.alive()


def test_a_stopping_study_hands_out_no_more_kernels():
    executor = local_executor(1)
    executor.shutdown(wait=False, cancel_futures=True)   # Ctrl-C (cli._study), before stop_kernels
    with pytest.raises(RuntimeError, match="stopping"), executor.kernels.kernel():
        pass
    executor.shutdown()
    assert not kernels.RUNNING
