"""benchmarks/numbers.py's arithmetic: edit distance, tallies that merge, and the figures it records."""

from __future__ import annotations

import pytest

from benchmarks.numbers import Tally, edit_distance, tally_figures


@pytest.mark.parametrize("first, second, distance", [("2026", "2026", 0), ("2026", "206", 1), ("2026", "20266", 1),
                                                      ("2026", "2126", 1), ("2026", "", 4), ("12", "21", 2)])
def test_edit_distance_counts_missed_extra_and_wrong_digits(first: str, second: str, distance: int) -> None:
    assert edit_distance(first, second) == distance


def test_a_length_records_its_accuracies_and_why_numbers_failed() -> None:
    everything, touching = Tally(), Tally()
    numbers = (("2026", "2026", 4, None, False), ("1411", "411", 4, "no candidate", True),
               ("7129", "7429", 3, "misread", True), ("5555", "", 4, "error", False))
    for truth, answer, single, cause, touches in numbers:
        for tally in (everything, touching) if touches else (everything,):
            tally.add(truth, answer, single, 0.25, cause)
    figures = tally_figures(everything, touching)
    assert figures["exact %"] == 25.0
    assert figures["per digit %"] == 100 * (4 + 3 + 3 + 0) / 16
    assert figures["single digits %"] == 100 * 15 / 16
    assert (figures["touching numbers"], figures["touching exact %"]) == (2, 0.0)
    assert figures["seconds per number"] == 0.25
    assert [figures[f"failures: {cause}"] for cause in ("no candidate", "misread", "path", "error")] == [1, 1, 0, 1]
    assert tally_figures(everything, Tally())["touching exact %"] is None  # no touching numbers: no figure


def test_tallies_merge_into_totals() -> None:
    first, second, total = Tally(), Tally(), Tally()
    first.add("12", "12", 2, 0.5, None)
    second.add("34", "31", 2, 1.5, "path")
    total.merge(first)
    total.merge(second)
    assert (total.n, total.exact, total.digits, total.digits_right, total.seconds) == (2, 1, 4, 3, 2.0)
    assert total.causes == {"path": 1}
