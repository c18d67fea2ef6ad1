"""Eddy-covariance engine: pure functions, numpy arrays in and out, no I/O (see docs/flux-ec.md)."""
