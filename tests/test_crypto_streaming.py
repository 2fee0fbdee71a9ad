"""Streaming AES-256-GCM (Tink AES-GCM-HKDF format): round trips, format bytes, and every attack refused."""

from __future__ import annotations

import io
import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from surgbox.crypto.streaming import (
    HEADER_SIZE,
    TAG_SIZE,
    DecryptingReader,
    DecryptionError,
    EncryptingWriter,
    StreamFormat,
    decrypt_file,
    derive_key,
    encrypt_file,
    salvage,
)
from surgbox.errors import IntegrityError

SEG = 256  # tiny segments: many boundaries in little data
FMT = StreamFormat(SEG)
KEY = bytes(range(32))


def encrypt(data: bytes, key: bytes = KEY, aad: bytes = b"ad", seg: int = SEG, chunk: int | None = None) -> bytes:
    out = io.BytesIO()
    w = EncryptingWriter.open(out, key, aad, segment_size=seg)
    if chunk:
        for i in range(0, len(data), chunk):
            w.write(data[i : i + chunk])
    else:
        w.write(data)
    w.close()
    return out.getvalue()


def decrypt(ct: bytes, key: bytes = KEY, aad: bytes = b"ad", seg: int = SEG) -> bytes:
    with DecryptingReader.open(io.BytesIO(ct), key, aad, segment_size=seg) as r:
        return r.read()


SIZES = [0, 1, FMT.first_plain - 1, FMT.first_plain, FMT.first_plain + 1,
         FMT.first_plain + FMT.plain, FMT.first_plain + FMT.plain + 1, 5000]


@pytest.mark.parametrize("n", SIZES)
def test_round_trip_and_sizes(n):
    data = os.urandom(n)
    ct = encrypt(data, chunk=7)
    assert len(ct) == FMT.ciphertext_size(n)
    assert FMT.layout(len(ct)) == (FMT.segment_count(n), n)
    assert decrypt(ct) == data
    if n >= 16:  # no plaintext in clear (shorter strings can occur by chance)
        assert data not in ct


def test_format_bytes_match_the_specification():
    """Rebuild the ciphertext by hand from the documented format, with fixed salt and nonce prefix."""
    salt, prefix = bytes(range(100, 132)), b"\x01\x02\x03\x04\x05\x06\x07"
    data = os.urandom(FMT.first_plain + FMT.plain + 10)
    out = io.BytesIO()
    w = EncryptingWriter.open(out, KEY, b"info", segment_size=SEG, salt=salt, nonce_prefix=prefix)
    w.write(data)
    w.close()
    aead = AESGCM(derive_key(KEY, salt, b"info"))
    parts = [data[: FMT.first_plain], data[FMT.first_plain : FMT.first_plain + FMT.plain], data[FMT.first_plain + FMT.plain :]]
    expected = bytes([40]) + salt + prefix
    for i, p in enumerate(parts):
        expected += aead.encrypt(prefix + struct.pack(">I", i) + bytes([i == 2]), p, None)
    assert out.getvalue() == expected
    assert HEADER_SIZE == 40 and expected[0] == 40
    assert len(expected) == HEADER_SIZE + len(data) + 3 * TAG_SIZE
    # segment 1 starts exactly at the ciphertext segment size: header + segment 0 fill one segment
    assert len(bytes([40]) + salt + prefix) + FMT.first_plain + TAG_SIZE == SEG


def test_default_segment_size_is_one_mebibyte():
    assert StreamFormat().segment_size == 1048576
    data = os.urandom(2_500_000)
    ct = encrypt(data, seg=1048576)
    assert len(ct) == 40 + len(data) + 3 * 16
    assert decrypt(ct, seg=1048576) == data


def test_seek_random_access_matches_plaintext():
    data = os.urandom(20_000)
    ct = encrypt(data)
    r = DecryptingReader.open(io.BytesIO(ct), KEY, b"ad", segment_size=SEG, cache_segments=2)
    assert r.size == len(data) and r.seekable() and r.readable()
    rng = __import__("random").Random(1)
    for _ in range(300):
        pos, n = rng.randrange(0, len(data) + 10), rng.randrange(0, 900)
        r.seek(pos)
        chunk = r.read(n)
        assert chunk == data[pos : pos + n]
        assert r.tell() == pos + len(chunk)
    assert r.seek(-5, io.SEEK_END) == len(data) - 5 and r.read() == data[-5:]
    r.seek(100)
    r.seek(10, io.SEEK_CUR)
    assert r.read(3) == data[110:113]
    assert len(r._cache) <= 2  # bounded cache
    r.close()


def test_works_with_buffered_reader_and_file_paths(tmp_path):
    data = os.urandom(9000)
    p = tmp_path / "x.enc"
    p.write_bytes(encrypt(data))
    with DecryptingReader.open(p, KEY, b"ad", segment_size=SEG) as r:
        assert io.BufferedReader(r, 100).read() == data
    with DecryptingReader.open(str(p), KEY, b"ad", segment_size=SEG) as r:
        assert r.readall() == data


def test_encrypt_and_decrypt_file_helpers():
    data = os.urandom(4321)
    ct = io.BytesIO()
    assert encrypt_file(io.BytesIO(data), ct, KEY, b"z", segment_size=SEG) == len(data)
    out = io.BytesIO()
    assert decrypt_file(io.BytesIO(ct.getvalue()), out, KEY, b"z", segment_size=SEG) == len(data)
    assert out.getvalue() == data


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_encrypt_file_on_real_files_in_parallel(tmp_path, workers):
    """Regular files take the pread/pwrite path: several threads, each segment at its own offset."""
    for n in [*SIZES, 40 * SEG + 7]:
        data = os.urandom(n)
        (tmp_path / "in").write_bytes(b"skip" + data)
        with open(tmp_path / "in", "rb") as fin, open(tmp_path / "out", "wb") as fout:
            fin.read(4)  # encrypts from the current position (a buffered reader has read ahead)
            fout.write(b"prefix")
            assert encrypt_file(fin, fout, KEY, b"ad", segment_size=SEG, workers=workers) == n
            assert fin.read() == b"" and fout.tell() == 6 + FMT.ciphertext_size(n)
            fout.write(b"after")  # the output position is right after the ciphertext
        blob = (tmp_path / "out").read_bytes()
        assert blob[:6] == b"prefix" and blob[-5:] == b"after"
        ct = blob[6:-5]
        assert len(ct) == FMT.ciphertext_size(n) and decrypt(ct) == data, n
        assert salvage(io.BytesIO(ct), KEY, b"ad", segment_size=SEG).complete


def test_encrypt_file_to_an_append_mode_file_streams(tmp_path):
    data = os.urandom(3000)
    (tmp_path / "in").write_bytes(data)
    (tmp_path / "out").write_bytes(b"old")
    with open(tmp_path / "in", "rb") as fin, open(tmp_path / "out", "ab") as fout:
        assert encrypt_file(fin, fout, KEY, b"ad", segment_size=SEG) == len(data)
    blob = (tmp_path / "out").read_bytes()
    assert blob[:3] == b"old" and decrypt(blob[3:]) == data


FSIZE_LIMITED = """
import os, resource, signal, sys
from surgbox.crypto.streaming import encrypt_file
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))  # the kernel refuses writes past 20 kB (EFBIG)
with open(sys.argv[1], "rb") as fin, open(sys.argv[2], "wb") as fout:
    try:
        encrypt_file(fin, fout, bytes(32), b"ad", segment_size=256, workers=3)
    except OSError as exc:
        print("raised", exc.errno)
"""


def test_encrypt_file_write_failure_in_a_worker_is_raised(tmp_path):
    import errno
    import subprocess
    import sys

    (tmp_path / "in").write_bytes(os.urandom(100_000))
    out = subprocess.run([sys.executable, "-c", FSIZE_LIMITED, str(tmp_path / "in"), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["raised", str(errno.EFBIG)], out.stderr


# ---- attacks: every one must fail with DecryptionError and never return wrong plaintext ---------

DATA = os.urandom(FMT.first_plain + 4 * FMT.plain + 50)  # 6 segments


def refused(ct: bytes, key: bytes = KEY, aad: bytes = b"ad") -> None:
    with pytest.raises(DecryptionError):
        with DecryptingReader.open(io.BytesIO(ct), key, aad, segment_size=SEG) as r:
            r.read()


def test_wrong_associated_data_and_wrong_key_refused():
    ct = encrypt(DATA)
    refused(ct, aad=b"other")
    refused(ct, aad=b"")
    refused(ct, key=bytes(32))
    with pytest.raises(DecryptionError, match="wrong key or associated data"):
        DecryptingReader.open(io.BytesIO(ct), KEY, b"bad", segment_size=SEG)


@pytest.mark.parametrize("where", [0, 1, 20, 39, 40, 100, SEG - 1, SEG, 3 * SEG + 7, -1, -17])
def test_bit_flip_anywhere_refused(where):
    ct = bytearray(encrypt(DATA))
    ct[where] ^= 0x01
    refused(bytes(ct))


def test_failed_in_place_decryption_leaves_no_plaintext_in_the_buffer():
    ct = bytearray(encrypt(DATA))
    ct[SEG + 5] ^= 0x80  # inside segment 1 (a whole-segment read decrypts straight into the buffer)
    r = DecryptingReader.open(io.BytesIO(bytes(ct)), KEY, b"ad", segment_size=SEG)
    r.seek(FMT.first_plain)
    buf = bytearray(b"\xaa" * (3 * SEG))
    with pytest.raises(DecryptionError, match="segment 1"):
        r.readinto(buf)
    assert bytes(buf[: FMT.plain]) == bytes(FMT.plain)  # zeroed, not the unauthenticated plaintext
    r.seek(0)
    whole = bytearray(len(DATA))  # large aligned reads use the in-place path; good files read exactly
    good = DecryptingReader.open(io.BytesIO(encrypt(DATA)), KEY, b"ad", segment_size=SEG)
    assert good.readinto(whole) == len(DATA) and bytes(whole) == DATA


def test_tamper_detected_on_the_segment_read_and_no_plaintext_from_it():
    ct = bytearray(encrypt(DATA))
    ct[2 * SEG + 5] ^= 0x80  # inside segment 2
    r = DecryptingReader.open(io.BytesIO(bytes(ct)), KEY, b"ad", segment_size=SEG)
    assert r.read(FMT.first_plain + FMT.plain) == DATA[: FMT.first_plain + FMT.plain]  # segments 0,1 fine
    with pytest.raises(DecryptionError, match="segment 2"):
        r.read(10)
    assert isinstance(DecryptionError("x"), IntegrityError)


@pytest.mark.parametrize("cut", [1, 15, 16, 17, SEG, SEG + 16, 2 * SEG])
def test_truncation_refused(cut):
    ct = encrypt(DATA)
    refused(ct[:-cut])


def test_truncation_at_segment_boundary_refused_even_though_segments_are_intact():
    ct = encrypt(DATA)
    n_full = 3
    refused(ct[: n_full * SEG])  # header + 3 complete non-last segments
    refused(ct[:HEADER_SIZE])
    refused(ct[: HEADER_SIZE - 1])


def test_extension_and_appended_segment_refused():
    ct = encrypt(DATA)
    refused(ct + b"\x00" * 16)
    refused(ct + ct[SEG : 2 * SEG])


def test_segment_reordering_refused():
    ct = encrypt(DATA)
    s1, s2 = ct[SEG : 2 * SEG], ct[2 * SEG : 3 * SEG]
    swapped = ct[:SEG] + s2 + s1 + ct[3 * SEG :]
    assert len(swapped) == len(ct)
    refused(swapped)
    dup = ct[:SEG] + s1 + s1 + ct[3 * SEG :]
    refused(dup)


def test_header_swap_between_two_files_refused():
    a, b = encrypt(DATA), encrypt(DATA)
    assert a[:HEADER_SIZE] != b[:HEADER_SIZE]  # fresh random salt and nonce prefix per file
    refused(b[:HEADER_SIZE] + a[HEADER_SIZE:])
    refused(a[:SEG] + b[SEG:])  # segments spliced from another file of the same key and AAD


def test_not_an_encrypted_file():
    with pytest.raises(DecryptionError, match="header length byte"):
        DecryptingReader.open(io.BytesIO(b"\x00" * 1000), KEY, segment_size=SEG)
    with pytest.raises(DecryptionError, match="shorter than"):
        DecryptingReader.open(io.BytesIO(b"\x28abc"), KEY, segment_size=SEG)


def test_wrong_segment_size_refused():
    refused_ct = encrypt(DATA)
    with pytest.raises(DecryptionError):
        DecryptingReader.open(io.BytesIO(refused_ct), KEY, b"ad", segment_size=SEG * 2).read()


def test_segment_size_validation():
    with pytest.raises(ValueError):
        StreamFormat(56)
    StreamFormat(57)


# ---- crash recovery -----------------------------------------------------------------------------

class Sink(io.BytesIO):
    pass


def test_writer_emits_complete_segments_promptly_and_salvage_recovers_them():
    out = Sink()
    w = EncryptingWriter.open(out, KEY, b"ad", segment_size=SEG)
    data = os.urandom(FMT.first_plain + 3 * FMT.plain + 40)
    w.write(data)
    # everything but the open (last) segment is already in the sink
    assert w.segments_written == 4
    assert len(out.getvalue()) == SEG * 4
    crashed = out.getvalue()  # the writer "dies" here: no last segment
    refused(crashed)  # strict decryption refuses the unterminated stream
    got = []
    res = salvage(io.BytesIO(crashed), KEY, b"ad", got.append, segment_size=SEG)
    assert (res.segments, res.complete) == (4, False)
    assert b"".join(got) == data[: res.plaintext_size] and res.plaintext_size == FMT.first_plain + 3 * FMT.plain
    # a torn write: part of the next segment also reached the file
    res2 = salvage(io.BytesIO(crashed + os.urandom(100)), KEY, b"ad", segment_size=SEG)
    assert (res2.segments, res2.complete) == (4, False) and "incomplete" in res2.stopped


def test_salvage_of_complete_stream_is_complete_and_exact():
    for n in SIZES:
        data = os.urandom(n)
        got = []
        res = salvage(io.BytesIO(encrypt(data)), KEY, b"ad", got.append, segment_size=SEG)
        assert res.complete and b"".join(got) == data, n


def test_salvage_stops_at_a_damaged_segment():
    ct = bytearray(encrypt(DATA))
    ct[3 * SEG + 1] ^= 1
    got = []
    res = salvage(io.BytesIO(bytes(ct)), KEY, b"ad", got.append, segment_size=SEG)
    assert not res.complete and res.segments == 3 and b"".join(got) == DATA[: res.plaintext_size]
    assert salvage(io.BytesIO(encrypt(DATA)), KEY, b"wrong", segment_size=SEG).segments == 0


def test_abort_leaves_no_last_segment():
    out = Sink()
    w = EncryptingWriter.open(out, KEY, b"ad", segment_size=SEG)
    w.write(b"x" * 1000)
    w.abort()
    assert w.closed
    refused(out.getvalue())


@pytest.mark.parametrize("background", [False, True])
def test_dropped_writer_is_left_unfinished_not_completed(background, caplog):
    out = Sink()
    w = EncryptingWriter.open(out, KEY, b"ad", segment_size=SEG, background=background)
    w.write(DATA)
    del w  # garbage collected without close(): must not write the last-flagged segment
    import gc

    gc.collect()
    assert "dropped without close()" in caplog.text
    res = salvage(io.BytesIO(out.getvalue()), KEY, b"ad", segment_size=SEG)
    assert not res.complete and 0 < res.plaintext_size < len(DATA)
    refused(out.getvalue())
    # an explicit close() still finishes the stream
    out2 = Sink()
    w2 = EncryptingWriter.open(out2, KEY, b"ad", segment_size=SEG, background=background)
    w2.write(DATA)
    w2.close()
    del w2
    assert salvage(io.BytesIO(out2.getvalue()), KEY, b"ad", segment_size=SEG).complete
    assert decrypt(out2.getvalue()) == DATA


def test_writer_memory_is_bounded():
    out = io.BytesIO()
    w = EncryptingWriter.open(out, KEY, segment_size=SEG)
    for _ in range(200):
        w.write(os.urandom(1000))
    assert len(w._buf) == FMT.plain and len(w._out) == SEG
    w.close()
    assert decrypt(out.getvalue(), aad=b"") is not None
