"""lossd: machine-learning loss functions as an HTTP service."""

__version__ = "0.1.0"
