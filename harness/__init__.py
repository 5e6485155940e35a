"""KDSR benchmarking harness: datasets, encode jobs, recommenders, KDSR, sweeps and reports."""

__version__ = "0.1.0"
