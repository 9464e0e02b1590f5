"""The noisy-label methods by name. A new method is one module defining a `base.Method`, added here."""

from nbstudy.lnl import ce, coteaching, dividemix

METHODS = {m.name: m for m in (ce.METHOD, coteaching.METHOD, dividemix.METHOD)}
