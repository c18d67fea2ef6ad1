"""The stores keep a product or budget table row as the text `json.dumps` made of its cleaned cells; `json_rows`
makes it a column at a time and must give the same bytes."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from gateway.central.store.budget import clean, json_rows


def _awkward_values(rng: random.Random, n: int) -> list[float | None]:
    pool: list[float | None] = [None, float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-5, 1e16, 1e22,
                                -1.5e-300, 5e-324, 0.1 + 0.2, 123456789.123456789, 3, True, np.float64(2.5),
                                np.float32(0.1), np.float64("nan")]  # type: ignore[list-item]
    return [rng.choice(pool) if rng.random() < 0.3 else rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-12, 12)
            for _ in range(n)]


@pytest.mark.parametrize("n_columns", [0, 1, 7])
def test_rows_are_the_bytes_json_dumps_writes(n_columns: int) -> None:
    rng = random.Random(n_columns)
    n = 500
    columns = [_awkward_values(rng, n) for _ in range(n_columns)]

    expected = [json.dumps([clean(c[i]) for c in columns], allow_nan=False) for i in range(n)]

    assert json_rows(columns, n) == expected


def test_a_column_shorter_than_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match="3 rows"):
        json_rows([[1.0, 2.0, 3.0], [1.0, 2.0]], 3)
