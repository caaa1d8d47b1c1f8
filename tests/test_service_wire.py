"""The UDP datagram format (moai_flow_fast.service._wire): packing, signing, decoding."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moai_flow_fast.service._wire import (
    MAX_UDP_PAYLOAD,
    TAG_SIZE,
    decode_datagram,
    decode_datagrams,
    encode_datagrams,
)

_ids = st.lists(st.text(st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]),
                        min_size=1, max_size=40), max_size=200)


def test_unsigned_format_is_ids_joined_by_newlines() -> None:
    assert encode_datagrams(["a", "bc", "é"]) == ["a\nbc\né".encode()]
    assert decode_datagram(b"a\nbc\n\xc3\xa9\n") == ["a", "bc", "é"]   # trailing newline ok
    assert decode_datagram(b"\n\n") == []


def test_signed_format_is_raw_hmac_sha256_then_body() -> None:
    body = b"a\nb"
    tag = hmac.digest(b"key", body, hashlib.sha256)
    assert encode_datagrams(["a", "b"], secret="key") == [tag + body]
    assert decode_datagram(tag + body, secret=b"key") == ["a", "b"]
    assert len(tag) == TAG_SIZE


def test_bad_tag_short_datagram_and_bad_utf8_are_rejected() -> None:
    good = encode_datagrams(["a"], secret="key")[0]
    assert decode_datagram(good, secret="other") is None
    assert decode_datagram(good[:-1] + b"b", secret="key") is None     # body changed
    assert decode_datagram(b"short", secret="key") is None
    assert decode_datagram(b"\xff\xfe") is None
    # An unsigned datagram read by a service that wants signatures fails, and vice versa
    # the tag bytes are (almost surely) not UTF-8 ids.
    assert decode_datagram(b"a\nb", secret="key") is None


def test_packing_respects_max_size_and_keeps_order() -> None:
    ids = [f"agent-{i}" for i in range(1000)]
    for secret in (None, "s"):
        grams = encode_datagrams(ids, secret=secret, max_size=200)
        assert len(grams) > 1
        assert all(len(g) <= 200 for g in grams)
        out: list[str] = []
        for g in grams:
            decoded = decode_datagram(g, secret=secret)
            assert decoded is not None
            out.extend(decoded)
        assert out == ids


def test_exactly_full_datagram() -> None:
    grams = encode_datagrams(["aaaa", "bbbb"], max_size=9)     # "aaaa\nbbbb" is 9 bytes
    assert grams == [b"aaaa\nbbbb"]
    assert encode_datagrams(["aaaa", "bbbb"], max_size=8) == [b"aaaa", b"bbbb"]


@pytest.mark.parametrize(("ids", "error", "match"), [
    ([""], ValueError, r"ids\[0\]"),
    (["ok", "a\nb"], ValueError, r"ids\[1\]"),
    (["ok", 3], TypeError, r"ids\[1\] must be str"),
    (["x" * 300], ValueError, r"ids\[0\] is 300 bytes"),
])
def test_bad_ids_raise_naming_the_id(ids: list[object], error: type[Exception],
                                     match: str) -> None:
    with pytest.raises(error, match=match):
        encode_datagrams(ids, max_size=200)  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_size"):
        encode_datagrams(["a"], max_size=MAX_UDP_PAYLOAD + 1)
    with pytest.raises(ValueError, match="max_size"):
        encode_datagrams(["a"], secret="s", max_size=TAG_SIZE)
    with pytest.raises(TypeError, match="max_size"):
        encode_datagrams(["a"], max_size=True)
    with pytest.raises(ValueError, match="secret"):
        encode_datagrams(["a"], secret="")
    with pytest.raises(TypeError, match="secret"):
        encode_datagrams(["a"], secret=5)  # type: ignore[arg-type]


def test_decode_many_counts_bad_datagrams_and_keeps_good_ones() -> None:
    good = encode_datagrams(["a", "b"], secret="k") + encode_datagrams(["c"], secret="k")
    forged = encode_datagrams(["evil"], secret="wrong")
    ids, bad = decode_datagrams([good[0], forged[0], good[1], b""], secret="k")
    assert ids == ["a", "b", "c"]
    assert bad == 2
    ids, bad = decode_datagrams([b"a\nb", b"\xff", "é".encode()])
    assert (ids, bad) == (["a", "b", "é"], 1)


@given(_ids, st.sampled_from([None, "secret"]), st.integers(min_value=200, max_value=2000))
def test_round_trip(ids: list[str], secret: str | None, max_size: int) -> None:
    grams = encode_datagrams(ids, secret=secret, max_size=max_size)
    assert all(len(g) <= max_size for g in grams)
    assert decode_datagrams(grams, secret=secret) == (ids, 0)
