"""Soil gas diffusivity of CO2: free-air diffusivity D0(T, p) and relative diffusivity models ξ = Ds/D0(ε, φ).

Symbols and units (docs/soil-stems.md):

- ``φ`` total porosity, m3 m-3 (``total_porosity(bulk density, particle density) = 1 - ρb/ρp``)
- ``θ`` volumetric soil water content, m3 m-3
- ``ε = φ - θ`` air-filled porosity, m3 m-3
- ``D0`` CO2 diffusivity in free air, m2 s-1; ``Ds = ξ·D0`` in the soil, m2 s-1

Free-air diffusivity (the two forms in use in soil-gas work):

- Massman, W. J. (1998): A review of the molecular diffusivities of H2O, CO2, CH4, CO, O3, SO2, NH3, N2O, NO, and
  NO2 in air, O2 and N2 near STP. Atmos. Environ. 32(6), 1111-1127, Table 2/eq. (1):
  ``D0 = 1.381e-5 · (T/273.15)^1.81 · (101325/p)`` m2 s-1.
- Jones, H. G. (1992): Plants and microclimate, 2nd ed., Cambridge Univ. Press, App. 2/ch. 3, as used by Tang et al.
  (2003) and NEON: ``D0 = 1.47e-5 · (T/293.15)^1.75 · (101300/p)`` m2 s-1.

Relative diffusivity ξ = Ds/D0 (all dimensionless, ε and φ in m3 m-3):

- Penman, H. L. (1940): Gas and vapour movements in the soil I. J. Agric. Sci. 30, 437-462: ``ξ = 0.66·ε``.
- Marshall, T. J. (1959): The diffusion of gases through porous media. J. Soil Sci. 10, 79-82: ``ξ = ε^1.5``.
- Millington, R. J. & Quirk, J. P. (1961): Permeability of porous solids. Trans. Faraday Soc. 57, 1200-1207:
  ``ξ = ε^(10/3) / φ²``.
- Moldrup, P. et al. (1999): Modeling diffusion and reaction in soils IX. The Buckingham-Burdine-Campbell equation
  for gas diffusivity in undisturbed soil. Soil Sci. 164(8), 542-551, in the texture form used by Tang et al.
  (2005, Agric. For. Meteorol. 132, 212-227): ``ξ = φ² · (ε/φ)^(β·S)`` with ``β = 2.9`` and ``S`` the mass
  fraction of mineral particles larger than 2 µm (sand + silt).
- Moldrup, P. et al. (2000a): Predicting the gas diffusion coefficient in repacked soil: water-induced linear
  reduction model. Soil Sci. Soc. Am. J. 64, 1588-1594 (WLR-Marshall): ``ξ = ε^1.5 · ε/φ = ε^2.5/φ``.
- Moldrup, P. et al. (2000b): Predicting the gas diffusion coefficient in undisturbed soil from soil water
  characteristics. Soil Sci. Soc. Am. J. 64, 94-100: ``ξ = (2·ε100³ + 0.04·ε100) · (ε/ε100)^(2 + 3/b)``, with
  ``ε100`` the air-filled porosity at -100 cm water head and ``b`` Campbell's (1974) retention slope (only when the
  site metadata give both).

The spread of ξ across the models a site can use is a *structural* uncertainty of the gradient method (Pingintha
et al. 2010, Tellus B 62, 47-58, found factors of 2-3 between models): :func:`relative_diffusivity_all` returns
every applicable model so the caller can report the spread beside the chosen one.

Pure functions: numpy arrays in, arrays out, no I/O. Invalid site metadata raise ``ValueError`` naming the input
and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "D0_MODELS",
    "DIFFUSIVITY_MODELS",
    "D0Model",
    "DiffusivityModel",
    "SoilSite",
    "air_filled_porosity",
    "d0_co2",
    "relative_diffusivity",
    "relative_diffusivity_all",
    "total_porosity",
]

FloatArray = NDArray[np.float64]
D0Model = Literal["massman1998", "jones1992"]
DiffusivityModel = Literal[
    "penman1940", "marshall1959", "millington_quirk1961", "moldrup1999", "moldrup2000_wlr", "moldrup2000_swc"
]
D0_MODELS: tuple[D0Model, ...] = ("massman1998", "jones1992")
DIFFUSIVITY_MODELS: tuple[DiffusivityModel, ...] = (
    "penman1940", "marshall1959", "millington_quirk1961", "moldrup1999", "moldrup2000_wlr", "moldrup2000_swc"
)

MOLDRUP1999_BETA = 2.9
"""β of the Moldrup et al. (1999) texture form (Tang et al. 2005), dimensionless."""
DEFAULT_PARTICLE_DENSITY = 2.65
"""Particle density of mineral soil, g cm-3 (quartz; the usual default when the site has no measurement)."""


@dataclass(frozen=True)
class SoilSite:
    """Site metadata of one soil profile (one value per layer or one for all).

    ``bulk_density``: dry bulk density ρb, g cm-3. ``particle_density``: ρp, g cm-3 (default 2.65).
    ``sand``, ``silt``, ``clay``: mass fractions of the fine earth (0-1, summing to ~1); needed by
    ``moldrup1999``. ``eps100``: air-filled porosity at -100 cm water head, m3 m-3, and ``campbell_b``: Campbell's b,
    dimensionless; needed by ``moldrup2000_swc``. ``porosity``: total porosity φ, m3 m-3, when measured directly
    (otherwise from the densities).
    """

    bulk_density: float | tuple[float, ...] | None = None
    particle_density: float | tuple[float, ...] = DEFAULT_PARTICLE_DENSITY
    porosity: float | tuple[float, ...] | None = None
    sand: float | tuple[float, ...] | None = None
    silt: float | tuple[float, ...] | None = None
    clay: float | tuple[float, ...] | None = None
    eps100: float | tuple[float, ...] | None = None
    campbell_b: float | tuple[float, ...] | None = None

    def phi(self) -> FloatArray:
        """Total porosity φ, m3 m-3 (measured, or 1 - ρb/ρp); ValueError naming the missing key otherwise."""
        if self.porosity is not None:
            phi = np.asarray(self.porosity, dtype=np.float64)
            _check_fraction(phi, "porosity", "total porosity in m3 m-3, e.g. 0.5", open_low=True)
            return phi
        if self.bulk_density is None:
            raise ValueError("soil site metadata: give 'porosity' (m3 m-3) or 'bulk_density' (g cm-3) to compute it")
        return total_porosity(self.bulk_density, self.particle_density)

    def coarse_fraction(self) -> FloatArray:
        """``S`` of Moldrup et al. (1999): mass fraction of mineral particles > 2 µm (sand + silt), 0-1."""
        if self.clay is not None:
            clay = np.asarray(self.clay, dtype=np.float64)
            _check_fraction(clay, "clay", "a mass fraction 0-1 (e.g. 0.18 for 18 % clay)")
            return 1.0 - clay
        if self.sand is not None and self.silt is not None:
            s = np.asarray(self.sand, dtype=np.float64) + np.asarray(self.silt, dtype=np.float64)
            _check_fraction(s, "sand + silt", "mass fractions 0-1 that sum to at most 1")
            return s
        raise ValueError("soil site metadata: moldrup1999 needs the texture: give 'clay' (or 'sand' and 'silt') as "
                         "mass fractions 0-1")


def _check_fraction(values: FloatArray, name: str, fix: str, *, open_low: bool = False) -> None:
    bad = ~np.isfinite(values) | (values <= 0.0 if open_low else values < 0.0) | (values > 1.0)
    if np.any(bad):
        shown = values[bad].ravel()[:3].tolist()
        percent = np.all(values[bad] > 1.0) and np.all(values[bad] <= 100)
        hint = " (looks like percent: divide by 100)" if percent else ""
        raise ValueError(f"{name} must lie in {'(0, 1]' if open_low else '[0, 1]'}; got {shown}{hint}; give {fix}")


def total_porosity(bulk_density: ArrayLike, particle_density: ArrayLike = DEFAULT_PARTICLE_DENSITY) -> FloatArray:
    """Total porosity φ = 1 - ρb/ρp, m3 m-3 (Hillel 1980, Fundamentals of Soil Physics, eq. 2.6); densities g cm-3."""
    rho_b = np.asarray(bulk_density, dtype=np.float64)
    rho_p = np.asarray(particle_density, dtype=np.float64)
    if np.any(~np.isfinite(rho_b) | (rho_b <= 0.0)):
        raise ValueError(f"bulk_density must be a positive density in g cm-3 (e.g. 1.3); got {rho_b.ravel()[:3]}")
    if np.any(~np.isfinite(rho_p) | (rho_p <= 0.0)):
        raise ValueError(f"particle_density must be positive, g cm-3 (2.65 for mineral soil); got {rho_p.ravel()[:3]}")
    phi = 1.0 - rho_b / rho_p
    if np.any(phi <= 0.0) or np.any(phi >= 1.0):
        raise ValueError(f"bulk_density {rho_b.ravel()[:3]} g cm-3 with particle_density {rho_p.ravel()[:3]} gives a "
                         "porosity outside (0, 1): check the units (g cm-3, not kg m-3)")
    return phi


def air_filled_porosity(swc: ArrayLike, porosity: ArrayLike) -> FloatArray:
    """ε = φ - θ, m3 m-3, clipped at 0 where the soil is saturated (θ ≥ φ; the caller flags it).

    ``swc``: volumetric soil water content θ, m3 m-3 (AmeriFlux ``SWC`` is in %: divide by 100 first). NaN stays
    NaN. Raises ValueError when θ is outside [0, 1] (the usual cause: percent instead of a fraction) or φ outside
    (0, 1].
    """
    theta = np.asarray(swc, dtype=np.float64)
    phi = np.asarray(porosity, dtype=np.float64)
    _check_fraction(phi, "porosity", "total porosity in m3 m-3", open_low=True)
    finite = theta[np.isfinite(theta)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        hint = " — looks like percent (AmeriFlux SWC): divide by 100" if finite.max() <= 100.0 else ""
        raise ValueError(f"soil water content must be m3 m-3 in [0, 1]; got values in [{finite.min():g}, "
                         f"{finite.max():g}]{hint}")
    return np.maximum(phi - theta, 0.0)


def d0_co2(t_c: ArrayLike, p_pa: ArrayLike, model: D0Model = "massman1998") -> FloatArray:
    """CO2 diffusivity in free air D0, m2 s-1, from temperature (°C) and pressure (Pa).

    ``massman1998``: ``1.381e-5 · (T/273.15)^1.81 · (101325/p)`` (Massman 1998, Table 2 and eq. 1).
    ``jones1992``: ``1.47e-5 · (T/293.15)^1.75 · (101300/p)`` (Jones 1992; Tang et al. 2003).
    Jones's value is ~7 % below Massman's at 20 °C (1.47e-5 vs 1.57e-5 m2 s-1); the choice is part of the
    structural uncertainty (docs/soil-stems.md).
    """
    t_k = np.asarray(t_c, dtype=np.float64) + 273.15
    p = np.asarray(p_pa, dtype=np.float64)
    if np.any(p[np.isfinite(p)] < 1000.0):
        raise ValueError(f"pressure must be in Pa (e.g. 98000); got {np.nanmin(p):g} — hPa or kPa? multiply")
    if model == "massman1998":
        return 1.381e-5 * (t_k / 273.15) ** 1.81 * (101325.0 / p)
    if model == "jones1992":
        return 1.47e-5 * (t_k / 293.15) ** 1.75 * (101300.0 / p)
    raise ValueError(f"unknown D0 model {model!r}; use one of {', '.join(D0_MODELS)}")


def relative_diffusivity(
    eps: ArrayLike, phi: ArrayLike, model: DiffusivityModel = "millington_quirk1961", *, site: SoilSite | None = None
) -> FloatArray:
    """Relative soil gas diffusivity ξ = Ds/D0 (dimensionless) from air-filled porosity ε and porosity φ (m3 m-3).

    ``model`` names one of the equations of the module docstring; ``moldrup1999`` needs ``site`` texture
    (clay, or sand and silt), ``moldrup2000_swc`` needs ``site.eps100`` and ``site.campbell_b``. ε ≤ 0 gives 0
    (no gas path).
    """
    e = np.maximum(np.asarray(eps, dtype=np.float64), 0.0)
    p = np.asarray(phi, dtype=np.float64)
    if model == "penman1940":
        return 0.66 * e
    if model == "marshall1959":
        return e**1.5
    if model == "millington_quirk1961":
        return e ** (10.0 / 3.0) / p**2
    if model == "moldrup2000_wlr":
        return e**2.5 / p
    if model == "moldrup1999":
        if site is None:
            raise ValueError("moldrup1999 needs the soil texture: pass site=SoilSite(clay=...) (mass fraction 0-1)")
        s = site.coarse_fraction()
        return p**2 * (e / p) ** (MOLDRUP1999_BETA * s)
    if model == "moldrup2000_swc":
        if site is None or site.eps100 is None or site.campbell_b is None:
            raise ValueError("moldrup2000_swc needs site=SoilSite(eps100=..., campbell_b=...): the air-filled "
                             "porosity at -100 cm head (m3 m-3) and Campbell's b")
        e100 = np.asarray(site.eps100, dtype=np.float64)
        b = np.asarray(site.campbell_b, dtype=np.float64)
        _check_fraction(e100, "eps100", "the air-filled porosity at -100 cm water head, m3 m-3", open_low=True)
        if np.any(~np.isfinite(b) | (b <= 0.0)):
            raise ValueError(f"campbell_b must be positive (typically 2-12); got {b.ravel()[:3]}")
        return (2.0 * e100**3 + 0.04 * e100) * (e / e100) ** (2.0 + 3.0 / b)
    raise ValueError(f"unknown diffusivity model {model!r}; use one of {', '.join(DIFFUSIVITY_MODELS)}")


def applicable_models(site: SoilSite | None) -> tuple[DiffusivityModel, ...]:
    """The diffusivity models the site metadata allow (texture → moldrup1999; ε100 and b → moldrup2000_swc)."""
    models: list[DiffusivityModel] = ["penman1940", "marshall1959", "millington_quirk1961", "moldrup2000_wlr"]
    if site is not None and (site.clay is not None or (site.sand is not None and site.silt is not None)):
        models.append("moldrup1999")
    if site is not None and site.eps100 is not None and site.campbell_b is not None:
        models.append("moldrup2000_swc")
    return tuple(models)


def relative_diffusivity_all(
    eps: ArrayLike, phi: ArrayLike, site: SoilSite | None = None
) -> dict[DiffusivityModel, FloatArray]:
    """ξ of every model the site metadata allow (:func:`applicable_models`), keyed by model name."""
    return {m: relative_diffusivity(eps, phi, m, site=site) for m in applicable_models(site)}
