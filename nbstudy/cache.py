"""The prepare step: decode a dataset split once into a uint8 .npy file.

Later loads memory-map that file (np.load(mmap_mode="r")), so a 100K x 224 x
224 x 3 set never has to fit in RAM and no image is decoded again. Each cache
file is named by dataset, split and resolution plus a hash of everything that
changes its content: the source path and a fingerprint of the exact file list
(names, order, sizes, modification times), which also captures options such as
subsampling that choose the files. Change any of them and a
new file is built; old ones stay until the cache folder is deleted by hand,
which is always safe. Files are written under a temporary name and renamed
into place, so an interrupted build never leaves a half-written cache.
"""

import hashlib
import json
import os
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from nbstudy import images
from nbstudy.errors import NbstudyError

CACHE_VERSION = 1   # bump when the decoding rules change, so old caches are not reused
CACHE_FOLDER = ".nbstudy_cache"
_BLOCK = 256        # images per block of parallel decoding / npz streaming


def default_cache_dir(data_path) -> Path:
    """`<data folder>/.nbstudy_cache` when that folder is writable, else ~/.cache/nbstudy."""
    folder = Path(data_path)
    if folder.is_file():
        folder = folder.parent
    if os.access(folder, os.W_OK):
        return folder / CACHE_FOLDER
    return Path.home() / ".cache" / "nbstudy"


def files_fingerprint(paths, root) -> str:
    """Hash of each file's path relative to `root`, size and modification time."""
    digest = hashlib.sha1()
    for path in paths:
        st = os.stat(path)
        digest.update(f"{Path(path).relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def prepare_image_files(paths, *, dataset, split, resolution, source, cache_dir, workers=None,
                        skip_unreadable=False) -> tuple[np.ndarray, np.ndarray]:
    """Decode `paths` (in order) to a memory-mapped uint8 (N, R, R, 3) array, once.

    Returns the array and the int64 indices of `paths` it holds (all of them,
    unless `skip_unreadable` left some out). Every file is tried before any
    error: images that cannot be decoded are listed, one per line with the
    reason, in `<cache_dir>/<dataset>-<split>-unreadable.txt`, and the load stops
    naming how many, unless `skip_unreadable` is true. With resolution None every
    image must already be square and of one size.
    """
    key = {"source": str(Path(source).resolve()), "files": files_fingerprint(paths, source)}
    if skip_unreadable:
        key["skip_unreadable"] = True   # only then: caches built before the option stay valid
    target = _cache_path(cache_dir, dataset, split, resolution, key)
    skipped_file = target.with_suffix(".skipped.json")
    report = Path(cache_dir).expanduser() / f"{dataset}-{split}-unreadable.txt"

    def build(tmp):
        bad = _decode_files(paths, resolution, tmp, f"{dataset} {split}", workers)
        if bad and not skip_unreadable:
            report.write_text("".join(f"{paths[i]}\t{reason}\n" for i, reason in sorted(bad.items())),
                              encoding="utf-8")
            first = min(bad)
            raise NbstudyError(f"{len(bad)} of {len(paths)} images in the {split} split of {source} cannot be "
                               f"decoded (first: {paths[first]}: {bad[first]}); all are listed in {report}: "
                               "replace or delete them, or set the dataset option skip_unreadable: true to leave "
                               "them out")
        if skip_unreadable:
            _drop_rows(tmp, sorted(bad))
            skipped_file.write_text(json.dumps({str(paths[i]): reason for i, reason in sorted(bad.items())}),
                                    encoding="utf-8")
        report.unlink(missing_ok=True)   # the list of a failed earlier try

    images_ = _load_or_build(target, build)
    skipped = set()
    if skip_unreadable and skipped_file.exists():
        names = json.loads(skipped_file.read_text(encoding="utf-8"))
        skipped = {i for i, path in enumerate(paths) if str(path) in names}
    kept = np.array([i for i in range(len(paths)) if i not in skipped], dtype=np.int64)
    if len(kept) != len(images_):   # a cache whose list of skipped files went missing: build it again
        target.unlink()
        return prepare_image_files(paths, dataset=dataset, split=split, resolution=resolution, source=source,
                                   cache_dir=cache_dir, workers=workers, skip_unreadable=skip_unreadable)
    return images_, kept


def prepare_npz_images(npz_path, member, *, dataset, split, resolution, cache_dir) -> np.ndarray:
    """Copy array `member` of an .npz into a memory-mapped uint8 (N, R, R, 3) cache file.

    The array is streamed in blocks, never loaded whole. Grayscale (N, H, W) or
    (N, H, W, 1) becomes 3 channels; channels-first (N, 3, H, W) is transposed.
    """
    st = os.stat(npz_path)
    key = {"source": str(Path(npz_path).resolve()), "size": st.st_size, "mtime": st.st_mtime_ns,
           "member": member}
    target = _cache_path(cache_dir, dataset, split, resolution, key)
    return _load_or_build(target, lambda tmp: _copy_npz_member(npz_path, member, resolution, tmp,
                                                               f"{dataset} {split}"))


def _cache_path(cache_dir, dataset, split, resolution, key) -> Path:
    full_key = {"version": CACHE_VERSION, "dataset": dataset, "split": split, "resolution": resolution, **key}
    digest = hashlib.sha1(json.dumps(full_key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    size = f"{resolution}px" if resolution else "native"
    return Path(cache_dir).expanduser() / f"{dataset}-{split}-{size}-{digest}.npy"


def _load_or_build(target: Path, build) -> np.ndarray:
    if target.exists():
        try:
            return np.load(target, mmap_mode="r")
        except (ValueError, OSError):
            pass  # unreadable (e.g. truncated by a full disk): build it again
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NbstudyError(f"cannot create cache folder {target.parent} ({e}): pass cache_dir= "
                           "pointing at a writable folder") from None
    tmp = target.with_name(f"{target.stem}.tmp{os.getpid()}.npy")
    try:
        build(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return np.load(target, mmap_mode="r")


def _decode_files(paths, resolution, tmp, desc, workers) -> dict[int, str]:
    """Decode into a preallocated .npy memmap, threads writing rows in place
    (PIL releases the GIL while decoding and resizing). Returns {index: reason}
    of the files that could not be decoded (their rows stay zero)."""
    bad = {}
    first = None
    for i, path in enumerate(paths):   # the first decodable image sets the shape
        try:
            first = images.decode_image(path, resolution)
            break
        except images.UnreadableImage as e:
            bad[i] = e.reason
    if first is None:
        raise NbstudyError(f"none of the {len(paths)} images ({paths[0]}, ...) can be decoded ({bad[0]}): "
                           "check that the files are images")
    start = len(bad)
    height, width, _ = first.shape
    if height != width:
        raise NbstudyError(f"{paths[start]} is {width}x{height}, not square: pass resolution=N "
                           "to resize every image to NxN")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), height, width, 3))
    out[start] = first

    def decode_into(i):
        try:
            img = images.decode_image(paths[i], resolution)
        except images.UnreadableImage as e:
            bad[i] = e.reason
            return
        if img.shape != first.shape:
            raise NbstudyError(f"{paths[i]} is {img.shape[1]}x{img.shape[0]} but {paths[start]} is "
                               f"{width}x{height}: pass resolution=N to resize every image to NxN")
        out[i] = img

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(paths), desc=desc, unit="img") as bar:
        bar.update(start + 1)
        for begin in range(start + 1, len(paths), _BLOCK):
            block = range(begin, min(begin + _BLOCK, len(paths)))
            list(pool.map(decode_into, block))
            bar.update(len(block))
    out.flush()
    del out
    return bad


def _drop_rows(npy_path: Path, rows) -> None:
    """Rewrite the .npy at `npy_path` without `rows`, block by block."""
    full = np.load(npy_path, mmap_mode="r")
    keep = np.setdiff1d(np.arange(len(full)), rows)
    if len(keep) == len(full):
        return
    slim_path = npy_path.with_name(npy_path.stem + ".slim.npy")
    slim = np.lib.format.open_memmap(slim_path, mode="w+", dtype=np.uint8, shape=(len(keep), *full.shape[1:]))
    for begin in range(0, len(keep), _BLOCK):
        slim[begin:begin + _BLOCK] = full[keep[begin:begin + _BLOCK]]
    slim.flush()
    del slim, full
    os.replace(slim_path, npy_path)


def _copy_npz_member(npz_path, member, resolution, tmp, desc):
    try:
        with zipfile.ZipFile(npz_path) as zf, zf.open(f"{member}.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(f)
            layout = _npz_layout(npz_path, member, shape, dtype, fortran_order)
            count, height, width = shape[0], layout["height"], layout["width"]
            side = resolution or height
            if resolution is None and height != width:
                raise NbstudyError(f"{member} in {npz_path} holds {width}x{height} images, not square: "
                                   "pass resolution=N to resize them to NxN")
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, side, side, 3))
            row_items = int(np.prod(shape[1:]))
            with tqdm(total=count, desc=desc, unit="img") as bar:
                for start in range(0, count, _BLOCK):
                    n = min(_BLOCK, count - start)
                    raw = f.read(n * row_items * dtype.itemsize)
                    block = np.frombuffer(raw, dtype=dtype).reshape((n, *shape[1:]))
                    out[start:start + n] = _to_rgb_block(block, layout, resolution)
                    bar.update(n)
            out.flush()
            del out
    except NbstudyError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, KeyError, ValueError, OSError) as e:
        # zlib, EOFError, a bad CRC: a member cut off or garbled inside the archive
        raise NbstudyError(f"cannot read {member} from {npz_path} ({' '.join(str(e).split())}): it is damaged or "
                           "partly downloaded: download it again") from None


def _npz_layout(npz_path, member, shape, dtype, fortran_order) -> dict:
    """Work out how the stored image array is laid out, or refuse it clearly."""
    where = f"{member} in {npz_path}"
    if fortran_order:
        raise NbstudyError(f"{where} is stored in Fortran order: save it with np.ascontiguousarray")
    if dtype != np.uint8:
        raise NbstudyError(f"{where} has dtype {dtype}, not uint8: save the images as uint8 in 0-255")
    if len(shape) == 3:
        return {"height": shape[1], "width": shape[2], "channels_first": False}
    if len(shape) == 4 and shape[3] in (1, 3):
        return {"height": shape[1], "width": shape[2], "channels_first": False}
    if len(shape) == 4 and shape[1] in (1, 3):
        warnings.warn(f"{where} is channels-first {tuple(shape)}: transposed to (N, H, W, C)", stacklevel=2)
        return {"height": shape[2], "width": shape[3], "channels_first": True}
    raise NbstudyError(f"{where} has shape {tuple(shape)}, not 2D images (N,H,W) or (N,H,W,C): "
                       "3D volumes and other layouts are not supported")


def _to_rgb_block(block, layout, resolution):
    if layout["channels_first"]:
        block = block.transpose(0, 2, 3, 1)
    if block.ndim == 3:
        block = block[..., None]
    if block.shape[3] == 1:
        block = np.repeat(block, 3, axis=3)
    if resolution is None or block.shape[1:3] == (resolution, resolution):
        return block
    return np.stack([np.asarray(images.resize_square(Image.fromarray(img), resolution)) for img in block])
