"""Soil CO2 efflux science (docs/soil-stems.md): pure functions, numpy arrays in and out, no I/O.

- :mod:`gateway.flux.soil.diffusivity` — free-air D0(T, p) and soil relative diffusivity models ξ(ε, φ)
- :mod:`gateway.flux.soil.gradient` — gradient method: probe compensation, Fick's law between depths, surface
  efflux (Tang et al. 2003/2005, exponential profile, De Jong & Schappert 1972), uncertainty and QC flags
- :mod:`gateway.flux.soil.chamber` — automated closed chambers: closure detection, linear and HMR fluxes with the
  κ-max rule, QC
- :mod:`gateway.flux.soil.varpro` — vectorised separable least squares shared by the profile and chamber fits

Science packages import only numpy/scipy and each other, never the edge, central or driver layers.
"""
