"""`ahead.ordered`: results in input order, errors where they would be without threads."""

from __future__ import annotations

import threading
import time

import pytest

from analyzer.importers.ahead import ordered


def _slow_square(x: int) -> int:
    time.sleep(0.001 * (x % 3))  # (results finish out of order)
    return x * x


@pytest.mark.parametrize("workers", [0, 1, 2, 4])
def test_results_come_in_input_order(workers):
    assert list(ordered(range(50), _slow_square, workers=workers)) == [x * x for x in range(50)]


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_drawing_the_items_comes_after_the_results_before_it(workers):
    def items():
        yield from range(5)
        raise ValueError("line 6 too long")

    got = []
    with pytest.raises(ValueError, match="line 6"):
        for r in ordered(items(), _slow_square, workers=workers):
            got.append(r)
    assert got == [0, 1, 4, 9, 16]


def test_an_error_preparing_an_item_comes_in_its_place():
    def prepare(x: int) -> int:
        if x == 3:
            raise KeyError(x)
        return x

    got = []
    with pytest.raises(KeyError):
        for r in ordered(range(10), prepare, workers=2):
            got.append(r)
    assert got == [0, 1, 2]


def test_a_consumer_that_stops_early_stops_the_drawing():
    drawn = []

    def items():
        for x in range(10_000):
            drawn.append(x)
            yield x

    before = {t.name for t in threading.enumerate()}
    results = ordered(items(), _slow_square, workers=2, depth=3)
    assert next(results) == 0
    results.close()
    assert len(drawn) < 10  # (a few ahead: depth and the one in hand)
    assert not {t.name for t in threading.enumerate()} - before


@pytest.mark.parametrize("depth", [1, 3])
def test_no_more_than_depth_results_are_made_ahead_of_the_one_in_hand(depth):
    """A writer's next row group is made while it writes this one, never two more: each
    result is memory (a row group is a hundred megabytes)."""
    lock = threading.Lock()
    made = 0
    most = 0

    def prepare(x: int) -> int:
        nonlocal made, most
        with lock:
            made += 1
            most = max(most, made)
        return x

    for _ in ordered(range(30), prepare, workers=2, depth=depth):
        time.sleep(0.005)  # (the caller is slow: the drawing runs as far ahead as it may)
        with lock:
            made -= 1
    assert most == depth + 1
