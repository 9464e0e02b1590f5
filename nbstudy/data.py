"""Datasets: one entry point, `load_dataset(name, ...)`, returning a `Dataset`.

Every loader gives uint8 (N, H, W, 3) images (square, at one resolution),
int64 labels, class names and the official splits where the dataset has them.
Image-file datasets are decoded once by the prepare step (nbstudy.cache) and
memory-mapped afterwards. See docs/datasets.md for layouts and options.
"""

import inspect
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from nbstudy import cache
from nbstudy import labels as given_labels
from nbstudy.errors import NbstudyError
from nbstudy.images import IMAGE_EXTENSIONS, is_image_file
from nbstudy.synthetic import CLASS_NAMES as SYNTHETIC_CLASSES
from nbstudy.synthetic import make_synthetic

NCT_CLASSES = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]
COVID_CLASSES = ["COVID-19", "Non-COVID", "Normal"]
MEDMNIST_SIZES = (28, 64, 128, 224)
_MEAN_STD_IMAGES = 2000   # mean/std use at most this many evenly spaced train images


@dataclass(eq=False)
class Dataset:
    """Images and labels of one dataset, split as the dataset defines it."""
    name: str
    class_names: list[str]
    train_images: np.ndarray       # uint8 (N, H, W, 3); may be a read-only np.memmap
    train_labels: np.ndarray       # int64 (N,)
    test_images: np.ndarray
    test_labels: np.ndarray
    val_images: np.ndarray | None = None   # official validation split, when the dataset has one
    val_labels: np.ndarray | None = None
    synthetic: bool = False        # the built-in set: results must say so
    source: str = ""               # where the data came from, for the records
    unreadable_skipped: tuple[str, ...] = ()   # image files left out by skip_unreadable, for the records
    train_files: tuple[str, ...] | None = None  # image-file sources: each training image's file, relative to source
    labels_file: str = ""          # the CSV the training labels came from (the `labels` option), if any
    loaded_with: dict | None = None  # `load_request` of the load_dataset call that made it (None: made by hand)

    def __post_init__(self):
        for split in self._splits():
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
                raise ValueError(f"{split}_images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
            if labels.dtype != np.int64 or labels.shape != (len(images),):
                raise ValueError(f"{split}_labels must be int64 ({len(images)},), got {labels.dtype} {labels.shape}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def resolution(self) -> int:
        return int(self.train_images.shape[1])

    @cached_property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel mean of the train images scaled to [0, 1]."""
        return self._channel_stats()[0]

    @cached_property
    def std(self) -> tuple[float, float, float]:
        """Per-channel standard deviation of the train images scaled to [0, 1]."""
        return self._channel_stats()[1]

    def _channel_stats(self):
        """Exact mean/std of evenly spaced train images, from per-channel histograms
        (integer counting is much faster than float sums over a memmap)."""
        n = len(self.train_images)
        rows = np.unique(np.linspace(0, n - 1, min(n, _MEAN_STD_IMAGES)).astype(np.int64))
        hist = np.zeros((3, 256), dtype=np.int64)
        for start in range(0, len(rows), 256):
            block = self.train_images[rows[start:start + 256]]
            for c in range(3):
                hist[c] += np.bincount(block[..., c].ravel(), minlength=256)
        values = np.arange(256) / 255
        mean = hist @ values / hist.sum(1)
        std = np.sqrt(np.maximum(hist @ values ** 2 / hist.sum(1) - mean ** 2, 0))
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def _splits(self):
        return ["train", "val", "test"] if self.val_images is not None else ["train", "test"]

    def describe(self) -> str:
        """A short summary: name, SYNTHETIC marker, sizes per split, class counts."""
        marker = " (SYNTHETIC)" if self.synthetic else ""
        sizes = ", ".join(f"{split} {len(getattr(self, f'{split}_labels'))}" for split in self._splits())
        no_val = "" if self.val_images is not None else ", no validation split"
        lines = [f"{self.name}{marker}: {self.num_classes} classes, {self.resolution}x{self.resolution} px; "
                 f"{sizes}{no_val}"]
        if self.source:
            lines.append(f"  source: {self.source}")
        if self.unreadable_skipped:
            lines.append(f"  left out: {len(self.unreadable_skipped)} unreadable image file(s) (skip_unreadable)")
        width = max(len(c) for c in self.class_names)
        for c, class_name in enumerate(self.class_names):
            counts = "  ".join(f"{split} {int(np.sum(getattr(self, f'{split}_labels') == c))}"
                               for split in self._splits())
            lines.append(f"  {class_name:<{width}}  {counts}")
        return "\n".join(lines)


def load_dataset(name: str, data_path: str | None = None, resolution: int | None = None, seed: int = 0,
                 cache_dir: str | None = None, **options) -> Dataset:
    """Load dataset `name` (a key of DATASETS) with its images at `resolution`
    (None: the dataset's native size). Same arguments, same arrays.

    Options: those of the data set's loader, and for every data set `labels`, a CSV of the training
    labels to use instead of the data set's own (`nbstudy.labels`)."""
    if name not in DATASETS:
        raise NbstudyError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    loader = DATASETS[name]
    accepted = accepted_options(name)
    labels_file = options.pop("labels", None)
    for option in options:
        if option not in accepted:
            raise NbstudyError(f"unknown option {option!r} for dataset {name!r}: accepted options are "
                               f"{', '.join(accepted) or 'none'}")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer))
                                   or resolution < 1):
        raise NbstudyError(f"resolution must be a positive integer (pixels per side), got {resolution!r}")
    ds = loader(data_path, None if resolution is None else int(resolution), seed, cache_dir, **options)
    ds = check_labels(ds if labels_file is None else given_labels.apply(ds, labels_file))
    ds.loaded_with = load_request(name, data_path, seed,
                                  {**options, **({} if labels_file is None else {"labels": labels_file})})
    return ds


def load_request(name: str, data_path, seed, options: dict) -> dict:
    """What a load_dataset call asks for beyond the name and size the Dataset shows itself, comparable across
    calls: {data_path, data_seed, and each option}, paths absolute, options with the loader's defaults filled in
    (the stage parameters' names, so a passed-in data set can be checked against a run's parameters)."""
    path = lambda v: None if v is None else os.path.abspath(os.fspath(v))  # noqa: E731
    defaults = {q.name: q.default for q in inspect.signature(DATASETS[name]).parameters.values()
                if q.kind == q.KEYWORD_ONLY} if name in DATASETS else {}
    options = {**defaults, **options}
    if options.get("labels") is not None:
        options["labels"] = path(options["labels"])
    return {"data_path": path(data_path), "data_seed": seed, **options}


def check_run_data(ds: Dataset, params: dict, n_train: int) -> Dataset:
    """`ds` if it can be the data set of the run with `params` whose records index `n_train` training images,
    else a one-line error: records read against another data set show other images and labels."""
    size = params.get("resolution")
    if ds.name != params["dataset"] or len(ds.train_labels) != n_train or (size and ds.resolution != size):
        raise NbstudyError(f"the data set given ({ds.name}, {len(ds.train_labels)} training images at {ds.resolution} "
                           f"px) is not the run's ({params['dataset']}, {n_train} at {size or 'native'} px): pass "
                           "the run's data set, or none (it is loaded from the run's parameters)")
    return ds


def accepted_options(name: str) -> list:
    """The options data set `name` takes: its loader's keyword-only arguments, then `labels`."""
    loader = inspect.signature(DATASETS[name]).parameters.values()
    return [p.name for p in loader if p.kind == p.KEYWORD_ONLY] + ["labels"]


def check_labels(ds: Dataset) -> Dataset:
    """Labels must be the classes 0..K-1 with every class in training: a stray label (1000 among 0-8) or a
    class only the test split has would otherwise train silently as another problem. Returns `ds`."""
    where = ds.source or ds.name
    k = ds.num_classes
    for split in ds._splits():
        labels = getattr(ds, f"{split}_labels")
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            bad = labels[(labels < 0) | (labels >= k)]
            raise NbstudyError(f"{where}: {split} labels must be 0..{k - 1} for its {k} classes, but {len(bad)} "
                               f"label(s) are {', '.join(map(str, sorted(set(bad.tolist()))[:5]))}: fix or drop them")
    counts = np.bincount(ds.train_labels, minlength=k)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        shown = ", ".join(f"{i} ({ds.class_names[i]})" for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        rare = [i for i in np.flatnonzero(counts) if counts[i] <= 2]
        test_only = [int(i) for i in missing if i in set(ds.test_labels.tolist())]
        hint = (f"; label(s) {', '.join(map(str, rare[:5]))} appear at most twice: stray labels?" if rare else
                f"; class(es) {', '.join(map(str, test_only[:5]))} only in the test split" if test_only else "")
        raise NbstudyError(f"{where}: {len(missing)} of {k} classes never appear in the training labels: {shown}"
                           f"{hint}: every class must have training images (fix the labels, or give the classes "
                           "as 0..K-1 without gaps)")
    untested = np.flatnonzero(np.bincount(ds.test_labels, minlength=k) == 0) if ds.test_labels.size else []
    if len(untested):   # a stray folder (a copy, a typo) becomes a class that nothing scores
        shown = ", ".join(f"{ds.class_names[i]} ({counts[i]} training images)" for i in untested[:5])
        warnings.warn(f"{where}: {len(untested)} of {k} classes have no test images, so no test scores them: "
                      f"{shown}; a stray or misnamed folder? fix or remove it", stacklevel=3)
    return ds


# ---------------------------------------------------------------------------- synthetic

def load_synthetic(data_path, resolution, seed, cache_dir, *, num_classes=4, per_class=150,
                   test_per_class=100, image_size=None, perspective=0.0, subsample=None,
                   test_fraction=None) -> Dataset:
    """The built-in procedural texture set (nbstudy.synthetic); cheap, so not cached.
    `image_size` is another name for `resolution`; default 32. `perspective` > 0 tilts the
    textures so that position shows (what the jigsaw puzzle needs); 0, the default, is flat."""
    _no_test_fraction(test_fraction, "the synthetic set makes its own test split (test_per_class)")
    if image_size is not None and resolution is not None and image_size != resolution:
        raise NbstudyError(f"image_size={image_size} and resolution={resolution} disagree: give only one")
    size = image_size or resolution or 32
    if not 2 <= num_classes <= len(SYNTHETIC_CLASSES):
        raise NbstudyError(f"num_classes must be between 2 and {len(SYNTHETIC_CLASSES)}, got {num_classes}")
    if per_class < 1 or test_per_class < 1 or size < 8:
        raise NbstudyError(f"per_class and test_per_class must be >= 1 and the image size >= 8, got "
                           f"{per_class}, {test_per_class}, {size}")
    if isinstance(perspective, bool) or not isinstance(perspective, (int, float)) or not 0 <= perspective <= 3:
        raise NbstudyError(f"perspective={perspective} is out of range: use 0 (flat) to 3, e.g. 1")
    train_x, train_y, test_x, test_y, names = make_synthetic(num_classes, per_class, test_per_class, size, seed,
                                                             float(perspective))
    train_x, train_y = _resplit({"train": (train_x, train_y)}, subsample, None, seed, "synthetic")["train"]
    tilt = f", perspective {perspective:g}" if perspective else ""
    return Dataset("synthetic", names, train_x, train_y, test_x, test_y, synthetic=True,
                   source=f"built-in procedural textures (nbstudy.synthetic), seed {seed}{tilt}")


# ---------------------------------------------------------------------------- NCT-CRC-HE

def load_nct_crc_he(data_path, resolution, seed, cache_dir, *, subsample=None, test_fraction=None,
                    skip_unreadable=False, workers=None) -> Dataset:
    """NCT-CRC-HE-100K (train) and CRC-VAL-HE-7K (test), one folder per tissue class."""
    _no_test_fraction(test_fraction, "NCT-CRC-HE has its official test set, CRC-VAL-HE-7K")
    root = _existing_folder(data_path, "nct_crc_he", "the folder holding NCT-CRC-HE-100K/ and CRC-VAL-HE-7K/")
    split_dirs = {"train": root / "NCT-CRC-HE-100K", "test": root / "CRC-VAL-HE-7K"}
    missing = [d.name for d in split_dirs.values() if not d.is_dir()]
    if missing:
        raise NbstudyError(f"{root} is not an NCT-CRC-HE root: missing {'/, '.join(missing)}/ (found: "
                           f"{_listing(root)}); point data_path at the folder holding NCT-CRC-HE-100K/ "
                           "and CRC-VAL-HE-7K/")
    files = {split: _class_files(folder, NCT_CLASSES) for split, folder in split_dirs.items()}
    files["train"] = _subsample(*files["train"], subsample, seed)
    arrays, skipped, names = _prepare_files("nct_crc_he", files, resolution, root, cache_dir, workers,
                                            skip_unreadable)
    return Dataset("nct_crc_he", list(NCT_CLASSES), *arrays["train"], *arrays["test"], source=str(root),
                   unreadable_skipped=skipped, train_files=names)


# ---------------------------------------------------------------------------- COVID-QU-Ex

def load_covid_qu_ex(data_path, resolution, seed, cache_dir, *, subsample=None, test_fraction=None,
                     skip_unreadable=False, workers=None) -> Dataset:
    """COVID-QU-Ex, Lung Segmentation Data variant: {Train,Val,Test}/{class}/images/*.png.

    data_path may be the folder holding Train/Val/Test or a parent of the
    'Lung Segmentation Data' folder (the Kaggle archive nests it twice).
    Masks are ignored; Val becomes the validation split.
    """
    _no_test_fraction(test_fraction, "COVID-QU-Ex has its official Test split")
    given = _existing_folder(data_path, "covid_qu_ex", "the folder holding Train/, Val/ and Test/")
    lung = "Lung Segmentation Data"
    candidates = [given, given / lung, given / lung / lung]
    root = next((c for c in candidates if all((c / s).is_dir() for s in ("Train", "Val", "Test"))), None)
    if root is None:
        raise NbstudyError(f"no COVID-QU-Ex Train/, Val/ and Test/ folders in {given} (found: {_listing(given)}): "
                           f"point data_path at '{lung}/{lung}', the folder holding Train, Val and Test")
    if any((root / "Train" / c / "infection masks").is_dir() for c in COVID_CLASSES):
        warnings.warn(f"{root} is the Infection Segmentation Data variant (5,826 images); the study uses "
                      f"the full Lung Segmentation Data variant (33,920 images)", stacklevel=3)
    files = {}
    for split, folder in (("train", "Train"), ("val", "Val"), ("test", "Test")):
        files[split] = _class_files(root / folder, COVID_CLASSES, images_subfolder="images")
    files["train"] = _subsample(*files["train"], subsample, seed)
    arrays, skipped, names = _prepare_files("covid_qu_ex", files, resolution, root,
                                            cache_dir or cache.default_cache_dir(given), workers, skip_unreadable)
    return Dataset("covid_qu_ex", list(COVID_CLASSES), *arrays["train"], *arrays["test"], *arrays["val"],
                   source=str(root), unreadable_skipped=skipped, train_files=names)


# ---------------------------------------------------------------------------- image_folder

def load_image_folder(data_path, resolution, seed, cache_dir, *, test_fraction=None, subsample=None,
                      skip_unreadable=False, workers=None) -> Dataset:
    """Any class-per-folder tree. With train/ and test/ (and optionally val/)
    sub-trees those are the splits; otherwise a seeded stratified split holds
    out `test_fraction` (default 0.2) of each class as test."""
    root = _existing_folder(data_path, "image_folder", "a folder with one sub-folder of images per class")
    subdirs = {d.name.lower(): d for d in _visible_dirs(root)}
    if "train" in subdirs and "test" in subdirs:
        _no_test_fraction(test_fraction, f"{root} already has train/ and test/ folders")
        class_names = [d.name for d in _visible_dirs(subdirs["train"])]
        if not class_names:
            raise NbstudyError(f"{subdirs['train']} has no class folders: put each class's images in its own "
                               "sub-folder")
        files = {}
        for split in ("train", "val", "test"):
            if split not in subdirs:
                continue
            extra = sorted(d.name for d in _visible_dirs(subdirs[split]) if d.name not in class_names)
            if extra:
                raise NbstudyError(f"{subdirs[split]} has class folders not in train/: {', '.join(extra)}; "
                                   "every class needs training images")
            files[split] = _class_files(subdirs[split], class_names, require_all=False)
    else:
        class_names = [d.name for d in _visible_dirs(root)]
        if not class_names:
            raise NbstudyError(f"{root} has no class folders (found: {_listing(root)}): put each class's "
                               "images in its own sub-folder")
        files = _stratified_split(*_class_files(root, class_names), 0.2 if test_fraction is None else test_fraction,
                                  seed)
    files["train"] = _subsample(*files["train"], subsample, seed)
    arrays, skipped, names = _prepare_files("image_folder", files, resolution, root, cache_dir, workers,
                                            skip_unreadable)
    val = arrays.get("val", (None, None))
    return Dataset("image_folder", class_names, *arrays["train"], *arrays["test"], *val, source=str(root),
                   unreadable_skipped=skipped, train_files=names)


def _stratified_split(paths, labels, fraction, seed):
    """Per class, a seeded `fraction` (at least one image, if the class has two) goes to test."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) or not 0 < fraction < 1:
        raise NbstudyError(f"test_fraction must be between 0 and 1 (exclusive), got {fraction!r}: e.g. 0.2")
    rng = np.random.default_rng([seed, 1])
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = min(max(round(fraction * len(members)), 1), len(members) - 1)
        is_test[rng.choice(members, n_test, replace=False)] = True
    return {"train": ([p for p, t in zip(paths, is_test) if not t], labels[~is_test]),
            "test": ([p for p, t in zip(paths, is_test) if t], labels[is_test])}


# ---------------------------------------------------------------------------- MedMNIST

def load_medmnist(data_path, resolution, seed, cache_dir, *, npz_path=None, flag=None, size=None, subsample=None,
                  test_fraction=None) -> Dataset:
    """A MedMNIST .npz, given by path (npz_path or data_path), or by `flag` and
    `size`: looked for as <flag>_<size>.npz (<flag>.npz for 28) in data_path or
    ~/.medmnist, downloaded there with the medmnist package if missing. A file
    with only a train or only a test split needs `test_fraction` to split it."""
    path = _medmnist_file(data_path, npz_path, flag, size)
    named = path.stem.split("_")[0].lower()   # BreastMNIST.npz and breastmnist_28.npz are breastmnist
    if flag and named.endswith("mnist") and named != flag.lower():   # else its classes get another set's names
        raise NbstudyError(f"flag {flag} but the file is {path.name}, a {named} file: give the {flag.lower()} file, "
                           "or drop flag (the file's name gives it)")
    flag = (flag or named).lower()
    try:
        with np.load(path) as npz:
            members = set(npz.files)
            raw_labels = {split: npz[f"{split}_labels"] for split in ("train", "val", "test")
                          if {f"{split}_images", f"{split}_labels"} <= members}
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        # TypeError: a plain .npy, not an archive; BadZipFile, EOFError, zlib: a partly downloaded or damaged file
        raise NbstudyError(f"cannot read {path} as an .npz ({' '.join(str(e).split())}): it is damaged or partly "
                           "downloaded: download it again") from None
    present = [split for split in ("train", "test") if split in raw_labels]
    if not present:
        raise NbstudyError(f"{path} has neither train_images/train_labels nor test_images/test_labels arrays "
                           f"(found: {', '.join(sorted(members))}): it is not a MedMNIST-format .npz")
    if len(present) == 2 and test_fraction is not None:   # before any cache is built
        _no_test_fraction(test_fraction, f"{path} already has train and test splits")
    if len(present) == 1 and test_fraction is None:
        missing = "test" if present == ["train"] else "train"
        raise NbstudyError(f"{path} has no {missing}_images/{missing}_labels arrays (found: "
                           f"{', '.join(sorted(members))}): add the dataset option test_fraction: 0.2 to split its "
                           f"{present[0]} images into train and test, or use a file with both splits")
    labels = {split: _medmnist_labels(y, path, split) for split, y in raw_labels.items()}
    splits = list(labels)
    if "val" not in splits:
        warnings.warn(f"{path} has no val split: val_images is None", stacklevel=3)
    if cache_dir is None:
        cache_dir = cache.default_cache_dir(path)
    arrays = {}
    for split in splits:
        images = cache.prepare_npz_images(path, f"{split}_images", dataset="medmnist", split=split,
                                          resolution=resolution, cache_dir=cache_dir)
        if len(images) != len(labels[split]):
            raise NbstudyError(f"{path}: {split}_images has {len(images)} images but {split}_labels has "
                               f"{len(labels[split])} labels; the file is inconsistent")
        arrays[split] = (images, labels[split])
    arrays = _resplit(arrays, subsample, test_fraction, seed, str(path))
    labels = {split: y for split, (_, y) in arrays.items()}
    num_classes = max(int(y.max()) for y in labels.values() if y.size) + 1
    val = arrays.get("val", (None, None))
    return Dataset("medmnist", _medmnist_class_names(flag, num_classes), *arrays["train"], *arrays["test"], *val,
                   source=str(path))


def _medmnist_file(data_path, npz_path, flag, size) -> Path:
    if npz_path is None and data_path is not None and str(data_path).endswith(".npz"):
        npz_path = data_path
    if npz_path is not None:
        path = Path(npz_path).expanduser()
        if not path.is_file():
            raise NbstudyError(f"MedMNIST file {path} does not exist: check npz_path / data_path")
        return path
    if flag is None:
        raise NbstudyError("medmnist needs npz_path= (a MedMNIST .npz) or flag= (e.g. 'pathmnist') and size=")
    size = 28 if size is None else size
    if size not in MEDMNIST_SIZES:
        raise NbstudyError(f"MedMNIST size must be one of {MEDMNIST_SIZES}, got {size}")
    folder = Path(data_path).expanduser() if data_path is not None else Path.home() / ".medmnist"
    path = folder / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")
    if not path.is_file():
        _download_medmnist(flag, size, folder, path)
    return path


def _download_medmnist(flag, size, folder, path):
    put_it = (f"download {path.name} from the MedMNIST release (zenodo.org/records/10519652) and put it at "
              f"{path}, or pass npz_path=")
    try:
        import medmnist
    except ImportError:
        raise NbstudyError(f"no {path} and the medmnist package is not installed "
                           f"(pip install 'nbstudy[medmnist]'): {put_it}") from None
    if flag not in medmnist.INFO:
        raise NbstudyError(f"unknown MedMNIST flag {flag!r}: choose one of {', '.join(medmnist.INFO)}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        getattr(medmnist, medmnist.INFO[flag]["python_class"])(split="train", download=True, root=str(folder),
                                                               size=size)
    except Exception as e:  # network errors come in many types; all end the same way
        reason = " ".join(str(e).split())   # medmnist's own message spans several lines
        raise NbstudyError(f"downloading MedMNIST {flag} ({size} px) failed ({reason[:160]}): {put_it}") from None
    if not path.is_file():
        raise NbstudyError(f"medmnist did not create {path}: {put_it}")


def _medmnist_labels(labels, path, split) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise NbstudyError(f"{path} is multi-label ({split}_labels has shape {labels.shape}); only "
                           "single-label (multi-class) datasets are supported, e.g. not chestmnist")
    labels = labels.reshape(-1)
    if labels.dtype.kind not in "iuf":
        raise NbstudyError(f"{path}: {split}_labels are stored as {labels.dtype} (e.g. {labels[:1].tolist()}), not "
                           "numbers: store the class indices 0, 1, 2, ... as integers")
    if labels.size and (labels.min() < 0 or not np.all(labels == np.round(labels))):
        raise NbstudyError(f"{path}: {split}_labels must be class indices 0, 1, 2, ...")
    return labels.astype(np.int64)


def _medmnist_class_names(flag, num_classes) -> list[str]:
    """Names from medmnist.INFO when the package is installed and knows the flag, else "0", "1", ..."""
    try:
        import medmnist
        names = medmnist.INFO[flag]["label"]
        return [names[str(i)] for i in range(max(num_classes, len(names)))]
    except (ImportError, KeyError):
        return [str(i) for i in range(num_classes)]


# ---------------------------------------------------------------------------- shared helpers

def _existing_folder(data_path, name, what) -> Path:
    if data_path is None:
        raise NbstudyError(f"dataset {name!r} needs data_path= pointing at {what}")
    path = Path(data_path).expanduser()
    if not path.is_dir():
        raise NbstudyError(f"dataset path {path} does not exist or is not a folder: pass data_path= pointing "
                           f"at {what}")
    return path


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")),
                  key=lambda d: d.name)


def _listing(folder: Path, limit: int = 8) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "nothing"
    return ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")


def _class_files(folder: Path, class_names, images_subfolder=None, require_all=True):
    """Image paths and labels of class-per-folder `folder`, sorted by path.
    Hidden files and non-images are skipped, with one warning saying how many."""
    paths, labels, skipped = [], [], 0
    for label, class_name in enumerate(class_names):
        class_dir = folder / class_name
        if not class_dir.is_dir():
            if not require_all:
                continue
            raise NbstudyError(f"{folder} has no {class_name}/ class folder (found: {_listing(folder)}); "
                               f"expected one folder per class: {', '.join(class_names)}")
        image_dir = class_dir / images_subfolder if images_subfolder else class_dir
        if not image_dir.is_dir():
            raise NbstudyError(f"{class_dir} has no {images_subfolder}/ folder (found: {_listing(class_dir)})")
        found, n_skipped = _image_files(image_dir)
        if not found:
            raise NbstudyError(f"class folder {image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}): "
                               "add images or remove the folder")
        paths += found
        labels += [label] * len(found)
        skipped += n_skipped
    if skipped:
        warnings.warn(f"skipped {skipped} hidden or non-image files under {folder}", stacklevel=3)
    return paths, np.array(labels, dtype=np.int64)


def _image_files(folder: Path):
    """All image files below `folder` (hidden folders skipped), sorted; and how many others were skipped."""
    found, skipped = [], 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            path = Path(dirpath) / filename
            if is_image_file(path):
                found.append(path)
            else:
                skipped += 1
    return sorted(found), skipped


def _subsample(paths, labels, subsample, seed):
    """Keep a seeded, stratified part of each class: a fraction in (0, 1] (at
    least one image per class) or an int count per class (all if fewer)."""
    if subsample is None:
        return paths, labels
    is_count = isinstance(subsample, (int, np.integer)) and not isinstance(subsample, bool)
    is_fraction = isinstance(subsample, (float, np.floating)) and 0 < subsample <= 1
    if not (is_count and subsample >= 1) and not is_fraction:
        raise NbstudyError(f"subsample must be a fraction in (0, 1] or a whole number of images per class, "
                           f"got {subsample!r}")
    rng = np.random.default_rng([seed, 2])
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n = min(subsample, len(members)) if is_count else max(1, round(subsample * len(members)))
        keep.append(rng.choice(members, n, replace=False))
    keep = np.sort(np.concatenate(keep))
    return [paths[i] for i in keep], labels[keep]


def _prepare_files(dataset, files, resolution, root, cache_dir, workers, skip_unreadable):
    """Run the prepare step on each split: {split: (images memmap, labels)}, the image files left out as
    unreadable (only with skip_unreadable; one warning says how many) and the training images' files
    (relative to `root`, in array order)."""
    if cache_dir is None:
        cache_dir = cache.default_cache_dir(root)
    if not isinstance(skip_unreadable, bool):
        raise NbstudyError(f"skip_unreadable must be true or false, got {skip_unreadable!r}")
    for split, (paths, _) in files.items():
        if not paths:
            raise NbstudyError(f"the {split} split of {root} has no images: add some")
    arrays, skipped = {}, []
    for split, (paths, labels) in files.items():
        images, kept = cache.prepare_image_files(paths, dataset=dataset, split=split, resolution=resolution,
                                                 source=root, cache_dir=cache_dir, workers=workers,
                                                 skip_unreadable=skip_unreadable)
        arrays[split] = (images, labels[kept])
        skipped += [str(paths[i]) for i in np.setdiff1d(np.arange(len(paths)), kept)]
        if split == "train":
            names = tuple(Path(paths[i]).relative_to(root).as_posix() for i in kept)
    if skipped:
        warnings.warn(f"left out {len(skipped)} unreadable image(s) under {root} (skip_unreadable), e.g. "
                      f"{skipped[0]}", stacklevel=3)
    return arrays, tuple(skipped), names


def _no_test_fraction(test_fraction, why: str) -> None:
    if test_fraction is not None:
        raise NbstudyError(f"test_fraction does not apply: {why}; drop the option")


def _resplit(arrays: dict, subsample, test_fraction, seed, where: str) -> dict:
    """subsample and test_fraction on in-memory {split: (images, labels)}: the same seeded, stratified
    choices as for image files (test_fraction splits the one split a source has into train and test)."""
    if test_fraction is not None:
        if "train" in arrays and "test" in arrays:
            _no_test_fraction(test_fraction, f"{where} already has train and test splits")
        images, labels = arrays.pop("train" if "train" in arrays else "test")
        parts = _stratified_split(np.arange(len(labels)), labels, test_fraction, seed)
        arrays.update({split: (images[np.array(idx, dtype=np.int64)], y) for split, (idx, y) in parts.items()})
    if subsample is not None:
        images, labels = arrays["train"]
        idx, y = _subsample(np.arange(len(labels)), labels, subsample, seed)
        arrays["train"] = (images[np.array(idx, dtype=np.int64)], y)
    return arrays


DATASETS = {
    "synthetic": load_synthetic,
    "nct_crc_he": load_nct_crc_he,
    "covid_qu_ex": load_covid_qu_ex,
    "medmnist": load_medmnist,
    "image_folder": load_image_folder,
}
