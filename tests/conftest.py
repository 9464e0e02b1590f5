"""Shared test settings.

OMP_WAIT_POLICY=PASSIVE: PyTorch's OpenMP threads otherwise spin while waiting,
which on a small shared CPU (CI has 2 cores) slows training steps many times over.
Set before torch is imported; notebook kernels started by the tests inherit it.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
