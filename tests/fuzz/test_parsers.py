"""Property: no parser of outside input lets an exception escape except the ones it declares (tests/fuzz/targets.py).

Short, derandomized runs for CI (a few hundred examples per parser); `bench/fuzz.py` runs 100,000+ per parser and
prints the figures recorded in docs/reliability.md.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from .targets import Target, build_targets

TARGETS = build_targets()
EXAMPLES = 300


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_parser_raises_only_its_declared_errors(target: Target) -> None:
    outcomes: dict[str | None, int] = {}

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(target.inputs)
    def feed(value: object) -> None:
        outcome = target.exercise(value)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    feed()
    # The strategies mix valid and broken input: a target that accepted nothing, or (when its input can make it
    # refuse) refused nothing, is not exercising its parser.
    assert sum(outcomes.values()) >= EXAMPLES // 2
    assert None in outcomes, outcomes
    if target.refuses:
        assert set(outcomes) - {None}, outcomes
