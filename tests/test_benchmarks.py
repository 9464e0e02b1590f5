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


def test_cpu_step_times_each_setting_on_its_own_copy_and_each_of_resnet18s_convolutions(one_torch_thread):
    import runpy

    import torch

    from nbstudy.models import build_backbone

    bench = runpy.run_path(str(ROOT / "benchmarks" / "cpu_step.py"))
    with torch.random.fork_rng():
        net = build_backbone(small_stem=False)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        steps = bench["step_rows"](net, batch=2, resolution=32, steps=1)
        convs = bench["conv_rows"](net, batch=2, resolution=32, repeats=1)
    assert list(steps) == ["fp32 (as trained)", "channels_last", "bf16 autocast", "oneDNN off"]
    assert all(len(parts) == 3 and min(parts) > 0 for parts in steps.values())
    # no setting trains or reformats the network the next one starts from
    assert all(torch.equal(v, before[k]) and v.is_contiguous() for k, v in net.state_dict().items())
    assert sum(count for _, count, *_ in convs) == 20   # ResNet18: stem, 16 in the blocks, 3 downsampling shortcuts
    assert len(convs) == 11 and all(fwd > 0 and bwd > 0 and gflop > 0 for _, _, fwd, bwd, gflop, _ in convs)
    (_, _, _, _, gflop, backward_gflop), = [c for c in convs if c[0][1] == (64, 3, 7, 7)]
    assert gflop == 2 * 2 * 64 * 16 * 16 * 3 * 7 * 7 / 1e9   # 2 batch x 64 maps of 16 x 16, 147 taps each
    assert backward_gflop == gflop   # the stem computes no gradient for the images
    assert all(c[5] == 2 * c[4] for c in convs if c[0][1][1] != 3)   # every other one: input and weight gradients
    advice = bench["precision_advice"]
    fp32 = {"fp32 (as trained)": (60, 90, 10)}                 # a 160 ms step against bf16's 110, then 150
    fast, slow = {**fp32, "bf16 autocast": (40, 60, 10)}, {**fp32, "bf16 autocast": (60, 80, 10)}
    assert advice(fast).startswith("bf16 steps are 1.45x as fast as fp32 here (for the step above")
    assert "`precision: bf16` in a study file" in advice(fast) and "precision: bf16" not in advice(slow)
    assert advice(slow).startswith("bf16 steps take 0.94x fp32's here (for the step above")
    assert advice(slow).endswith("keep `precision: auto` (fp32 on the CPU)")
