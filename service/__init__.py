"""lossd: machine-learning loss functions as an HTTP service."""

from . import kernel_cache

# First of all: numba picks a kernel's cache directory when it decorates it (kernel_cache.py).
KERNEL_CACHE = kernel_cache.configure()

__version__ = "0.1.0"
