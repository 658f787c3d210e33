"""Which command each QMP reply answers, and how many times a message was seen, over whole columns.

A reply answers the oldest unanswered command of the same id (`qmp_semantics.QmpState`
keeps a queue per id and pops it one reply at a time). Over a transcript's millions of
messages the same answer comes from counting: in the messages of one id, in reading order,
count +1 per reply and -1 per command; a reply finds the queue empty exactly when that sum
reaches a new maximum above zero (the queue's length is how far the sum stands below its
running maximum, as for any queue fed and drained one at a time). Every other reply takes
the next command of its id in order: the k-th answered reply of an id answers its k-th
command. `occurrences` counts earlier messages with the same key (the ``n`` of a message
key, `rows`).

Ids are given as two columns, a kind and a value (an integer id is kind 0 and its value;
any other id is a code of the caller's), so that no Python object is made per message.
"""

from __future__ import annotations

import math

import numpy as np


def answered(is_reply: np.ndarray, id_kind: np.ndarray, id_value: np.ndarray) -> np.ndarray:
    """Per message (in reading order), the index of the command a reply answers; -1 for a
    reply that answers none, and for every command."""
    n = len(is_reply)
    out = np.full(n, -1, dtype=np.int64)
    if not n:
        return out
    if in_turns(is_reply, id_kind, id_value):  # a client that waits for each reply: no sort
        out[1::2] = np.arange(0, n, 2)
        return out
    order = stable_order(id_kind, id_value)  # by id, reading order within
    kind, value, reply = id_kind[order], id_value[order], is_reply[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (kind[1:] != kind[:-1]) | (value[1:] != value[:-1])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    step = np.where(reply, 1, -1).astype(np.int64)
    total = np.cumsum(step)
    before_group = (total - step)[starts]  # the running sum where each group starts
    in_group = total - before_group[group]
    big = 2 * n + 2  # groups stacked apart, so that one running maximum serves them all
    running = np.maximum.accumulate(in_group + group * big) - group * big
    empty_queue = np.maximum(running, 0)
    previous = np.zeros(n, dtype=np.int64)
    previous[1:] = empty_queue[:-1]
    previous[starts] = 0
    unanswered = reply & (empty_queue > previous)
    matched = reply & ~unanswered
    command = ~reply
    # the k-th answered reply of a group <-> the k-th command of that group
    commands_before = np.cumsum(command) - command
    rank = np.cumsum(matched) - matched
    rank -= rank[starts][group]
    first_command = commands_before[starts][group]
    command_at = np.flatnonzero(command)  # sorted positions of the commands, group by group
    positions = command_at[first_command[matched] + rank[matched]]
    out[order[matched]] = order[positions]
    return out


def in_turns(is_reply: np.ndarray, id_kind: np.ndarray, id_value: np.ndarray) -> bool:
    """Whether the messages are command, its reply, command, its reply, ...: then each reply
    answers the command right before it (no command of its id is left waiting)."""
    n = len(is_reply)
    return (
        n % 2 == 0 and not is_reply[0::2].any() and bool(is_reply[1::2].all())
        and np.array_equal(id_kind[0::2], id_kind[1::2]) and np.array_equal(id_value[0::2], id_value[1::2])
    )


def occurrences(*keys: np.ndarray) -> np.ndarray:
    """Per row, how many rows before it have the same value in every one of `keys`."""
    n = len(keys[0]) if keys else 0
    if not n:
        return np.zeros(0, dtype=np.int64)
    order = stable_order(*keys)
    new_group = np.zeros(n, dtype=bool)
    new_group[0] = True
    for key in keys:
        k = key[order]
        new_group[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(new_group)
    group = np.cumsum(new_group) - 1
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) - starts[group]
    return out


def stable_order(*keys: np.ndarray) -> np.ndarray:
    """The rows sorted by `keys` (the first the most significant), ties in row order: as
    ``np.lexsort`` with the row index last, one stable sort per key from the least
    significant. A key of small values is sorted as 16-bit codes (numpy's radix sort); ids
    counted up by a client are runs already in order (its merge sort finds them)."""
    n = len(keys[0])
    if not n:
        return np.zeros(0, dtype=np.int64)
    low = [int(k.min()) for k in keys]
    spans = [int(k.max()) - lo + 1 for k, lo in zip(keys, low, strict=True)]
    if math.prod(spans) < 1 << 62:  # one key of them all (a sort of small integers)
        combined = np.zeros(n, dtype=np.int64)
        for key, lo, span in zip(keys, low, spans, strict=True):
            combined = combined * span + (key - lo)
        keys, low = (combined,), [0]
    order = np.arange(n)
    for key, lo in zip(reversed(keys), reversed(low), strict=True):
        values = key[order]
        if int(values.max()) - lo < 1 << 16:
            values = (values - lo).astype(np.uint16)
        order = order[np.argsort(values, kind="stable")]
    return order


__all__ = ["answered", "in_turns", "occurrences", "stable_order"]
