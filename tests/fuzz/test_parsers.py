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
#: Targets that fewer drawn inputs exercise as far as 300 do: the same lines and branches of our code and the same
#: outcomes, measured with coverage.py on the test's own derandomized inputs (docs/reliability.md, "Suite time
#: (2026-12-06)"; the others lose lines at 150). Hypothesis keys the draws on `feed`'s body, not on this count.
FEWER_EXAMPLES = {"gmp252_registers": 150, "modbus_rtu_read_reply": 150, "gmp343_grammar": 100, "gmp343_reply": 100,
                  "soilprobe_registers": 100, "central_yaml": 100, "ec_raw_file": 100}


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_parser_raises_only_its_declared_errors(target: Target) -> None:
    outcomes: dict[str | None, int] = {}
    examples = FEWER_EXAMPLES.get(target.name, EXAMPLES)

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(target.inputs)
    def feed(value: object) -> None:
        outcome = target.exercise(value)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    feed()
    # The strategies mix valid and broken input: a target that accepted nothing, or (when its input can make it
    # refuse) refused nothing, is not exercising its parser.
    assert sum(outcomes.values()) >= examples // 2
    assert None in outcomes, outcomes
    if target.refuses:
        assert set(outcomes) - {None}, outcomes
