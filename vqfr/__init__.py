"""vqfr-eval: evaluation and benchmarking suite for blind face restoration."""

__version__ = "0.1.0"
