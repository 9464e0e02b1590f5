"""Figures a notebook shows, kept with the numbers they were drawn from.

``show(fig, name, data, folder)`` displays a figure (in a notebook) and, when a
folder is given, writes ``<folder>/figures/<name>.png`` and ``<name>.json``:
the values the figure plots. Tests and readers check those values rather than
counting images or reading captions. ``load(folder, name)`` reads them back.
"""

from __future__ import annotations

import io
import json
from pathlib import Path


from matplotlib.figure import Figure as MatplotlibFigure

from nbstudy.checkpoint import atomic_write
from nbstudy.plain import jsonable

FOLDER = "figures"


def show(fig, name: str, data, folder=None) -> None:
    """Display `fig`; with `folder`, save it and `data` (dict, list, DataFrame, arrays) as figures/<name>.*

    Returns None, so a cell ending with it does not show the figure a second time."""
    if folder:
        out = Path(folder) / FOLDER
        atomic_write(out / f"{name}.png", lambda tmp: fig.savefig(tmp, format="png", dpi=80))
        text = json.dumps(jsonable(data), indent=1, allow_nan=False)
        atomic_write(out / f"{name}.json", lambda tmp: Path(tmp).write_text(text))
    try:
        from IPython.display import display
    except ImportError:  # outside IPython there is nothing to display on
        return
    display(fig)
    import matplotlib.pyplot as plt

    plt.close(fig)   # shown once: pyplot would draw it again at the end of the cell


class Figure(MatplotlibFigure):
    """A matplotlib Figure that shows itself as a picture wherever IPython displays it (JupyterLab, VS Code,
    papermill), with no `%matplotlib inline` first: IPython asks it for `_repr_png_`. nbstudy's plots make these."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def load(folder, name: str):
    """The data a notebook saved with figure `name` in `folder`."""
    return json.loads((Path(folder) / FOLDER / f"{name}.json").read_text())

