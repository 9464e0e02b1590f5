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


def test_cpu_step_times_the_step_and_each_convolution_of_the_network(capsys, monkeypatch, one_torch_thread):
    import runpy

    monkeypatch.setattr(sys, "argv", ["cpu_step.py", "--batch", "2", "--steps", "1", "--repeats", "1"])
    runpy.run_path(str(ROOT / "benchmarks" / "cpu_step.py"), run_name="__main__")
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r[0][2:] for r in rows[1:5]] == ["fp32 (as trained)", "channels_last", "bf16 autocast", "oneDNN off"]
    convs = [r for r in rows if "->" in r[0] and "in -> out" not in r[0]]
    assert sum(int(r[1]) for r in convs) == 20   # ResNet18: stem, 16 in the blocks, 3 downsampling shortcuts
    assert len(convs) == 11 and all(float(v) > 0 for r in convs for v in r[2:4])
