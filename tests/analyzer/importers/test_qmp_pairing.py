"""The column-wise pairing of QMP replies equals the queue per id that QmpState keeps."""

from __future__ import annotations

from collections import deque

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.importers.qmp_pairing import answered, occurrences


def _queues(messages: list[tuple[bool, int, int]]) -> list[int]:
    """The reference: one FIFO queue of unanswered commands per id, in reading order."""
    pending: dict[tuple[int, int], deque[int]] = {}
    out = []
    for i, (is_reply, kind, value) in enumerate(messages):
        queue = pending.setdefault((kind, value), deque())
        if is_reply:
            out.append(queue.popleft() if queue else -1)
        else:
            queue.append(i)
            out.append(-1)
    return out


_MESSAGES = st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.integers(-3, 3)), max_size=80) | st.lists(
    st.tuples(st.integers(0, 1), st.integers(-2, 2)), max_size=30,
).map(lambda ids: [m for kind, value in ids for m in ((False, kind, value), (True, kind, value))])  # (in turns)


@settings(max_examples=400, deadline=None)
@given(_MESSAGES)
def test_answered_is_the_queue_per_id(messages):
    is_reply = np.array([m[0] for m in messages], dtype=bool)
    kind = np.array([m[1] for m in messages], dtype=np.int64)
    value = np.array([m[2] for m in messages], dtype=np.int64)
    assert answered(is_reply, kind, value).tolist() == _queues(messages)


def test_answered_on_a_poll_loop_and_a_reconnect():
    # ids 1, 2 answered in order; then the client reconnects and counts from 1 again,
    # with a reply to a command the capture missed (id 9) and two commands of id 1 pending
    msgs = [(False, 0, 1), (True, 0, 1), (False, 0, 2), (True, 0, 2), (True, 0, 9),
            (False, 0, 1), (False, 0, 1), (True, 0, 1), (True, 0, 1), (True, 0, 1)]
    got = answered(*(np.array(c) for c in zip(*msgs, strict=True)))
    assert got.tolist() == [-1, 0, -1, 2, -1, -1, -1, 5, 6, -1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(-2, 2)), max_size=60))
def test_occurrences_count_earlier_equal_keys(rows):
    a = np.array([r[0] for r in rows], dtype=np.int64)
    b = np.array([r[1] for r in rows], dtype=np.int64)
    expected = [sum(1 for earlier in rows[:i] if earlier == row) for i, row in enumerate(rows)]
    assert occurrences(a, b).tolist() == expected
