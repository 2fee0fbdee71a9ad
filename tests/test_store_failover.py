"""Mirror fail-over (the store's policy, ``surgbox_ext.store.failover``): reading one object from
several copies takes every segment from a copy that holds it intact, and blames only the damaged copy.
(These tests moved here from test_crypto_streaming.py when the policy moved out of crypto.)"""

from __future__ import annotations

import io
import os

import pytest

from surgbox.crypto.streaming import DecryptingReader, DecryptionError, EncryptingWriter, StreamFormat
from surgbox_ext.store.failover import open_copies

SEG = 256  # tiny segments: many boundaries in little data
FMT = StreamFormat(SEG)
KEY = bytes(range(32))
DATA = os.urandom(FMT.first_plain + 4 * FMT.plain + 50)  # 6 segments


def encrypt(data: bytes, key: bytes = KEY, aad: bytes = b"ad", seg: int = SEG) -> bytes:
    out = io.BytesIO()
    w = EncryptingWriter.open(out, key, aad, segment_size=seg)
    w.write(data)
    w.close()
    return out.getvalue()


def test_the_format_reader_reads_one_copy_and_points_to_the_store():
    with pytest.raises(TypeError, match="open_copies"):
        DecryptingReader.open([io.BytesIO(encrypt(DATA))], KEY, b"ad", segment_size=SEG)


# ---- mirror sources: a damaged copy is bypassed ------------------------------------------------

def test_reader_fails_over_to_a_good_copy():
    ct = encrypt(DATA)
    bad = bytearray(ct)
    bad[2 * SEG + 3] ^= 1
    seen = []
    with open_copies([io.BytesIO(bytes(bad)), io.BytesIO(ct)], KEY, b"ad", segment_size=SEG,
                               on_bad_copy=lambda i, s, e: seen.append((i, s))) as r:
        assert r.read() == DATA
    assert seen == [(0, 2)]


@pytest.mark.parametrize("where", [0, 5, 1 + 32 + 3])  # header length byte, salt, nonce prefix
def test_damaged_header_on_the_first_copy_is_read_from_the_other(where):
    ct = encrypt(DATA)
    bad = bytearray(ct)
    bad[where] ^= 0x40
    seen = []
    with open_copies([io.BytesIO(bytes(bad)), io.BytesIO(ct)], KEY, b"ad", segment_size=SEG,
                               on_bad_copy=lambda i, s, e: seen.append(i)) as r:
        assert r.read() == DATA
        r.seek(3 * SEG)
        assert r.read(10) == DATA[3 * SEG : 3 * SEG + 10]
    assert seen and set(seen) == {0}  # only the damaged copy is blamed
    # the other way round, and the damaged header's copy still serves segments the good copy lost
    bad2 = bytearray(ct)
    bad2[2 * SEG + 7] ^= 1  # copy 0: header fine, segment 2 damaged; copy 1: header damaged, data fine
    seen.clear()
    with open_copies([io.BytesIO(bytes(bad2)), io.BytesIO(bytes(bad))], KEY, b"ad", segment_size=SEG,
                               on_bad_copy=lambda i, s, e: seen.append((i, s))) as r:
        assert r.read() == DATA
    assert (0, 2) in seen and all(i == 1 or s == 2 for i, s in seen)


@pytest.mark.parametrize("change", ["truncated", "extended"])
def test_copies_of_different_sizes(change):
    ct = encrypt(DATA)
    other = ct[: len(ct) - SEG - 5] if change == "truncated" else ct + os.urandom(100)
    seen = []
    for copies in ([other, ct], [ct, other]):
        seen.clear()
        with open_copies([io.BytesIO(c) for c in copies], KEY, b"ad", segment_size=SEG,
                                   on_bad_copy=lambda i, s, e: seen.append(i)) as r:
            assert r.size == len(DATA) and r.read() == DATA
        assert set(seen) <= {copies.index(other)}


def test_every_copy_damaged_is_refused():
    ct = encrypt(DATA)
    a, b = bytearray(ct), bytearray(ct)
    a[5] ^= 1
    a[SEG + 3] ^= 1
    b[SEG + 3] ^= 1
    with pytest.raises(DecryptionError, match="segment 1"):
        with open_copies([io.BytesIO(bytes(a)), io.BytesIO(bytes(b))], KEY, b"ad", segment_size=SEG) as r:
            r.read()
