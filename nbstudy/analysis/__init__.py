"""The analysis of a study: collect its runs (`runs`), draw its figures (`plots`), tabulate its results (`tables`).

Figures are `matplotlib.figure.Figure` objects made without pyplot, so a
notebook shows each one exactly once (as a cell's value or with `display`) and
no figure is left open between slider moves.
"""
