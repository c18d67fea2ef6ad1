"""Stem science (docs/soil-stems.md): pure functions, numpy arrays in and out, no I/O.

- :mod:`gateway.flux.stems.dendro` — dendrometer cleaning, zero-growth GRO/TWD, daily statistics, diameter change
- :mod:`gateway.flux.stems.allometry` — DBH → above-ground biomass, carbon, CO2e, plot upscaling with uncertainty

Science packages import only numpy/scipy and each other, never the edge, central or driver layers.
"""
