"""The chaos harness (bench/chaos.py, tests/test_chaos.py): the real station, broker, central service and InfluxDB
as separate processes, faults injected into them, and an exact account of what a counting sensor (polled) and a
counting WindMaster (a 20 Hz stream, its interval summaries) served against what the store holds.
docs/reliability.md describes the method and records the figures."""

from gateway.testing.chaos.ledger import Reconciliation
from gateway.testing.chaos.run import FAULT_KINDS, MIDWRITE, ChaosPlan, ChaosReport, run_chaos
from gateway.testing.chaos.site import SiteSettings

__all__ = ["FAULT_KINDS", "MIDWRITE", "ChaosPlan", "ChaosReport", "Reconciliation", "SiteSettings", "run_chaos"]
