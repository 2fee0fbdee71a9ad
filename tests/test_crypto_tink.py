"""Interoperability with Google's ``tink`` package, both directions, through real Tink keysets."""

from __future__ import annotations

import io
import os

import pytest

from surgbox.crypto.streaming import DecryptingReader, DecryptionError, EncryptingWriter, salvage

tink = pytest.importorskip("tink", reason="the tink package (dev extra) is needed for interop tests")
from tink import cleartext_keyset_handle, streaming_aead  # noqa: E402
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2  # noqa: E402

streaming_aead.register()
TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"


class KeepOpen(io.BytesIO):
    """Tink closes the destination stream; keep the bytes readable afterwards."""

    def close(self) -> None:
        pass


def export_raw(handle) -> tuple[bytes, int]:
    """(key material, ciphertext segment size) of a Tink AES-GCM-HKDF streaming keyset."""
    buf = io.BytesIO()
    cleartext_keyset_handle.write(tink.BinaryKeysetWriter(buf), handle)
    ks = tink_pb2.Keyset.FromString(buf.getvalue())
    (entry,) = ks.key
    assert entry.key_data.type_url == TYPE_URL
    key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey.FromString(entry.key_data.value)
    assert key.params.derived_key_size == 32 and key.params.hkdf_hash_type == common_pb2.SHA256
    return key.key_value, key.params.ciphertext_segment_size


def import_raw(material: bytes, segment_size: int):
    """A Tink keyset handle holding our raw 32-byte key as an AES256-GCM-HKDF streaming key."""
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=segment_size, derived_key_size=32, hkdf_hash_type=common_pb2.SHA256)
    key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(version=0, params=params, key_value=material)
    ks = tink_pb2.Keyset(primary_key_id=42, key=[tink_pb2.Keyset.Key(
        key_data=tink_pb2.KeyData(type_url=TYPE_URL, value=key.SerializeToString(),
                                  key_material_type=tink_pb2.KeyData.SYMMETRIC),
        status=tink_pb2.ENABLED, key_id=42, output_prefix_type=tink_pb2.RAW)])
    return cleartext_keyset_handle.read(tink.BinaryKeysetReader(ks.SerializeToString()))


def tink_encrypt(handle, data: bytes, aad: bytes) -> bytes:
    out = KeepOpen()
    with handle.primitive(streaming_aead.StreamingAead).new_encrypting_stream(out, aad) as s:
        s.write(data)
    return out.getvalue()


def tink_decrypt(handle, ct: bytes, aad: bytes) -> bytes:
    with handle.primitive(streaming_aead.StreamingAead).new_decrypting_stream(io.BytesIO(ct), aad) as s:
        return s.read()


def ours_encrypt(material: bytes, data: bytes, aad: bytes, seg: int) -> bytes:
    out = io.BytesIO()
    w = EncryptingWriter.open(out, material, aad, segment_size=seg)
    w.write(data)
    w.close()
    return out.getvalue()


SIZES_4K = [0, 1, 4040, 4041, 4040 + 4080, 4040 + 4080 + 1, 50_000]


@pytest.fixture(scope="module")
def tink_4k():
    return tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_4KB)


@pytest.mark.parametrize("n", SIZES_4K)
def test_tink_encrypts_we_decrypt(tink_4k, n):
    material, seg = export_raw(tink_4k)
    assert seg == 4096
    data = os.urandom(n)
    ct = tink_encrypt(tink_4k, data, b"surgbox interop")
    with DecryptingReader.open(io.BytesIO(ct), material, b"surgbox interop", segment_size=seg) as r:
        assert r.read() == data
        if n > 10:  # random access into Tink's ciphertext
            r.seek(n // 2)
            assert r.read(7) == data[n // 2 : n // 2 + 7]
    res = salvage(io.BytesIO(ct), material, b"surgbox interop", segment_size=seg)
    assert res.complete and res.plaintext_size == n
    with pytest.raises(DecryptionError):
        DecryptingReader.open(io.BytesIO(ct), material, b"other aad", segment_size=seg).read()


@pytest.mark.parametrize("n", SIZES_4K)
def test_we_encrypt_tink_decrypts(n):
    material = os.urandom(32)
    handle = import_raw(material, 4096)
    data = os.urandom(n)
    ct = ours_encrypt(material, data, b"aad", 4096)
    assert tink_decrypt(handle, ct, b"aad") == data
    # and Tink's own ciphertext for the same plaintext has exactly our length
    assert len(tink_encrypt(handle, data, b"aad")) == len(ct)


def test_default_1mb_template_both_ways():
    handle = tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB)
    material, seg = export_raw(handle)
    assert seg == 1 << 20
    data = os.urandom(2 * (1 << 20) + 12345)
    ct = tink_encrypt(handle, data, b"1mb")
    with DecryptingReader.open(io.BytesIO(ct), material, b"1mb") as r:  # our default segment size
        assert r.read() == data
    assert tink_decrypt(handle, ours_encrypt(material, data, b"1mb", 1 << 20), b"1mb") == data


def test_tink_refuses_our_tampered_or_truncated_output():
    material = os.urandom(32)
    handle = import_raw(material, 4096)
    ct = bytearray(ours_encrypt(material, os.urandom(20_000), b"x", 4096))
    with pytest.raises(tink.TinkError):
        tink_decrypt(handle, bytes(ct[:-4096]), b"x")
    ct[5000] ^= 1
    with pytest.raises(tink.TinkError):
        tink_decrypt(handle, bytes(ct), b"x")


@pytest.mark.parametrize("n", SIZES_4K)
def test_tink_decrypts_parallel_encrypt_file_output(tmp_path, n):
    """encrypt_file on real files (the multi-threaded pread/pwrite path) writes Tink's format."""
    from surgbox.crypto.streaming import encrypt_file

    material = os.urandom(32)
    data = os.urandom(n)
    (tmp_path / "in").write_bytes(data)
    with open(tmp_path / "in", "rb") as fin, open(tmp_path / "out", "wb") as fout:
        assert encrypt_file(fin, fout, material, b"aad", segment_size=4096, workers=3) == n
    assert tink_decrypt(import_raw(material, 4096), (tmp_path / "out").read_bytes(), b"aad") == data
