"""Encryption throughput vs a plain file copy of the same data, measured in the same run.

    pytest benchmarks/bench_crypto.py -p no:cacheprovider --benchmark-columns=min,mean,rounds -s

Targets (issue 7): encrypt+write and read+decrypt each >= 0.5x the plain copy and >= 300 MB/s.
Size: ``SURGBOX_BENCH_MB`` (default 256) MB of random data in a temporary directory (page cache
warm, as for a recorder writing a fresh file). The plain copy is ``shutil.copyfile`` (in-kernel
``sendfile`` on Linux), the fastest copy Python offers, so the ratio is conservative.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from surgbox.crypto import KeyRing, MasterKey
from surgbox.crypto.streaming import DecryptingReader, encrypt_file
from surgbox_ext.store import LocalStore

MB = 1_000_000
SIZE = int(os.environ.get("SURGBOX_BENCH_MB", "256")) * MB
KEY = MasterKey.generate()
ROUNDS = int(os.environ.get("SURGBOX_BENCH_ROUNDS", "5"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_crypto")
    src = d / "plain.bin"
    with open(src, "wb") as f:
        for _ in range(SIZE // (8 * MB)):
            f.write(os.urandom(8 * MB))
        f.write(os.urandom(SIZE % (8 * MB)))
    with open(src, "rb") as fin, open(d / "enc.bin", "wb") as fout:
        encrypt_file(fin, fout, KEY.material, b"bench")
    return d, src


class PlainCopy:
    """The baseline, timed in each round's setup right before the measured operation, so both see
    the same machine load: ``shutil.copyfile`` of the plaintext file to a new file. ``clean``
    paths are deleted (untimed) before each round, so neither side pays for truncating old output."""

    def __init__(self, work, clean=(), fsync: bool = False):
        self.src = work[1]
        self.dst = work[0] / "copy.bin"
        self.clean, self.fsync = clean, fsync
        self.times: list[float] = []

    def __call__(self) -> None:
        for p in self.clean:
            p.unlink(missing_ok=True)
        t = time.perf_counter()
        shutil.copyfile(self.src, self.dst)
        if self.fsync:
            fd = os.open(self.dst, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        self.times.append(time.perf_counter() - t)
        self.dst.unlink()

    @property
    def mb_per_s(self) -> float:
        return SIZE / min(self.times) / MB


def measure(benchmark, work, fn, clean=(), fsync: bool = False) -> PlainCopy:
    baseline = PlainCopy(work, clean, fsync)
    benchmark.pedantic(fn, setup=baseline, rounds=ROUNDS, iterations=1)
    return baseline


def report(benchmark, name: str, baseline: PlainCopy) -> tuple[float, float]:
    mbps = SIZE / benchmark.stats.stats.min / MB
    ratio = mbps / baseline.mb_per_s
    benchmark.extra_info.update(size_mb=SIZE / MB, mb_per_s=round(mbps, 1),
                                plain_copy_mb_per_s=round(baseline.mb_per_s, 1), ratio_vs_plain_copy=round(ratio, 3))
    print(f"\n{name}: {mbps:.0f} MB/s; plain copy {baseline.mb_per_s:.0f} MB/s; ratio {ratio:.2f} "
          f"(best of {ROUNDS}, {SIZE // MB} MB)")
    return mbps, ratio


def test_encrypt_write(benchmark, work):
    d, src = work
    dst = d / "enc-bench.bin"

    def run():
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            encrypt_file(fin, fout, KEY.material, b"bench")

    mbps, ratio = report(benchmark, "encrypt+write", measure(benchmark, work, run, clean=[dst]))
    assert mbps >= 300 and ratio >= 0.5


def test_read_decrypt(benchmark, work):
    d, _ = work
    enc = d / "enc.bin"
    buf = bytearray(8 << 20)  # large reads, as a bulk consumer does (whole segments decrypt in place)

    def run():
        with DecryptingReader.open(enc, KEY.material, b"bench", cache_segments=2) as r:
            n = 0
            while got := r.readinto(buf):
                n += got
        assert n == SIZE

    mbps, ratio = report(benchmark, "read+decrypt", measure(benchmark, work, run))
    assert mbps >= 300 and ratio >= 0.5


def test_store_put_fsync_sha256(benchmark, work):
    """The full store path: encrypt, SHA-256, write, fsync, rename, sidecar; baseline: copy + fsync.
    Information only (the store writes synchronously so a killed recorder loses at most one segment)."""
    d, src = work
    root = d / "store"
    root.mkdir(exist_ok=True)
    store = LocalStore(root, keyring=KeyRing.of(KEY), init=True)
    store.open()
    counter = iter(range(1000))

    def run():
        with open(src, "rb") as fin, store.writer(f"obj-{next(counter)}") as w:
            buf = bytearray(1 << 20)
            while n := fin.readinto(buf):
                w.write(memoryview(buf)[:n])

    report(benchmark, "store put (encrypt+sha256+write+fsync) vs copy+fsync",
           measure(benchmark, work, run, fsync=True))
    for k in list(store.keys()):
        store.delete(k)


def test_store_mirror_read(benchmark, work):
    """Reading through a mirror's fail-over (``surgbox_ext.store.failover``: each segment from the
    first copy that authenticates, two disks) vs the plain copy. Information only."""
    from surgbox_ext.store import MirrorStore

    d, src = work
    roots = [d / "mirror-a", d / "mirror-b"]
    for r in roots:
        r.mkdir(exist_ok=True)
    with MirrorStore(roots, keyring=KeyRing.of(KEY), init=True) as store:
        if not store.exists("rec"):
            with open(src, "rb") as fin, store.writer("rec") as w:
                while chunk := fin.read(1 << 20):
                    w.write(chunk)
        buf = bytearray(8 << 20)

        def run():
            with store.reader("rec") as r:
                n = 0
                while got := r.readinto(buf):
                    n += got
            assert n == SIZE

        report(benchmark, "store mirror read+decrypt", measure(benchmark, work, run))
