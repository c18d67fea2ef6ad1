"""Spectral correction factors for eddy-covariance fluxes.

Pure functions: frequencies (Hz) in, transfer functions / factors out, no I/O. Transfer functions (TF) are *power*
transfer functions ``|H(f)|^2`` unless their name ends in ``_cosp``; the attenuation of a cospectrum between two
signals is the square root of the product of their power TFs (Moore 1986, eq. 2; Moncrieff et al. 1997, eq. 3).

References
----------
* Moore, C. J. (1986): Frequency response corrections for eddy correlation systems. Boundary-Layer Meteorol. 37,
  17-35 (line averaging eqs. 7-9, sensor separation eq. 11, first-order response eq. 4).
* Moncrieff, J. B. et al. (1997): A system to measure surface fluxes of momentum, sensible heat, water vapour and
  carbon dioxide. J. Hydrol. 188-189, 589-611 (TF set eqs. 1-9, Kaimal cospectra eqs. 10-13, correction factor
  eq. 1: ``CF = int Co df / int TF Co df``).
* Kaimal, J. C., Wyngaard, J. C., Izumi, Y. & Cote, O. R. (1972): Spectral characteristics of surface-layer
  turbulence. Q. J. R. Meteorol. Soc. 98, 563-589 (model cospectra; unstable forms as given by Moncrieff 1997).
* Massman, W. J. (1991): The attenuation of concentration fluctuations in turbulent flow through a tube. JGR 96,
  15269-15273; Leuning, R. & Moncrieff, J. (1990), Boundary-Layer Meteorol. 53, 63-76 (turbulent tube flow,
  ``exp(-80 Re^-1/8 pi^2 f^2 r L / U^2)``, Lenschow & Raupach 1991 constant).
* Horst, T. W. & Lenschow, D. H. (2009): Attenuation of scalar fluxes measured with spatially-displaced sensors.
  Boundary-Layer Meteorol. 130, 275-300. NOT implemented here (their stability-dependent along-, cross-wind and
  vertical forms); :func:`tf_sensor_separation` uses Moore's (1986) eq. 11 lateral-separation form instead.
* Ibrom, A., Dellwik, E., Flyvbjerg, H., Jensen, N. O. & Pilegaard, K. (2007): Strong low-pass filtering effects on
  water vapour flux measurements with closed-path eddy correlation systems. Agric. For. Meteorol. 147, 140-156
  (first-order IIR TF ``1 / (1 + (f / fc)^2)``, eq. 4; per-RH-class cut-off frequencies; CF model eq. 8).
* Fratini, G., Ibrom, A., Arriga, N., Burba, G. & Papale, D. (2012): Relative humidity effects on water vapour
  fluxes measured with closed-path eddy-covariance systems with short sampling lines. Agric. For. Meteorol. 165,
  53-63 (eq. 3: ``CF = int Co_ref H_ref df / int Co_ref H_ref H_IIR df``, with the measured or modelled sensible
  heat cospectrum as the reference).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "SpectralAssessment",
    "correction_factor",
    "fratini2012_factor",
    "frequency_grid",
    "ibrom_cf_model",
    "iir_lowpass",
    "kaimal_cospectrum",
    "parse_spectral_assessment",
    "tf_block_average",
    "tf_first_order",
    "tf_running_mean",
    "tf_scalar_path",
    "tf_sensor_separation",
    "tf_tube_turbulent",
    "tf_w_path",
]

F64 = NDArray[np.float64]


def _f(f: ArrayLike) -> F64:
    return np.asarray(f, dtype=np.float64)


def frequency_grid(f_min: float = 1e-5, f_max: float = 10.0, n: int = 4000) -> F64:
    """Log-spaced natural frequencies, Hz (default 1e-5 ... 10 Hz, the Nyquist frequency of 20 Hz data)."""
    return np.logspace(math.log10(f_min), math.log10(f_max), n)


def tf_block_average(f: ArrayLike, period_s: float) -> F64:
    """Block-average (mean removal) high-pass TF, ``1 - sin^2(pi f T) / (pi f T)^2`` (Moncrieff et al. 2004, in
    Handbook of Micrometeorology, eq. 3.4; Kaimal & Finnigan 1994). ``T = period_s``, s. -> 0 as f -> 0, -> 1 at
    high f."""
    x = math.pi * _f(f) * period_s
    return np.asarray(1.0 - np.sinc(x / math.pi) ** 2, dtype=np.float64)


def tf_running_mean(f: ArrayLike, tau_s: float) -> F64:
    """Recursive running-mean (RC high-pass) TF, ``(2 pi f tau)^2 / (1 + (2 pi f tau)^2)`` (Moncrieff et al. 2004,
    eq. 3.5), ``tau_s`` the time constant, s. -3 dB (0.5) at ``f = 1 / (2 pi tau)``."""
    a = (2.0 * math.pi * _f(f) * tau_s) ** 2
    return np.asarray(a / (1.0 + a), dtype=np.float64)


def tf_first_order(f: ArrayLike, tau_s: float) -> F64:
    """First-order sensor response, power TF ``1 / (1 + (2 pi f tau)^2)`` (Moore 1986, eq. 4; Moncrieff 1997 eq. 2);
    0.5 (-3 dB) at ``f = 1 / (2 pi tau)``."""
    return np.asarray(1.0 / (1.0 + (2.0 * math.pi * _f(f) * tau_s) ** 2), dtype=np.float64)


def iir_lowpass(f: ArrayLike, fc: float) -> F64:
    """First-order IIR low-pass TF of Ibrom et al. (2007), eq. 4: ``1 / (1 + (f / fc)^2)``; 0.5 at ``f = fc`` (Hz)."""
    return np.asarray(1.0 / (1.0 + (_f(f) / fc) ** 2), dtype=np.float64)


def tf_w_path(f: ArrayLike, path_m: float, u: float) -> F64:
    """Line averaging of w along a vertical sonic path (Moore 1986, eq. 9; Moncrieff 1997, eq. 5):
    ``(4 / (2 pi n)) (1 + exp(-2 pi n) / 2 - 3 (1 - exp(-2 pi n)) / (4 pi n))`` with ``n = f p / u``
    (``path_m`` m, ``u`` m s-1). -> 1 as n -> 0."""
    x = 2.0 * math.pi * _f(f) * path_m / u
    out = 1.0 - x**2 / 12.0 + x**3 / 30.0  # series for small x (cancellation in the closed form)
    big = x > 1e-2
    xb = x[big]
    out[big] = (4.0 / xb) * (1.0 + np.exp(-xb) / 2.0 - 3.0 * (1.0 - np.exp(-xb)) / (2.0 * xb))
    return np.asarray(out, dtype=np.float64)


def tf_scalar_path(f: ArrayLike, path_m: float, u: float) -> F64:
    """Line averaging of a scalar along a path (Moore 1986, eq. 7; Moncrieff 1997, eq. 4):
    ``(1 / (2 pi n)) (3 + exp(-2 pi n) - 4 (1 - exp(-2 pi n)) / (2 pi n))``, ``n = f p / u``. -> 1 as n -> 0."""
    x = 2.0 * math.pi * _f(f) * path_m / u
    out = 1.0 - x / 6.0 + x**3 / 120.0  # series for small x (cancellation in the closed form)
    big = x > 1e-2
    xb = x[big]
    out[big] = (1.0 / xb) * (3.0 + np.exp(-xb) - 4.0 * (1.0 - np.exp(-xb)) / xb)
    return np.asarray(out, dtype=np.float64)


def tf_sensor_separation(f: ArrayLike, separation_m: float, u: float) -> F64:
    """Cospectral loss from lateral sensor separation ``s`` (m), ``exp(-9.9 (f s / u)^1.5)`` (Moore 1986, eq. 11).
    Along-wind separation is removed by the time-lag compensation.
    This is a cospectral TF (it multiplies ``Co_wx`` directly)."""
    return np.asarray(np.exp(-9.9 * (_f(f) * separation_m / u) ** 1.5), dtype=np.float64)


def tf_tube_turbulent(f: ArrayLike, length_m: float, radius_m: float, flow_lpm: float, nu: float = 1.5e-5) -> F64:
    """Concentration attenuation in turbulent tube flow (Leuning & Moncrieff 1990; Massman 1991; Moncrieff 1997
    eq. 8): ``exp(-80 Re^(-1/8) pi^2 f^2 r L / U^2)``; ``U = Q / (pi r^2)`` mean flow speed (m s-1) from the flow
    rate ``flow_lpm`` (L min-1), ``Re = 2 r U / nu`` (``nu`` kinematic viscosity of air, m2 s-1)."""
    q = flow_lpm / 1000.0 / 60.0
    speed = q / (math.pi * radius_m**2)
    re_ = 2.0 * radius_m * speed / nu
    lam = 80.0 * re_ ** (-1.0 / 8.0)
    return np.asarray(np.exp(-lam * math.pi**2 * _f(f) ** 2 * radius_m * length_m / speed**2), dtype=np.float64)


def kaimal_cospectrum(
    f: ArrayLike, zm: float, u: float, zl: float = 0.0, kind: Literal["scalar", "momentum"] = "scalar"
) -> F64:
    """Normalised model cospectrum ``Co(f) / cov`` in Hz-1 (integrates to ~1 over f), Kaimal et al. (1972).

    ``n = f zm / u`` (``zm`` height above displacement, m; ``u`` mean wind, m s-1). Stable/neutral (``zl >= 0``):
    scalar ``n Co = 11 n / (1 + 13.3 n)^1.75`` (n < 1) and ``4.4 n / (1 + 3.8 n)^2.4`` (n >= 1); momentum
    ``n Co = 12 n / (1 + 9.6 n)^(7/3)``. Unstable (``zl < 0``), the forms of Moncrieff et al. (1997) eqs. 12-13:
    scalar ``12.92 n / (1 + 26.7 n)^1.375`` (n < 0.54), ``4.378 n / (1 + 3.8 n)^2.4`` (n >= 0.54); momentum
    ``20.78 n / (1 + 31 n)^1.575`` (n < 0.24), ``12.66 n / (1 + 9.6 n)^2.4`` (n >= 0.24). The result is renormalised
    numerically on ``f`` only by the caller's integral (the factors above are the published ones).
    """
    ff = _f(f)
    n = ff * zm / u
    if zl >= 0:
        if kind == "scalar":
            nco = np.where(n < 1.0, 11.0 * n / (1 + 13.3 * n) ** 1.75, 4.4 * n / (1 + 3.8 * n) ** 2.4)
        else:
            nco = 12.0 * n / (1 + 9.6 * n) ** (7.0 / 3.0)
    elif kind == "scalar":
        nco = np.where(n < 0.54, 12.92 * n / (1 + 26.7 * n) ** 1.375, 4.378 * n / (1 + 3.8 * n) ** 2.4)
    else:
        nco = np.where(n < 0.24, 20.78 * n / (1 + 31.0 * n) ** 1.575, 12.66 * n / (1 + 9.6 * n) ** 2.4)
    return np.asarray(nco / ff, dtype=np.float64)


def _integrate(y: F64, f: F64) -> float:
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(f)))


def correction_factor(f: ArrayLike, cospectrum: ArrayLike, transfer: ArrayLike) -> float:
    """Spectral correction factor ``int Co df / int Co TF df`` (Moncrieff et al. 1997, eq. 1), trapezoidal on the
    given frequency grid (Hz). ``transfer`` is the total *cospectral* TF (e.g. block average x sqrt(T_w T_s) x ...)."""
    ff = _f(f)
    co = _f(cospectrum)
    tf = _f(transfer)
    return _integrate(co, ff) / _integrate(co * tf, ff)


def fratini2012_factor(
    f: ArrayLike, reference_cospectrum: ArrayLike, reference_transfer: ArrayLike, fc: float
) -> float:
    """Fratini et al. (2012) eq. 3 / Ibrom et al. (2007): ``int Co_ref H_ref df / int Co_ref H_ref H_IIR df``.

    ``reference_cospectrum``: the w-T cospectrum (measured, or modelled as in :func:`kaimal_cospectrum`),
    ``reference_transfer``: the cospectral TF already acting on the reference (sonic path, high-pass), ``fc``: IIR
    cut-off frequency (Hz) of the gas from the spectral assessment. Multiplies the analytic (sonic) factor.
    """
    ff = _f(f)
    co = _f(reference_cospectrum) * _f(reference_transfer)
    return _integrate(co, ff) / _integrate(co * iir_lowpass(ff, fc), ff)


def ibrom_cf_model(u: float, fc: float, c1: float, c2: float) -> float:
    """Ibrom et al. (2007) eq. 8 correction-factor model ``CF = c1 u / (c2 + fc) + 1`` (``u`` m s-1, ``fc`` Hz;
    ``c1``, ``c2`` fitted, e.g. from EddyPro's spectral assessment)."""
    return c1 * u / (c2 + fc) + 1.0


@dataclass(frozen=True)
class SpectralAssessment:
    """EddyPro ``spectral_assessment.txt`` content.

    ``h2o_classes``: ``(rh_low %, rh_high %, Fn, fc Hz, numerosity)`` per RH class; ``gas_monthly``: gas name ->
    12 ``(Fn, fc)`` pairs (NaN for -9999); ``rh_fc_exp``: the three parameters of EddyPro's exponential fc(RH) fit;
    ``cf_model``: ``{"unstable": (c1, c2), "stable": (c1, c2)}`` for :func:`ibrom_cf_model`; ``selection``: how
    an in-situ assessment chose its periods.
    """

    h2o_classes: list[tuple[float, float, float, float, int]]
    gas_monthly: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    rh_fc_exp: tuple[float, float, float] | None = None
    cf_model: dict[str, tuple[float, float]] = field(default_factory=dict)
    selection: dict[str, dict[str, int]] = field(default_factory=dict)
    """For an in-situ assessment, per gas: the periods with spectra, those outside the flux limits, with a hard
    statistical flag, with a Foken flag of an excluded class (each reason counted on its own) and those used
    (:func:`gateway.flux.ec.engine.in_situ_assessment`); empty for a file."""

    def h2o_fc(self, rh_percent: float) -> float:
        """Cut-off frequency (Hz) of the RH class holding ``rh_percent``."""
        for lo, hi, _fn, fc, _n in self.h2o_classes:
            if lo <= rh_percent < hi:
                return fc
        raise ValueError(f"RH {rh_percent} % outside the assessed classes")


_NUM = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")  # fmt: skip


def _nan(v: float) -> float:
    return math.nan if v == -9999.0 else v


def parse_spectral_assessment(text: str) -> SpectralAssessment:
    """Parse the text of EddyPro's spectral-assessment file (Ibrom et al. 2007 IIR parameters).

    Recognised: ``RH class  a - b% =  Fn  fc  numerosity`` lines, ``<GAS>  TFP  Fn  fc`` blocks of 12 month lines
    (``Month = Fn fc``), the three numbers under ``exp1 exp2 exp3`` and ``unstable =  c1  c2`` / ``stable = c1 c2``.
    """
    classes: list[tuple[float, float, float, float, int]] = []
    gases: dict[str, list[tuple[float, float]]] = {}
    cf: dict[str, tuple[float, float]] = {}
    exp: tuple[float, float, float] | None = None
    rh_re = re.compile(rf"RH class\s+({_NUM})\s*-\s*({_NUM})%\s*=\s*({_NUM})\s+({_NUM})\s+(\d+)")
    gas_head = re.compile(r"^\s*(\S+)\s+TFP\s+Fn\s+fc\s*$")
    month_re = re.compile(rf"^\s*([A-Za-z]+)\s*=\s*({_NUM})\s+({_NUM})\s*$")
    cf_re = re.compile(rf"^\s*(unstable|stable)\s*=\s*({_NUM})\s+({_NUM})\s*$")
    lines = text.splitlines()
    gas: str | None = None
    for i, line in enumerate(lines):
        if m := rh_re.search(line):
            classes.append((float(m[1]), float(m[2]), float(m[3]), float(m[4]), int(m[5])))
            continue
        if m := gas_head.match(line):
            gas = m[1]
            gases[gas] = []
            continue
        if (m := month_re.match(line)) and gas is not None and m[1].lower() in _MONTHS:
            gases[gas].append((_nan(float(m[2])), _nan(float(m[3]))))
            continue
        if m := cf_re.match(line):
            cf[m[1]] = (float(m[2]), float(m[3]))
            continue
        if line.split() == ["exp1", "exp2", "exp3"] and i + 1 < len(lines):
            vals = [float(v) for v in lines[i + 1].split()]  # ValueError names a word that is not a number
            if len(vals) != 3:
                raise ValueError(f"line {i + 2}: expected the three numbers exp1 exp2 exp3, found {len(vals)}")
            exp = (vals[0], vals[1], vals[2])
    if not classes:
        raise ValueError("no water-vapour RH classes found")
    return SpectralAssessment(h2o_classes=classes, gas_monthly=gases, rh_fc_exp=exp, cf_model=cf)
