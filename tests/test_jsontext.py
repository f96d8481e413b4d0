"""JSON text: the bulk writer writes exactly what dumps writes; strict reading."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refiner.errors import InputError
from refiner.jsontext import JsonNumber, dumps, dumps_in_bulk, loads

NUMBERS = st.one_of(st.integers(-2**70, 2**70),  # beyond 64 bits: orjson refuses, json writes
                    st.from_regex(r"-?(0|[1-9][0-9]{0,5})(\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?",
                                  fullmatch=True).map(JsonNumber))
KEYS = st.text(max_size=8)  # any code point: quotes, controls, U+2028, lone surrogates
VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(VALUES, st.sampled_from([None, 2, 4]), st.booleans())
def test_the_bulk_writer_writes_what_dumps_writes(value, indent, sort_keys):
    try:
        expected = dumps(value, indent, sort_keys)
    except (TypeError, ValueError):  # not writable at all (a key of another type): both fail
        with pytest.raises((TypeError, ValueError)):
            dumps_in_bulk(value, indent, sort_keys)
        return
    assert dumps_in_bulk(value, indent, sort_keys) == expected


def test_a_number_is_written_as_it_was_read():
    value = loads('{"a": [1e999, 1.0, 10, -0.0]}', "test")
    for write in (dumps, dumps_in_bulk):
        assert write(value) == '{"a":[1e999,1.0,10,-0.0]}'
        assert write(value, indent=2) == \
            '{\n  "a": [\n    1e999,\n    1.0,\n    10,\n    -0.0\n  ]\n}'


@given(st.lists(st.sampled_from("abc"), min_size=1, max_size=6))
def test_a_repeated_key_is_refused_naming_the_first_repeated(keys):
    text = "{" + ",".join(f'"{key}": {number}' for number, key in enumerate(keys)) + "}"
    repeated = next((key for number, key in enumerate(keys) if key in keys[:number]), None)
    if repeated is None:
        assert set(loads(text, "test")) == set(keys)
    else:
        with pytest.raises(InputError, match=f"repeats the key '{repeated}'"):
            loads(text, "test")
