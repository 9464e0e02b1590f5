"""Where one CPU training step of a backbone goes: forward, backward and optimiser, then each convolution.

    python benchmarks/cpu_step.py                        # ResNet18, 32 px, ImageNet stem, batch 32, one thread
    python benchmarks/cpu_step.py --batch 64 --stem small

The step is CE's (backbone + linear layer, cross-entropy, fused Adam) on random images, timed as the median of
--steps steps after up to five warm-up steps, each setting on its own copy of the same random-init network: as
nbstudy trains (fp32, contiguous), channels_last, bf16 autocast, and fp32 with oneDNN turned off (PyTorch's own
convolutions). Then every convolution shape in the network is timed alone, forward (F.conv2d) and backward
(aten.convolution_backward with the gradients training asks for: the input's except at the first layer, and
the weight's), with its arithmetic rate (every tap counted, padding included). Prints Markdown tables
(docs/benchmarks.md, "Where a CPU training step goes") and one line on whether the `precision: bf16` run
parameter pays on this CPU.
"""

import argparse
import copy
import statistics
import time
import warnings
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

from nbstudy.models import build_backbone, use_small_stem


def step_times(net, batch, resolution, steps, channels_last=False, bf16=False) -> tuple[float, float, float]:
    """Median (forward, backward, optimiser) milliseconds of a CE training step on a copy of `net` (left as it is)."""
    model = nn.Sequential(copy.deepcopy(net), nn.Linear(net.feature_dim, 4))   # channels_last converts in place
    x, y = torch.randn(batch, 3, resolution, resolution), torch.randint(0, 4, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    times = []
    warmup = min(5, steps)
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        if i >= warmup:
            times.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
    return tuple(1000 * statistics.median(part) for part in zip(*times))


def conv_shapes(net, batch, resolution) -> Counter:
    """{(input shape, weight shape, stride, padding): how many of the network's convolutions have it}, from one
    forward pass of a (batch, 3, resolution, resolution) input."""
    shapes, net = Counter(), copy.deepcopy(net)   # a copy: the pass would move BatchNorm's statistics
    for conv in (m for m in net.modules() if isinstance(m, nn.Conv2d)):
        conv.register_forward_hook(lambda m, inp, out: shapes.update(
            [(tuple(inp[0].shape), tuple(m.weight.shape), m.stride, m.padding)]))
    with torch.no_grad():
        net(torch.randn(batch, 3, resolution, resolution))
    return shapes


def timed(fn, repeats: int) -> float:
    """Mean milliseconds of `repeats` calls of fn() after up to three warm-up calls."""
    for _ in range(min(3, repeats)):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - start) / repeats


def conv_times(shape, repeats: int) -> tuple[float, float, float, float]:
    """(forward ms, backward ms, forward GFLOP, backward GFLOP) of one convolution of `shape` (conv_shapes' key)."""
    x_shape, w_shape, stride, padding = shape
    x, w = torch.randn(x_shape), torch.randn(w_shape)
    y = F.conv2d(x, w, stride=stride, padding=padding)
    g = torch.randn_like(y)
    stem = x_shape[1] == 3
    mask = [not stem, True, False]   # no input gradient for the images themselves
    fwd = timed(lambda: F.conv2d(x, w, stride=stride, padding=padding), repeats)
    bwd = timed(lambda: torch.ops.aten.convolution_backward(
        g, x, w, None, list(stride), list(padding), [1, 1], False, [0, 0], 1, mask), repeats)
    gflop = 2 * y.numel() * w[0].numel() / 1e9
    return fwd, bwd, gflop, gflop * (1 if stem else 2)   # each gradient costs what the forward does


SETTINGS = {"fp32 (as trained)": {}, "channels_last": {"channels_last": True}, "bf16 autocast": {"bf16": True},
            "oneDNN off": {"mkldnn": False}}


def step_rows(net, batch, resolution, steps) -> dict:
    """{setting name: step_times under that setting} for each of SETTINGS."""
    rows = {}
    for name, options in SETTINGS.items():
        options = dict(options)
        with warnings.catch_warnings():   # flags() also sets oneDNN's TF32 mode, which warns on a CPU build
            warnings.simplefilter("ignore", UserWarning)
            with torch.backends.mkldnn.flags(enabled=options.pop("mkldnn", True)):
                rows[name] = step_times(net, batch, resolution, steps, **options)
    return rows


def precision_advice(rows: dict) -> str:
    """One line on the `precision` run parameter for this CPU, from step_rows: bf16's step against fp32's."""
    fp32, bf16 = sum(rows["fp32 (as trained)"]), sum(rows["bf16 autocast"])
    step = " (for the step above: --arch, --resolution, --stem, --batch, --threads make it your runs')"
    if bf16 < 0.9 * fp32:
        return (f"bf16 steps are {fp32 / bf16:.2f}x as fast as fp32 here{step}: `precision: bf16` in a study file "
                "(or precision='bf16' for a run) speeds up CPU runs; it changes their numbers, so they are new runs")
    return f"bf16 steps take {bf16 / fp32:.2f}x fp32's here{step}: keep `precision: auto` (fp32 on the CPU)"


def conv_rows(net, batch, resolution, repeats) -> list:
    """[(shape, count, *conv_times(shape))] for each convolution shape of `net`."""
    return [(shape, count, *conv_times(shape, repeats)) for shape, count in conv_shapes(net, batch, resolution).items()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--stem", default="imagenet")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="training steps timed per setting")
    ap.add_argument("--repeats", type=int, default=20, help="calls timed per convolution")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_backbone(use_small_stem(args.stem, args.resolution), args.arch, args.resolution)
    print(f"{args.arch}, {args.resolution} px, {args.stem} stem, batch {args.batch}, {args.threads} thread(s), "
          f"torch {torch.__version__}\n")
    print("| setting | forward ms | backward ms | optimiser ms | step ms | ms per image |\n|---|---|---|---|---|---|")
    rows = step_rows(net, args.batch, args.resolution, args.steps)
    for name, parts in rows.items():
        print(f"| {name} | " + " | ".join(f"{p:.1f}" for p in parts)
              + f" | {sum(parts):.1f} | {sum(parts) / args.batch:.2f} |")
    print("\n" + precision_advice(rows))
    if args.arch == "vit_tiny":
        return
    print("\n| convolution (in -> out, k, stride, input side) | count | forward ms | backward ms | forward GFLOP/s "
          "| backward GFLOP/s |\n|---|---|---|---|---|---|")
    total = [0.0, 0.0]
    for shape, count, fwd, bwd, gflop, backward_gflop in conv_rows(net, args.batch, args.resolution, args.repeats):
        total[0], total[1] = total[0] + count * fwd, total[1] + count * bwd
        (_, cin, side, _), (cout, _, k, _), stride, _ = shape
        print(f"| {cin} -> {cout}, {k}x{k}, {stride[0]}, {side} px | {count} | {fwd:.2f} | {bwd:.2f} | "
              f"{gflop / fwd * 1000:.0f} | {backward_gflop / bwd * 1000:.0f} |")
    print(f"| all, each shape times its count | | {total[0]:.1f} | {total[1]:.1f} | | |")


if __name__ == "__main__":
    main()
