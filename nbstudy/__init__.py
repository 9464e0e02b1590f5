"""nbstudy: does self-supervised pretraining make a classifier robust to noisy labels?"""

__version__ = "0.1.0"
