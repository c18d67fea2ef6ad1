"""From half-hourly fluxes to a carbon budget (docs/budget.md): storage flux, u* filtering, MDS gap filling,
random uncertainty, nighttime/daytime partitioning, aggregation with uncertainty.

Pure functions, numpy arrays in and out, no I/O; FLUXNET2015/ONEFlux variable names; each module cites its method.

- `storage`: storage flux SC and NEE = FC + SC
- `ustar`: u* threshold, moving-point test (Papale et al. 2006) as ONEFlux runs it, with bootstrap
- `mds`: marginal distribution sampling gap filling (Reichstein et al. 2005) as REddyProc implements it
- `randunc`: half-hourly random uncertainty as ONEFlux estimates it
- `solar`, `partition_nt`, `partition_dt`: potential radiation and the partitioning into GPP and RECO
- `aggregate`: daily, monthly, annual sums in gC m-2 and tCO2e ha-1 with their uncertainty
- `pipeline`: the whole chain on one site-year
"""
