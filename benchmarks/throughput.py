"""Training throughput of every method: the bare step on resident data against the real data path.

Not part of the test suite. Run on a GPU machine (it runs on the CPU too, slowly):

    python benchmarks/throughput.py --out results.json          # everything, a few minutes on an H100
    python benchmarks/throughput.py --sizes 28 --methods ce     # one cell
    python benchmarks/throughput.py --backbones resnet18,resnet50,vit_tiny   # each method on each backbone
    python benchmarks/throughput.py --table results.json        # the table for docs/benchmarks.md

For each method and image side it measures, in one process:
- bare: the training step alone on a batch already on the device (no data path, no
  augmentation) -- the ceiling;
- end-to-end: the method's own epoch function (`pretrain.run.train_epoch`,
  `lnl.<method>.train_epoch`) reading a memory-mapped uint8 cache through `BatchLoader`
  and augmenting on the device;
- the data path and the augmentation alone, to show where a gap comes from;
- peak GPU memory, and the process's private host memory (RssAnon; pages of the
  memory-mapped cache are file cache the kernel can drop, reported apart as RssFile).
Also: a DivideMix epoch against a CE epoch on the same data, the study's original kind of
pipeline (PIL decode + per-image torchvision transforms in a DataLoader, one worker per
core) for SimCLR, SimCLR's views made by torchvision.transforms.v2 and by kornia, and
torch.compile. Images are random bytes: throughput does not depend on content.

Imports only torch, numpy, scikit-learn, tqdm and nbstudy's training modules (no
papermill, no plotting), so it runs on a GPU machine's own Python.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from nbstudy import augment  # noqa: E402
from nbstudy.lnl import ce, coteaching, dividemix  # noqa: E402
from nbstudy.lnl.base import Context  # noqa: E402
from nbstudy.loader import BatchLoader  # noqa: E402
from nbstudy.models import BACKBONES, Classifier, build_backbone  # noqa: E402
from nbstudy.params import method_options  # noqa: E402
from nbstudy.pretrain import METHODS as PRETRAIN, DEFAULTS as PRETRAIN_DEFAULTS  # noqa: E402
from nbstudy.pretrain import resolve as resolve_pretrain  # noqa: E402
from nbstudy.pretrain.run import make_optimizer, train_epoch, train_step  # noqa: E402
from nbstudy.runtime import configure, prepare_model  # noqa: E402

LNL = {"ce": ce.METHOD, "coteaching": coteaching.METHOD, "dividemix": dividemix.METHOD}
ALL = (*PRETRAIN, *LNL)
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
NUM_CLASSES = 9            # NCT-CRC-HE's tissue classes
EPOCH_IMAGES = 100_000     # the epoch time reported is for a set of this size


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat: int = 1) -> float:
    """Seconds per call of fn, after the device has finished."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / repeat


def host_memory() -> dict:
    """Private (RssAnon) and file-backed (RssFile) resident memory of this process, in GB (Linux)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("RssAnon", "RssFile")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1e6
    except OSError:
        pass
    return out


def make_cache(path: Path, n: int, side: int) -> np.ndarray:
    """A uint8 (n, side, side, 3) .npy file of random bytes, opened memory-mapped read-only (as nbstudy.cache does)."""
    if not path.exists():
        block = np.random.default_rng(0).integers(0, 256, (min(n, 1024), side, side, 3), dtype=np.uint8)
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, side, side, 3))
        for start in range(0, n, len(block)):
            stop = min(n, start + len(block))
            mm[start:stop] = block[:stop - start]
        del mm
    return np.load(path, mmap_mode="r")


# --- one method's measurements ----------------------------------------------------------------------

def pretrain_bench(name, images, side, device, args, arch="resnet18") -> dict:
    p = {**PRETRAIN_DEFAULTS, "method": name, "resolution": side}
    backbone = build_backbone(side <= 64, arch, side)
    options = resolve_pretrain(p)["method_options"]
    method = prepare_model(PRETRAIN[name](backbone, MEAN, STD, side, **options), device)
    method.train()
    opt = make_optimizer(p, method.parameters())
    gen = torch.Generator(device=device).manual_seed(0)
    batch = p["batch_size"]
    x = augment.to_float(torch.from_numpy(np.array(images[:batch])).to(device).permute(0, 3, 1, 2))
    inputs, targets = method.make_inputs(x, gen)

    def step():
        train_step(method, inputs, targets, opt, device)

    def augment_only():
        method.make_inputs(x, gen)

    return measure(step, augment_only, batch, images, device, args, lambda loader: train_epoch(
        method, loader, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), gen, device, "", False))


def lnl_context(name, images, side, device, n_nets, arch="resnet18") -> Context:
    method = LNL[name]
    nets = [prepare_model(Classifier(NUM_CLASSES, backbone=build_backbone(side <= 64, arch, side)), device)
            for _ in range(n_nets)]
    labels = np.random.default_rng(1).integers(0, NUM_CLASSES, len(images))
    options = method_options(method, {}, {"noise_rate": 0.5, "noise_kind": "symmetric", "expected_noise_rate": 0.5})
    if name == "dividemix":
        options["warmup_epochs"] = 0   # time the real (co-divide + MixMatch) epoch, not the warm-up
    mean, std = augment.channel_stats(MEAN, STD, device)
    ctx = Context(nets=nets, optimizers=[], images=images, labels=labels, train_idx=np.arange(len(images)),
                  num_classes=NUM_CLASSES, mean=mean, std=std, device=device, batch_size=method.batch_size,
                  epochs=100, lr=method.lr, seed=0, options=options, noise_kind="symmetric", noise_rate=0.5,
                  gen=torch.Generator(device=device).manual_seed(0), rng=np.random.default_rng(2))
    ctx.optimizers = method.optimizers(ctx)
    method.schedule(ctx, 0)
    return ctx


def lnl_bench(name, images, side, device, args, arch="resnet18") -> dict:
    method = LNL[name]
    ctx = lnl_context(name, images, side, device, method.networks, arch)
    batch = ctx.batch_size
    x = torch.from_numpy(np.array(images[:batch])).to(device).permute(0, 3, 1, 2)
    v = ctx.view(x)
    y = torch.from_numpy(ctx.labels[:batch]).to(device)

    def step():  # CE: one network; Co-teaching: both, each on the other's small-loss half
        with ctx.autocast():
            logits = [net(v).float() for net in ctx.nets]
        losses = [F.cross_entropy(lg, y, reduction="none") for lg in logits]
        if len(losses) == 2:
            loss_a, loss_b, _, _ = coteaching.coteaching_losses(*losses, 0.5)
            loss = loss_a + loss_b
        else:
            loss = losses[0].mean()
        for opt in ctx.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in ctx.optimizers:
            opt.step()

    def augment_only():
        ctx.view(x)

    epoch_fn = lambda loader: method.train_epoch(ctx, 0, method.state(ctx))  # noqa: E731 (loader: its own)
    return measure(step, augment_only, batch, images, device, args, epoch_fn)


def measure(step, augment_only, batch, images, device, args, epoch_fn) -> dict:
    """Bare step, augmentation, data path and one epoch end to end; images per second each."""
    for _ in range(args.warmup):
        step()
    bare = batch / timed(step, device, args.steps)
    aug = batch / timed(augment_only, device, args.steps)
    loader = BatchLoader(images, batch_size=batch, shuffle=True, drop_last=True, device=device)

    def drain():
        for _, xb in loader:
            pass
    data_path = len(loader) * batch / timed(drain, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    epoch_fn(loader)                                            # first epoch: warms cudnn for new shapes
    before = host_memory()
    seconds = timed(lambda: epoch_fn(loader), device)
    after = host_memory()
    e2e = len(images) / seconds
    row = {"bare_img_s": bare, "e2e_img_s": e2e, "ratio": e2e / bare, "augment_img_s": aug,
           "data_path_img_s": data_path, "epoch_s": seconds, "epoch_100k_s": EPOCH_IMAGES / e2e,
           "n_images": len(images), "batch": batch, "rss_anon_gb": after.get("RssAnon"),
           "rss_file_gb": after.get("RssFile"), "rss_anon_before_gb": before.get("RssAnon")}
    if device.type == "cuda":
        row["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return row


def dividemix_vs_ce(images, side, device, labelled: float = 0.5) -> dict:
    """One DivideMix epoch (after warm-up) against one CE epoch on the same images.

    DivideMix's cost grows with the share of samples it keeps labelled, which on random
    images is arbitrary: its GMM still runs (and is timed), but the division it returns is
    planted, `labelled` of the samples (0.5: noise rate ~0.5). Both epochs include what the
    training loop adds: CE one pass over the training images for the per-sample loss records,
    DivideMix the two it divides by (the records reuse one).
    """
    real = dividemix.clean_probability

    def planted(losses, seed=0):
        real(losses, seed)
        return (np.arange(len(losses)) % 100 < labelled * 100).astype(np.float64) * 0.8 + 0.1

    out = {}
    for name in ("ce", "dividemix"):
        ctx = lnl_context(name, images, side, device, LNL[name].networks)
        res = {}

        def run():
            ctx.weights_changed()
            res.update(LNL[name].train_epoch(ctx, 0, LNL[name].state(ctx)))
            ctx.train_losses(0)                                    # the loop's per-sample loss record
        dividemix.clean_probability = planted
        try:
            run()                                                  # warm-up (cudnn autotuning, allocator)
            out[f"{name}_epoch_s"] = timed(run, device)
        finally:
            dividemix.clean_probability = real
        if name == "dividemix":
            out["labelled_fraction"] = float(np.mean(res["selected"]))
    f = out["labelled_fraction"]
    # Forward-pass equivalents (a backward ~ 2 forwards): CE 3 per image + 1 for the record pass;
    # DivideMix 2 evaluation passes, then per labelled image and network 4 + 2 no-grad views and
    # 4 trained views (3 each).
    out["arithmetic_ratio"] = (2 + 2 * f * (4 + 2 + 4 * 3)) / 4
    out["ratio"] = out["dividemix_epoch_s"] / out["ce_epoch_s"]
    return out


# --- comparisons ------------------------------------------------------------------------------------

def reference_pipeline(side, device, n_files: int, workers: int) -> dict:
    """The study's original kind of data path for SimCLR: image files, PIL, torchvision transforms per image."""
    from PIL import Image
    from torchvision import transforms as T

    folder = Path(tempfile.mkdtemp(prefix="nbstudy-ref-"))
    block = np.random.default_rng(0).integers(0, 256, (64, side, side, 3), dtype=np.uint8)
    paths = []
    for i in range(n_files):
        paths.append(folder / f"{i:06d}.tif")
        Image.fromarray(block[i % 64]).save(paths[-1])
    blur = augment.blur_kernel_size(side)
    view = T.Compose([T.RandomResizedCrop(side), T.RandomHorizontalFlip(),
                      T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), T.RandomGrayscale(0.2),
                      T.GaussianBlur(blur, (0.1, 2.0)), T.ToTensor()])
    data = _FileViews(paths, view)
    loader = torch.utils.data.DataLoader(data, batch_size=256, shuffle=True, num_workers=workers, pin_memory=True,
                                         drop_last=True)
    n = len(loader) * 256
    next(iter(loader))                                                     # worker start-up, not counted
    t_loader = timed(lambda: [None for _ in loader], device)
    method = prepare_model(PRETRAIN["simclr"](build_backbone(False), MEAN, STD, resolution=side), device)
    opt = make_optimizer({**PRETRAIN_DEFAULTS}, method.parameters())

    def e2e():
        for v1, v2 in loader:
            train_step(method, torch.cat([v1, v2]).to(device, non_blocking=True), None, opt, device)
    t_e2e = timed(e2e, device)
    return {"loader_img_s": n / t_loader, "e2e_img_s": n / t_e2e, "workers": workers, "files": n_files}


class _FileViews(torch.utils.data.Dataset):
    def __init__(self, paths, view):
        self.paths, self.view = paths, view

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.open(self.paths[i]).convert("RGB")
        return self.view(img), self.view(img)


def view_libraries(side, device, batch: int, repeat: int) -> dict:
    """SimCLR views of one resident uint8 batch: nbstudy.augment, torchvision.transforms.v2 (per image, as
    it draws one set of parameters per call), and kornia (per-sample parameters on the batch)."""
    x = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8, device=device)
    xf = augment.to_float(x)
    profile = augment.view_profile("imagenet")
    gen = torch.Generator(device=device).manual_seed(0)
    blur = augment.blur_kernel_size(side)
    out = {"nbstudy_img_s": batch / timed(lambda: augment.simclr_view(xf, profile, gen), device, repeat)}
    from torchvision.transforms import v2

    tv = v2.Compose([v2.RandomResizedCrop(side, antialias=True), v2.RandomHorizontalFlip(),
                     v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), v2.RandomGrayscale(0.2),
                     v2.GaussianBlur(blur, (0.1, 2.0))])
    out["torchvision_v2_per_image_img_s"] = batch / timed(lambda: [tv(img) for img in xf], device, 1)
    out["torchvision_v2_whole_batch_img_s"] = batch / timed(lambda: tv(xf), device, repeat)
    try:
        import kornia.augmentation as K
    except ImportError as exc:
        out["kornia"] = f"not installed ({exc})"
        return out
    kn = K.AugmentationSequential(
        K.RandomResizedCrop((side, side)), K.RandomHorizontalFlip(),
        K.ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8), K.RandomGrayscale(p=0.2),
        K.RandomGaussianBlur((blur, blur), (0.1, 2.0), p=1.0))
    kn(xf)
    out["kornia_img_s"] = batch / timed(lambda: kn(xf), device, repeat)
    return out


def view_stages(side, device, batch: int, repeat: int) -> dict:
    """Images per second of each stage of SimCLR's views (the profile its side gets), on a resident batch."""
    profile = augment.view_profile("auto", side)
    gen = torch.Generator(device=device).manual_seed(0)
    x = augment.to_float(torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8, device=device))
    stages = {
        "crop": lambda: augment.random_resized_crop(x, None, profile.crop_scale, profile.crop_ratio, gen),
        "flip": lambda: augment.random_hflip(x, profile.hflip_p, gen),
        "jitter": lambda: augment.color_jitter(x, *profile.jitter, p=profile.jitter_p, generator=gen),
        "grayscale": lambda: augment.random_grayscale(x, profile.gray_p, gen),
        "blur": lambda: augment.gaussian_blur(x, augment.blur_kernel_size(side, profile.blur_fraction),
                                              profile.blur_sigma, max(profile.blur_p, 1.0), gen),
        "all": lambda: augment.simclr_view(x, profile, gen),
    }
    out = {"profile_blur_p": profile.blur_p, "batch": batch}
    for name, fn in stages.items():
        fn()
        out[f"{name}_img_s"] = batch / timed(fn, device, repeat)
    return out


def compiled_ce(images, side, device, args) -> dict:
    """CE's bare step and epoch with the network torch.compile'd (the `torch_compile` run parameter)."""
    ctx = lnl_context("ce", images, side, device, 1)
    net, opt = ctx.nets[0], ctx.optimizers[0]
    t0 = time.perf_counter()
    net.compile()
    x = torch.from_numpy(np.array(images[:ctx.batch_size])).to(device).permute(0, 3, 1, 2)
    v, y = ctx.view(x), torch.from_numpy(ctx.labels[:ctx.batch_size]).to(device)

    def step():
        with ctx.autocast():
            loss = F.cross_entropy(net(v).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for _ in range(3):
        step()
    sync(device)
    compile_s = time.perf_counter() - t0
    bare = ctx.batch_size / timed(step, device, args.steps)
    ce.train_epoch(ctx, 0, {})
    e2e = len(images) / timed(lambda: ce.train_epoch(ctx, 0, {}), device)
    return {"compile_s": compile_s, "bare_img_s": bare, "e2e_img_s": e2e, "ratio": e2e / bare}


def big_cache(work: Path, n: int, side: int, device) -> dict:
    """One CE epoch over a cache of n images (100K x 224 px: 15 GB) and the host memory it took."""
    t0 = time.perf_counter()
    images = make_cache(work / f"cache_{side}_{n}.npy", n, side)
    made = time.perf_counter() - t0
    ctx = lnl_context("ce", images, side, device, 1)
    before = host_memory()
    seconds = timed(lambda: ce.train_epoch(ctx, 0, {}), device)
    after = host_memory()
    return {"cache_gb": images.nbytes / 1e9, "make_cache_s": made, "e2e_img_s": n / seconds, "epoch_s": seconds,
            "rss_anon_before_gb": before.get("RssAnon"), "rss_anon_gb": after.get("RssAnon"),
            "rss_file_gb": after.get("RssFile")}


def markdown(rows: list) -> str:
    """The throughput rows of a results file as a Markdown table (what docs/benchmarks.md shows)."""
    lines = ["| method | backbone | side | batch | bare step img/s | end-to-end img/s | ratio | augmentation alone "
             "img/s | data path alone img/s | epoch of 100K images | peak GPU memory |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("kind") == "throughput" and "error" not in r:
            lines.append(f"| {r['method']} | {r.get('backbone', 'resnet18')} | {r['side']} | {r['batch']} "
                         f"| {r['bare_img_s']:,.0f} | {r['e2e_img_s']:,.0f} "
                         f"| {r['ratio']:.2f} | {r['augment_img_s']:,.0f} | {r['data_path_img_s']:,.0f} "
                         f"| {r['epoch_100k_s']:.1f} s | {r.get('peak_gpu_gb', float('nan')):.1f} GB |")
    return "\n".join(lines)


# --- driver -----------------------------------------------------------------------------------------

def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="224,28", help="image sides, comma-separated")
    ap.add_argument("--methods", default=",".join(ALL), help=f"comma-separated, from {', '.join(ALL)}")
    ap.add_argument("--backbones", default="resnet18", help=f"comma-separated, from {', '.join(BACKBONES)} "
                    "(the throughput cells; the other measurements use resnet18)")
    ap.add_argument("--images", default="224:16384,28:100000",
                    help="images in the benchmark cache per side (side:n, comma-separated)")
    ap.add_argument("--big", type=int, default=100_000,
                    help="also train CE for an epoch on a cache of this many images at the largest side (0: skip)")
    ap.add_argument("--steps", type=int, default=30, help="timed bare steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (cudnn autotuning)")
    ap.add_argument("--reference-files", type=int, default=1536, help="image files for the reference pipeline (0: skip)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    ap.add_argument("--no-libraries", action="store_true", help="skip torchvision v2 / kornia")
    ap.add_argument("--workdir", default=None, help="where the cache files go (default: a temporary folder)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=None, help="also write the results as JSON lines here")
    ap.add_argument("--table", default=None, metavar="RESULTS", help="print a results file as a Markdown table, and stop")
    args = ap.parse_args(argv)
    if args.table:
        print(markdown([json.loads(line) for line in Path(args.table).read_text().splitlines() if line.strip()]))
        return
    device = torch.device(args.device)
    configure(device)
    sizes = [int(s) for s in args.sizes.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(ALL))
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}: use {', '.join(ALL)}")
    backbones = [b for b in args.backbones.split(",") if b]
    if set(backbones) - set(BACKBONES):
        ap.error(f"unknown backbone(s) {', '.join(sorted(set(backbones) - set(BACKBONES)))}: use {', '.join(BACKBONES)}")
    counts = {int(k): int(v) for k, v in (item.split(":") for item in args.images.split(","))}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nbstudy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    out = open(args.out, "a") if args.out else None

    def report(kind, **row):
        row = {"kind": kind, **row}
        print(json.dumps(row, default=float), flush=True)
        if out:
            out.write(json.dumps(row, default=float) + "\n")
            out.flush()

    def attempt(kind, fn, **tags):
        t0 = time.perf_counter()
        try:
            report(kind, **tags, **fn(), wall_s=time.perf_counter() - t0)
        except Exception as exc:  # one failing cell must not cost the others
            traceback.print_exc()
            report(kind, **tags, error=f"{type(exc).__name__}: {exc}")

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report("machine", device=gpu, torch=torch.__version__, cpus=os.cpu_count(),
           date=datetime.date.today().isoformat(), python=sys.version.split()[0])
    for side in sizes:
        images = make_cache(work / f"cache_{side}_{counts.get(side, 4096)}.npy", counts.get(side, 4096), side)
        for name in methods:
            bench = pretrain_bench if name in PRETRAIN else lnl_bench
            if name == "dividemix":
                attempt("dividemix_vs_ce", lambda: dividemix_vs_ce(images, side, device), method=name, side=side)
                continue
            for arch in backbones:
                attempt("throughput", lambda: bench(name, images, side, device, args, arch), method=name,
                        backbone=arch, side=side)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    big_side = max(sizes)
    if args.reference_files:
        attempt("reference_pipeline", lambda: reference_pipeline(big_side, device, args.reference_files,
                                                                 os.cpu_count()), method="simclr", side=big_side)
    if not args.no_libraries:
        for side in sizes:
            attempt("view_libraries", lambda: view_libraries(side, device, 256, 10), side=side)
    for side in sizes:
        attempt("view_stages", lambda: view_stages(side, device, 512, 10), side=side)
    if not args.no_compile:
        images = make_cache(work / f"cache_{big_side}_{counts.get(big_side, 4096)}.npy",
                            counts.get(big_side, 4096), big_side)
        attempt("compiled", lambda: compiled_ce(images, big_side, device, args), method="ce", side=big_side)
    if args.big:
        attempt("big_cache", lambda: big_cache(work, args.big, big_side, device), method="ce", side=big_side)

if __name__ == "__main__":
    main()
