"""Carbon budget from half-hourly fluxes: u* filtering, gap filling, partitioning, aggregation (docs/budget.md).

Pure functions, numpy arrays in and out, no I/O.
"""
