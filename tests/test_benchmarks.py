"""The benchmark scripts must run on a GPU machine's own Python: no notebook or plotting stack imported."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("papermill", "matplotlib", "seaborn", "ipywidgets", "yaml", "nbformat")


@pytest.mark.parametrize("script", ["throughput.py", "gpu_check.py"])
def test_benchmark_imports_only_training_modules(script):
    code = (f"import runpy, sys; sys.argv = [{script!r}, '--help']\n"
            f"try:\n    runpy.run_path({str(ROOT / 'benchmarks' / script)!r}, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "usage:" in out and "LOADED []" in out, out
