"""The QMP message cache reuses a parsed shape only for a message that says the same but for
its id: QEMU's ``, "id": `` and libvirt's compact ``,"id":`` alike, never for a message whose
text only looks alike (an ``"id"`` key inside the arguments or the answer)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from analyzer.importers.message_cache import MessageCache

_KEYS = st.sampled_from(["id", "device", "io-status", "node-name", "x"])
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["ok", "libvirt-1", "id", '"id"']),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=8,
)
#: Counter ids, libvirt's, and any string (quotes, backslashes, control and non-ASCII
#: characters: escaped in the text, so not read as the plain string between the quotes).
_IDS = st.integers(0, 10**6) | st.builds(lambda n: f"libvirt-{n}", st.integers(0, 10**6)) | st.text(max_size=6)


def _text(body: dict, msg_id: object, compact: bool) -> str:
    """`body` with its id last, as QEMU (spaced) or libvirt (compact) writes it."""
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps({**body, "id": msg_id}, separators=separators)


_BODIES = st.one_of(
    st.builds(lambda v: {"return": v}, _VALUES),
    st.builds(lambda name, args: {"execute": name, "arguments": args},
              st.sampled_from(["query-block", "cont", "stop"]), st.dictionaries(_KEYS, _VALUES, max_size=3)),
    st.builds(lambda desc: {"error": {"class": "GenericError", "desc": desc}}, st.sampled_from(["no", "id"])),
)


@given(_BODIES, _IDS, _IDS, st.booleans())
def test_a_poll_seen_before_is_known_with_its_own_id(body, first_id, second_id, compact):
    cache = MessageCache()
    cache.parse(_text(body, first_id, compact))
    text = _text(body, second_id, compact)
    known = cache.lookup(text)
    assert known is not None
    shape, msg_id = known
    assert msg_id == second_id
    assert {**shape.msg, "id": msg_id} == json.loads(text)
    assert shape.command == ("execute" in body)


@given(_BODIES, _BODIES, _IDS, _IDS, st.booleans(), st.booleans())
def test_a_shape_is_never_lent_to_a_message_that_says_something_else(a, b, id_a, id_b, compact_a, compact_b):
    cache = MessageCache()
    cache.parse(_text(a, id_a, compact_a))
    text = _text(b, id_b, compact_b)
    known = cache.lookup(text)
    if known is not None:
        shape, msg_id = known
        assert {**shape.msg, "id": msg_id} == json.loads(text)


def test_an_id_inside_the_arguments_is_not_the_messages_id():
    """The last ``"id"`` key is the message's only when its value ends the message."""
    cache = MessageCache()
    cache.parse('{"execute":"x","arguments":{"a":1, "id": 2},"id":"libvirt-3"}')
    assert cache.lookup('{"execute":"x","arguments":{"a":1, "id": 2},"id":"libvirt-4"}')[1] == "libvirt-4"
    cache.parse('{"return": {"id": 7}, "id": 8}')
    assert cache.lookup('{"return": {"id": 9}, "id": 8}') is None
