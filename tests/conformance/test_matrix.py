"""Every (architecture, method or option) cell is exact against its oracle or refused by name.

The cells and oracles live in :mod:`tests.conformance.cells`; ``python -m tests.conformance.cells``
prints the matrix as the README's table.
"""

from __future__ import annotations

import pytest

from .cells import CELLS, EXPECTED_REFUSALS, TOL, run_cell
from .models import ARCHITECTURES


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("model", list(ARCHITECTURES))
def test_cell_is_exact_or_refused_by_name(model: str, cell: str) -> None:
    status, detail, _ = run_cell(model, cell)
    expected = EXPECTED_REFUSALS.get((model, cell))
    assert status != "error", f"{model} x {cell} crashed: {detail}"
    if expected is None:
        assert status == "exact", f"{model} x {cell} refused unexpectedly: {detail}"
        assert detail <= TOL, f"{model} x {cell}: relative error {detail:.2e} > {TOL:.0e}"
    else:
        assert status == "refused", f"{model} x {cell} ran (error {detail:.1e}); expected a refusal"
        assert expected in str(detail), f"{model} x {cell}: refusal {detail!r} does not name {expected!r}"


def test_every_expected_refusal_is_a_cell() -> None:
    assert {m for m, _ in EXPECTED_REFUSALS} <= set(ARCHITECTURES)
    assert {c for _, c in EXPECTED_REFUSALS} <= set(CELLS)
