"""Physical constants, with the values EddyPro's conventions use (EDDYPRO-REFERENCE.md) so results compare exactly."""

from __future__ import annotations

R_GAS = 8.314
"""Universal gas constant, J mol-1 K-1 (the value of EDDYPRO-REFERENCE.md)."""
M_H2O = 18.02e-3
"""Molar mass of water, kg mol-1."""
M_CO2 = 44.01e-3
"""Molar mass of CO2, kg mol-1."""
M_DRY_AIR = 28.96e-3
"""Molar mass of dry air, kg mol-1."""
R_DRY_AIR = 287.04
"""Specific gas constant of dry air, J kg-1 K-1."""
VON_KARMAN = 0.41
"""von Kármán constant (dimensionless)."""
GRAVITY = 9.81
"""Acceleration of gravity, m s-2."""
P_REFERENCE_THETA = 100000.0
"""Reference pressure of the potential temperature, Pa."""
KAPPA_DRY_AIR = 0.286
"""Rd/cpd, the exponent of the potential temperature (Stull 1988, eq. 1.5.1a)."""
OMEGA_EARTH = 7.292e-5
"""Angular velocity of the Earth, rad s-1 (Coriolis parameter f = 2·Ω·sin φ)."""
P_SEA_LEVEL = 101300.0
"""Reference pressure of the altitude formula p = 101300·exp(−z/8200), Pa."""
SCALE_HEIGHT = 8200.0
"""Scale height of the altitude formula, m."""
SONIC_HUMIDITY_COEF = 0.51
"""Ts ≈ T·(1 + 0.51·q) (Kaimal & Gaynor 1991; van Dijk et al. 2004)."""
LI7200_CELL_VOLUME = 16e-6
"""LI-7200 sampling cell volume, m3 (LI-COR LI-7200 manual), used for the nominal closed-path lag."""
