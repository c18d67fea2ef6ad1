"""In-situ spectral assessment of a closed-path gas measurement, from the station's own data (no EddyPro-made
spectral_assessment.txt needed). Pure functions: arrays in, numbers and a `SpectralAssessment` out.

Ibrom, A., Dellwik, E., Flyvbjerg, H., Jensen, N. O. & Pilegaard, K. (2007): Strong low-pass filtering effects on
water vapour flux measurements with closed-path eddy correlation systems. Agric. For. Meteorol. 147, 140-156:

* the low-pass transfer function of the gas measurement is the ratio of the gas's normalised power spectrum to that
  of the sonic temperature, which the tube and the cell do not filter (their §2.4, scalar similarity), fitted by the
  first-order IIR form H(f) = Fn / (1 + (f/fc)²) (their eq. 4) in a frequency range free of low-frequency
  non-stationarity and high-frequency noise (EddyPro sa_fmin / sa_fmax);
* water vapour is assessed per relative-humidity class (adsorption on the tube walls slows it at high RH; their
  §3.2 and Fratini et al. 2012), other gases over all periods;
* the correction-factor model CF = c1·u/(c2 + fc) + 1 (their eq. 8) is fitted to the attenuation of the sonic
  temperature flux w'T' by the same IIR filter at a set of cut-off frequencies (EddyPro's W_T_SONIC_COV_IBROM_N*),
  separately for unstable and stable periods.

Spectra (:func:`binned_ratio`) are periodograms of the linearly detrended, Hamming-tapered series averaged in
log-spaced frequency bins; each is normalised by its own integral over the fitting range before the ratio is
taken, so the ratio of two equally filtered scalars is 1 whatever their variances.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import curve_fit

from gateway.flux.ec.spectral import SpectralAssessment, iir_lowpass

Array = NDArray[np.float64]

#: RH classes of the water-vapour assessment, %, as EddyPro writes them (5-15 ... 85-95; the end classes open).
RH_EDGES = (0.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0, 85.0, 100.0001)

#: Cut-off frequencies (Hz) of the IIR filters applied to Ts for the correction-factor model (EddyPro's N-series
#: W_T_SONIC_COV_IBROM_N1626 ... N0004 are Ts filtered at 1.626 ... 0.004 Hz).
CF_MODEL_FC = (1.626, 0.614, 0.277, 0.133, 0.065, 0.032, 0.016, 0.008, 0.004)


def frequency_bins(fs: float, n_records: int, n_bins: int = 50) -> Array:
    """Edges of ``n_bins`` log-spaced frequency bins from the lowest resolved frequency fs/N to the Nyquist fs/2,
    Hz (EddyPro nbins)."""
    return np.logspace(math.log10(fs / n_records), math.log10(fs / 2.0), n_bins + 1)


def binned_power_spectrum(x: Array, fs: float, edges: Array) -> Array:
    """Mean periodogram (one-sided, unit² Hz-1) of ``x`` in each bin of ``edges`` (Hz): the series is gap-filled
    linearly, detrended linearly and Hamming-tapered (the taper's power loss is compensated). NaN for empty bins."""
    y = _gap_filled(x)
    t = np.arange(y.size, dtype=np.float64)
    slope, intercept = np.polyfit(t, y, 1)
    y = (y - (slope * t + intercept)) * np.hamming(y.size)
    spec = np.abs(np.fft.rfft(y)) ** 2 / (fs * float(np.sum(np.hamming(y.size) ** 2)))
    spec[1:-1] *= 2.0
    f = np.fft.rfftfreq(y.size, 1.0 / fs)
    out = np.full(edges.size - 1, np.nan)
    idx = np.digitize(f, edges) - 1
    for k in range(out.size):
        sel = idx == k
        if sel.any() and f[sel].min() > 0:
            out[k] = float(spec[sel].mean())
    return out


def _gap_filled(x: Array) -> Array:
    ok = np.isfinite(x)
    if ok.all():
        return np.asarray(x, dtype=np.float64)
    i = np.arange(x.size)
    return np.interp(i, i[ok], x[ok])


def bin_centres(edges: Array) -> Array:
    """Geometric centres of the bins, Hz."""
    return np.sqrt(edges[:-1] * edges[1:])


def binned_ratio(ts: Array, gas: Array, fs: float, edges: Array, fmin: float, fmax: float,
                 noise_fmin: float | None = None) -> Array:
    """The gas's binned power spectrum over the sonic temperature's, each first normalised by its own sum over the
    bins inside [fmin, fmax] Hz (the fitting range); NaN where a bin is empty (Ibrom et al. 2007, §2.4). With
    ``noise_fmin`` (Hz) the gas spectrum's mean above it is taken as white noise and subtracted first (Ibrom et
    al. 2007, §2.4; EddyPro sa_hfn_*_fmin)."""
    centres = bin_centres(edges)
    band = (centres >= fmin) & (centres <= fmax)
    s_t = binned_power_spectrum(ts, fs, edges)
    s_g = binned_power_spectrum(gas, fs, edges)
    if noise_fmin is not None and (centres >= noise_fmin).any():
        noise = float(np.nanmean(s_g[centres >= noise_fmin]))
        s_g = np.where(np.isfinite(s_g), np.maximum(s_g - noise, 0.0), np.nan)
    norm_t = np.nansum(s_t[band])
    norm_g = np.nansum(s_g[band])
    if not (norm_t > 0 and norm_g > 0):
        return np.full(centres.size, np.nan)
    return (s_g / norm_g) / (s_t / norm_t)


def mean_ratio(ratios: list[Array]) -> Array:
    """Bin-by-bin mean of several periods' ratios over the periods with a value in that bin (NaN where none)."""
    stack = np.vstack(ratios)
    ok = np.isfinite(stack)
    counts = ok.sum(axis=0)
    sums = np.where(ok, stack, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def fit_iir(f: Array, ratio: Array, fmin: float, fmax: float) -> tuple[float, float]:
    """(Fn, fc) of H(f) = Fn/(1 + (f/fc)²) (Ibrom et al. 2007, eq. 4) fitted by least squares to the ratio in
    [fmin, fmax] Hz; (NaN, NaN) when fewer than 3 bins are usable."""
    sel = np.isfinite(ratio) & (f >= fmin) & (f <= fmax)
    if int(sel.sum()) < 3:
        return math.nan, math.nan

    def model(x: Array, fn: float, fc: float) -> Array:
        return fn * iir_lowpass(x, fc)

    try:
        (fn, fc), _ = curve_fit(model, f[sel], ratio[sel], p0=(float(np.nanmax(ratio[sel])), 0.5),
                                bounds=((0.0, 1e-4), (10.0, 100.0)), maxfev=10000)
    except (RuntimeError, ValueError):
        return math.nan, math.nan
    return float(fn), float(fc)


def ts_flux_attenuation(w: Array, ts: Array, fs: float, cutoffs: tuple[float, ...] = CF_MODEL_FC) -> Array:
    """cov(w, Ts filtered by the IIR low-pass at each cut-off) / cov(w, Ts): the attenuation of the sonic temperature
    flux that a gas measured with that filter would suffer (Ibrom et al. 2007, §2.5; EddyPro's
    W_T_SONIC_COV_IBROM_N*). The filter is applied in the frequency domain with the amplitude 1/√(1 + (f/fc)²)."""
    wy, ty = _gap_filled(w), _gap_filled(ts)
    wy = wy - wy.mean()
    ty = ty - ty.mean()
    spec = np.fft.rfft(ty)
    f = np.fft.rfftfreq(ty.size, 1.0 / fs)
    full = float(np.mean(wy * ty))
    out = np.empty(len(cutoffs))
    for k, fc in enumerate(cutoffs):
        filtered = np.fft.irfft(spec / np.sqrt(1.0 + (f / fc) ** 2), ty.size)
        out[k] = float(np.mean(wy * filtered)) / full if full != 0 else math.nan
    return out


def fit_cf_model(u: Array, cutoffs: Array, attenuation: Array) -> tuple[float, float]:
    """(c1, c2) of CF = c1·u/(c2 + fc) + 1 (Ibrom et al. 2007, eq. 8) fitted to measured factors CF = 1/attenuation
    at wind speeds ``u`` (m s-1) and cut-offs ``cutoffs`` (Hz), arrays of one length."""
    cf = 1.0 / attenuation
    ok = np.isfinite(cf) & np.isfinite(u) & np.isfinite(cutoffs) & (cf > 0)
    if int(ok.sum()) < 3:
        return math.nan, math.nan

    def model(x: tuple[Array, Array], c1: float, c2: float) -> Array:
        uu, fc = x
        return c1 * uu / (c2 + fc) + 1.0

    (c1, c2), _ = curve_fit(model, (u[ok], cutoffs[ok]), cf[ok], p0=(0.003, 0.001),
                            bounds=((0.0, 0.0), (10.0, 10.0)), maxfev=10000)
    return float(c1), float(c2)


@dataclass(frozen=True)
class PeriodSpectra:
    """What one period contributes to the assessment: spectral ratios per gas (on the bin centres ``f``), its RH (%)
    and month, whether each gas qualifies (flux large enough), and for the CF model its wind speed, stability and
    the attenuation of w'Ts' at :data:`CF_MODEL_FC`."""

    f: Array
    ratio: dict[str, Array]
    rh: float
    month: int
    usable: dict[str, bool]
    u: float = math.nan
    unstable: bool = True
    ts_attenuation: Array | None = None


def assess(periods: list[PeriodSpectra], *, fit_range: dict[str, tuple[float, float]] | None = None,
           min_spectra: int = 10) -> SpectralAssessment:
    """Spectral assessment from many periods (module docstring): H2O per RH class (:data:`RH_EDGES`), every other
    gas over all periods (the same (Fn, fc) for all 12 months, as EddyPro's file says "all months together"); the
    ratios of a class are averaged bin by bin and fitted (:func:`fit_iir`). A class with fewer than ``min_spectra``
    spectra takes the nearest class that has enough (EddyPro's sa_min_smpl; its numerosity stays its own); no
    class with enough: ValueError. The CF model (unstable, stable) is fitted when attenuations are given."""
    if not periods:
        raise ValueError("spectral assessment: no periods")
    f = periods[0].f
    ranges = fit_range or {}
    fmin, fmax = ranges.get("h2o", (0.005, 2.0))
    classes: list[tuple[float, float, float, float, int]] = []
    fitted: list[tuple[float, float] | None] = []
    counts: list[int] = []
    for lo, hi in itertools.pairwise(RH_EDGES):
        members = [p.ratio["h2o"] for p in periods if "h2o" in p.ratio and p.usable.get("h2o") and lo <= p.rh < hi]
        counts.append(len(members))
        fitted.append(fit_iir(f, mean_ratio(members), fmin, fmax)
                      if len(members) >= min_spectra else None)
    good = [k for k, fit in enumerate(fitted) if fit is not None and math.isfinite(fit[1])]
    if any("h2o" in p.ratio for p in periods):
        if not good:
            raise ValueError(f"spectral assessment: no RH class has {min_spectra} usable H2O spectra "
                             f"(counts per class: {counts})")
        for k, (lo, hi) in enumerate(itertools.pairwise(RH_EDGES)):
            nearest = min(good, key=lambda g: (abs(g - k), g))
            fit = fitted[nearest]
            assert fit is not None
            classes.append((lo, min(hi, 100.0), fit[0], fit[1], counts[k]))
    gases: dict[str, list[tuple[float, float]]] = {}
    names = sorted({g for p in periods for g in p.ratio if g != "h2o"})
    for gas in names:
        members = [p.ratio[gas] for p in periods if gas in p.ratio and p.usable.get(gas)]
        lo, hi = ranges.get(gas, (0.005, 2.0))
        fit = fit_iir(f, mean_ratio(members), lo, hi) if len(members) >= min_spectra \
            else (math.nan, math.nan)
        gases[gas.upper()] = [fit] * 12
    cf_model: dict[str, tuple[float, float]] = {}
    for label, unstable in (("unstable", True), ("stable", False)):
        rows = [p for p in periods if p.ts_attenuation is not None and p.unstable == unstable and math.isfinite(p.u)]
        if len(rows) >= min_spectra:
            u = np.repeat([p.u for p in rows], len(CF_MODEL_FC))
            fc = np.tile(np.asarray(CF_MODEL_FC), len(rows))
            att = np.concatenate([p.ts_attenuation for p in rows if p.ts_attenuation is not None])
            cf_model[label] = fit_cf_model(u, fc, att)
    return SpectralAssessment(h2o_classes=classes, gas_monthly=gases, cf_model=cf_model)
