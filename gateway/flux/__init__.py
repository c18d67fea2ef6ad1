"""Flux science: the eddy-covariance engine (`gateway.flux.ec`), its file readers and the `sinkwatch flux` CLI."""
