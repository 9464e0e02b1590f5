"""Given labels: a user's own (possibly noisy) labels for a data set's training split, from a CSV file.

The file has a header and one row per training image, keyed by the image's
file (relative to the data folder, as `suspects.csv` names it) or by its
index in the training split:

    path,label                      index,label
    benign/img_0001.png,malignant   0,1
    ...                             ...

A label is a class name of the data set or its index 0..K-1. The test and
validation splits keep their labels: they are the trusted reference the
runs are scored on. Every mismatch is a one-line error naming the file, the
line and the fix; nothing trains on a partly applied file.
"""

from __future__ import annotations

import csv
import dataclasses
import warnings
from pathlib import Path

import numpy as np

from nbstudy.errors import NbstudyError

KEYS = ("path", "index")


def apply(ds, labels_file):
    """`ds` (a `nbstudy.data.Dataset`) with its training labels read from `labels_file` (see the module docstring).

    Errors (NbstudyError, one line): a missing or unreadable file, a header other than path,label or
    index,label, an unknown path, index or class, a repeated image, training images without a row."""
    path = Path(labels_file).expanduser()
    where = f"labels file {path}"
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise NbstudyError(f"{where} does not exist: fix the dataset option labels") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NbstudyError(f"cannot read {where} ({e}): save it as a UTF-8 CSV") from None
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if len(header) != 2 or header[0] not in KEYS or header[1] != "label":
        got = f"got {','.join(rows[0])!r}" if rows else "but the file is empty"
        raise NbstudyError(f"{where}: the first line must be the header path,label or index,label, {got}")
    key = header[0]
    if key == "path" and ds.train_files is None:
        raise NbstudyError(f"{where} names images by path, but the {ds.name} data set has no image files: "
                           "name them by index (header index,label)")
    n = len(ds.train_labels)
    positions = ({name: i for i, name in enumerate(ds.train_files)} if key == "path" else None)
    classes = {name: c for c, name in enumerate(ds.class_names)}
    given = np.full(n, -1, dtype=np.int64)
    left_out = _left_out(ds) if key == "path" else set()
    ignored = 0
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue   # a blank line
        if len(row) != 2:
            raise NbstudyError(f"{where} line {line}: expected 2 columns ({key},label), got {len(row)}: {row!r}")
        if Path(row[0].strip()).as_posix() in left_out:
            ignored += 1   # its image was left out as unreadable (skip_unreadable): so is its label
            continue
        i = _position(row[0].strip(), key, positions, n, f"{where} line {line}")
        if given[i] != -1:
            raise NbstudyError(f"{where} line {line}: {key} {row[0].strip()} has a label already (an earlier line): "
                               "give each image one row")
        given[i] = _label(row[1].strip(), classes, f"{where} line {line}")
    missing = np.flatnonzero(given == -1)
    if len(missing):
        first = ds.train_files[missing[0]] if key == "path" else missing[0]
        raise NbstudyError(f"{where} has no label for {len(missing)} of the {n} training images (first: {key} "
                           f"{first}): give every training image a row")
    if ignored:
        warnings.warn(f"{where}: {ignored} row(s) are for images left out as unreadable (skip_unreadable): "
                      "their labels are not used", stacklevel=3)
    return dataclasses.replace(ds, train_labels=given, labels_file=str(path.resolve()))


def _left_out(ds) -> set:
    """The images `skip_unreadable` left out, as paths relative to the data folder (as the labels file gives them)."""
    out = set()
    for skipped in ds.unreadable_skipped:
        try:
            out.add(Path(skipped).relative_to(ds.source).as_posix())
        except ValueError:
            pass
    return out


def _position(value: str, key: str, positions, n: int, where: str) -> int:
    if key == "path":
        i = positions.get(Path(value).as_posix())
        if i is None:
            raise NbstudyError(f"{where}: {value} is not a training image of the data set (paths are relative to "
                               "the data folder, as in suspects.csv)")
        return i
    try:
        i = int(value)
    except ValueError:
        raise NbstudyError(f"{where}: index {value!r} is not a whole number") from None
    if not 0 <= i < n:
        raise NbstudyError(f"{where}: index {i} is outside the training split (0..{n - 1})")
    return i


def _label(value: str, classes: dict, where: str) -> int:
    if value in classes:
        return classes[value]
    if value.isdigit() and int(value) < len(classes):
        return int(value)
    shown = ", ".join(list(classes)[:10]) + (", ..." if len(classes) > 10 else "")
    raise NbstudyError(f"{where}: unknown class {value!r}: use one of {shown} or an index 0..{len(classes) - 1}")
