"""The 404s of the HTTP API for a name the store never held (used by every route of gateway/central/api*.py that
takes a station): the answer names what the store holds and, when only the case or a letter differs, the name
meant ("did you mean station=st01?"). A known station, or a known series, with nothing in the range asked is no
error: the route answers 200 with nothing in it.

A station is known when the store holds anything of it: readings, flux results, health reports, a budget, soil or
stems run. The check runs only on the way to an empty answer, so a route that has data pays nothing for it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from fastapi import HTTPException

from gateway.central.store import StationInfo, Store

UNKNOWN_STATION = ("the store never held the station (no reading, flux, health report, budget, soil or stems run of "
                   "it); a known station with nothing in the range asked answers 200 with nothing in it")
UNKNOWN_SITE = ("the store never held the station, or holds nothing of it (of any station, without one) at the site "
                "given; a known station and site with nothing to show answer 200 with nothing in it")
UNKNOWN_SERIES = ("the store never held the station, or the station never reported the variable (or the sensor, "
                  "site given); a known series without readings in start..end answers 200 with no points")
_LISTED = 12  # names listed in a 404's message at most


def listing(names: Sequence[str]) -> str:
    """`names` comma-separated, the first few of a long list and how many in all."""
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _LISTED else "")


def close_match(name: str, names: Sequence[str]) -> str | None:
    """The name `name` most likely means: the same but for case, else the closest spelling."""
    same = [n for n in names if n.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, names, n=1)
    return close[0] if close else None


def unknown_station(station: str, known: Sequence[str], none_known: str = "") -> HTTPException:
    """The 404 of a station the store never held, naming the one meant or else the ones it holds (`known`: those
    with readings or health reports; `none_known`: what to say when there is none)."""
    meant = close_match(station, known)
    hint = (f"; did you mean station={meant}?" if meant is not None else
            f"; stations: {listing(known)}" if known else none_known)
    return HTTPException(404, f"station {station!r} is not in the store (nothing of it was ever stored){hint} "
                              "(GET /api/v1/stations and /api/v1/station-health list them; names are case-sensitive)")


def station_held(store: Store, station: str, infos: Sequence[StationInfo] | None = None) -> bool:
    """Whether the store holds anything of `station` (`infos`: `store.stations()`, when the caller has it)."""
    infos = store.stations() if infos is None else infos
    return (any(i.station == station for i in infos) or bool(store.latest_health(station=station))
            or bool(store.flux_result_sets(station)) or bool(store.budget_runs(station))
            or any(store.product_runs(product, station) for product in ("soil", "stems")))


def refuse_unknown_station(store: Store, station: str, infos: Sequence[StationInfo] | None = None,
                           none_known: str = "") -> None:
    """Raise 404 when the store never held `station`; return when it holds anything of it (the route then answers
    its empty 200 or its own 404)."""
    infos = store.stations() if infos is None else infos
    if station_held(store, station, infos):
        return
    known = {i.station for i in infos} | {r.station for r in store.latest_health()}
    raise unknown_station(station, sorted(known), none_known)


def refuse_unknown_site(store: Store, site: str, station: str | None = None,
                        infos: Sequence[StationInfo] | None = None) -> None:
    """Raise 404 when the store holds nothing at `site` (of `station`, when given): no reading, health report or flux
    result set there. A route calls it on the way to an empty answer, after the station itself was found known, so
    that a mistyped site is not answered as a quiet 200 with nothing in it."""
    infos = store.stations() if infos is None else infos
    held = ({i.site for i in infos if station is None or i.station == station}
            | {r.site for r in store.latest_health(station=station)})
    if station is not None:
        held |= {s.site for s in store.flux_result_sets(station)}
    if site in held:
        return
    sites = sorted(held)
    meant = close_match(site, sites)
    of = f" of station {station!r}" if station is not None else ""
    hint = (f"did you mean site={meant}?" if meant is not None else
            f"sites{of}: {listing(sites)}" if sites else "the store holds no site yet")
    raise HTTPException(404, f"site {site!r}{of} is not in the store (no reading, health report or flux result "
                             f"of it there); {hint} (names are case-sensitive)")


def refuse_unknown_series(store: Store, station: str, variable: str, site: str | None, sensor: str | None) -> None:
    """Raise 404 when /series names what the store never held: the station, its variable, the site or the sensor
    given. A series the store knows that has no readings in start..end is no error (200, no points)."""
    infos = store.stations()
    mine = [i for i in infos if i.station == station]
    if not mine:
        refuse_unknown_station(store, station, infos, "; the store holds no readings yet")
        raise HTTPException(404, f"station {station!r} never reported variable {variable!r}: the store holds no "
                                 "readings of it, only other data (GET /api/v1/fluxes/sets, /api/v1/budget/sets, "
                                 f"/api/v1/stations/{station}/health)")
    if site is not None and all(i.site != site for i in mine):
        raise HTTPException(404, f"station {station!r} has no readings at site {site!r}; its sites: "
                                 f"{listing(sorted({i.site for i in mine}))}")
    mine = [i for i in mine if site is None or i.site == site]
    variables = sorted({v for i in mine for v in i.variables})
    if variable not in variables:
        # a FLUXNET name without its position qualifier _H_V_R (TA for TA_1_1_1) is the usual slip
        qualified = [v for v in variables if v.upper().startswith(variable.upper() + "_")]
        if qualified:
            raise HTTPException(404, f"station {station!r} never reported variable {variable!r}; it reports it with "
                                     f"its position qualifier _H_V_R: {listing(qualified)}; e.g. "
                                     f"variable={qualified[0]}")
        meant = close_match(variable, variables)
        hint = f"did you mean variable={meant}? Its variables" if meant is not None else "its variables"
        raise HTTPException(404, f"station {station!r} never reported variable {variable!r}; {hint}: "
                                 f"{listing(variables)} (GET /api/v1/stations lists them per sensor)")
    if sensor is not None:
        sensors = sorted({s for i in mine for s, names in i.sensors.items() if variable in names})
        if sensor not in sensors:
            raise HTTPException(404, f"sensor {sensor!r} of station {station!r} never reported {variable}; the "
                                     f"sensors that did: {listing(sensors)}")


def unknown_station_problem(store: Store, station: str) -> str | None:
    """For a command given `--station`: why it cannot be the station meant (the store never held anything of it),
    naming the one likely meant or the ones the store holds; None for a station the store knows. A command given a
    mistyped station said "no coordinates" (flux budget), audited nothing and printed VERDICT: INTACT (audit
    verify), or told to compute a budget of it (report)."""
    if station_held(store, station):
        return None
    known = sorted({i.station for i in store.stations()} | {r.station for r in store.latest_health()})
    meant = close_match(station, known)
    hint = (f"did you mean --station {meant}?" if meant is not None else
            f"the store holds {listing(known)}" if known else "the store holds no station yet")
    return f"station {station!r} is not in the store (nothing of it was ever stored); {hint}"
