"""What follows from the stages' parameter tables, outside the package: notebook cells and docs tables.

Each stage notebook's parameters cell and each docs table between the markers
``<!-- generated: NAME -->`` and ``<!-- /generated -->`` is text made from
`PARAMS` and the method registries. ``python -m nbstudy.contract`` rewrites them
after a parameter changes; the test suite fails while any of them differs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

from nbstudy import params as P
from nbstudy.lnl import params as lnl_params
from nbstudy.lnl.registry import METHODS as LNL_METHODS
from nbstudy.pretrain import params as pretrain_params
from nbstudy.pretrain.registry import METHODS as PRETRAIN_METHODS
from nbstudy.study import GRID_AXES, stage_keys

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {"01_pretrain.ipynb": (pretrain_params.PARAMS, PRETRAIN_METHODS),
             "02_train_noisy.ipynb": (lnl_params.PARAMS, LNL_METHODS)}
MARK = re.compile(r"(<!-- generated: (\S+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def tables() -> dict:
    """{marker name: the generated markdown}."""
    return {
        "pretrain-params": P.markdown_table(pretrain_params.PARAMS),
        "pretrain-options": P.methods_table(PRETRAIN_METHODS),
        "train-params": P.markdown_table(lnl_params.PARAMS),
        "train-options": P.methods_table(LNL_METHODS),
        "study-keys": "\n".join([
            "| section | keys (each a stage parameter, same check and default) |", "| --- | --- |",
            "| `pretrain` and each of its `methods` | " + ", ".join(f"`{k}`" for k in stage_keys("pretrain")) + " |",
            "| `train` and each of its `methods` | " + ", ".join(f"`{k}`" for k in stage_keys("train")) + " |",
            "| `train` grid axes | " + ", ".join(f"`{k}` (lists of `{v}`)" for k, v in GRID_AXES.items()) + " |"]),
    }


def parameters_cells() -> dict:
    """{notebook file name: the source its parameters cell must have}."""
    return {name: P.parameters_cell(table, methods) for name, (table, methods) in NOTEBOOKS.items()}


def notebook_cell(path: Path):
    """The notebook and its cell tagged `parameters`."""
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{path} must have exactly one cell tagged 'parameters', has {len(tagged)}")
    return nb, tagged[0]


def doc_tables(path: Path) -> dict:
    """{marker name: the text between the markers} in a docs file."""
    return {m.group(2): m.group(3).rstrip("\n") for m in MARK.finditer(path.read_text())}


def write(root: Path = ROOT) -> list:
    """Rewrite every generated cell and table under `root`; return the files that changed."""
    changed = []
    for name, source in parameters_cells().items():
        path = root / "notebooks" / name
        nb, cell = notebook_cell(path)
        if cell.source != source:
            cell.source = source
            nbformat.write(nb, path)
            changed.append(path)
    generated = tables()
    for path in sorted((root / "docs").glob("*.md")):
        text = path.read_text()
        new = MARK.sub(lambda m: m.group(1) + generated[m.group(2)] + "\n" + m.group(4), text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in write():
        print(f"rewrote {path.relative_to(ROOT)}")
    sys.exit(0)
