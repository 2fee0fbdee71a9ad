"""The store conformance suite: what every :class:`~surgbox.interfaces.Store` plugin must do, and
what each optional capability it declares (:data:`~surgbox.interfaces.STORE_CAPABILITIES`) means.

``local`` and ``mirror`` pass it, and so must a vendor's store before the catalog, ``record
--event``, ``events recover`` and ``surgbox store`` use it. Subclass :class:`StoreConformance` in a
test module and give the fixture ``make_store``: a function ``make(keyring) -> Store`` that builds
a store (not opened) over the *same* storage every time it is called (a second object must see
what the first wrote: reopening, another key, recovery after a crash)::

    import pytest
    from surgbox.testing.store_conformance import StoreConformance

    class TestAcmeStore(StoreConformance):
        required = ("recovery", "info", "keyring")      # fail, rather than skip, when these are missing

        @pytest.fixture
        def make_store(self, tmp_path):
            return lambda keyring: AcmeStore(path=tmp_path / "acme", keyring=keyring, init=True)

Run it with ``pytest``. Tests of a capability the store does not declare are skipped (listed in the
summary with the reason) unless the capability is in ``required``. The crash tests ``fork`` a
child that writes and is killed with ``SIGKILL`` (POSIX only). Set ``raw_paths`` (a fixture
returning the files or folders where the store keeps its bytes) to check that no plaintext rests
there.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from surgbox.crypto.keys import KeyRing, MasterKey
from surgbox.errors import IntegrityError, StoreError
from surgbox.interfaces import STORE_CAPABILITIES, Store, check_store

__all__ = ["StoreConformance", "payload"]

SMALL_SEGMENT = 4096


def payload(n: int, seed: int = 0) -> bytes:
    """``n`` reproducible, incompressible bytes (a recording stand-in)."""
    out, i = bytearray(), 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def _put(store: Any, key: str, data: bytes, metadata: dict[str, str] | None = None, **options: Any) -> None:
    with store.writer(key, metadata, **options) as w:
        for i in range(0, len(data), 10_000):
            w.write(data[i : i + 10_000])


def _get(store: Any, key: str) -> bytes:
    with store.reader(key) as r:
        return r.read()


class StoreConformance:
    """Mix-in test class: subclass it as ``TestSomething`` and provide the ``make_store`` fixture."""

    #: capabilities whose absence fails (instead of skipping) their tests
    required: tuple[str, ...] = ()

    # ---- helpers ----------------------------------------------------------------------------
    @pytest.fixture
    def key(self) -> MasterKey:
        return MasterKey.generate()

    @pytest.fixture
    def store(self, make_store: Callable[[KeyRing], Any], key: MasterKey) -> Any:
        s = make_store(KeyRing.of(key))
        s.open()
        yield s
        s.close()

    @pytest.fixture
    def raw_paths(self) -> Iterable[Path] | None:
        """Override: where the store keeps its bytes (checked for plaintext); ``None`` skips the check."""
        return None

    def need(self, store: Any, capability: str) -> None:
        """Skip (or, when ``capability`` is in :attr:`required`, fail) unless ``store`` has it."""
        if not isinstance(store, STORE_CAPABILITIES[capability]):
            msg = f"{type(store).__name__} lacks the store capability {capability!r}"
            if capability in self.required:
                pytest.fail(msg)
            pytest.skip(msg)

    # ---- the base contract -----------------------------------------------------------------
    def test_is_a_store_and_declares_what_it_has(self, store: Any) -> None:
        check_store(store, *(c for c in self.required))
        assert isinstance(store, Store) or all(callable(getattr(store, m, None)) for m in ("writer", "reader", "keys", "delete"))

    @pytest.mark.parametrize("size", [0, 1, 4095, 100_000])
    def test_round_trip(self, store: Any, size: int) -> None:
        data = payload(size, size)
        _put(store, f"rt/{size}.bin", data)
        assert _get(store, f"rt/{size}.bin") == data

    def test_reader_is_seekable(self, store: Any) -> None:
        data = payload(70_000, 3)
        _put(store, "seek/rec.mp4", data)
        with store.reader("seek/rec.mp4") as r:
            assert r.seekable()
            for pos in (0, 33_333, 69_999, 4096, 12):
                r.seek(pos)
                assert r.read(100) == data[pos : pos + 100]
            assert r.seek(0, io.SEEK_END) == len(data)

    def test_keys_are_sorted_committed_and_filtered_by_prefix(self, store: Any) -> None:
        for k in ("b/2", "a/1", "b/1", "c"):
            _put(store, k, k.encode())
        w = store.writer("b/3")  # open, not committed: not listed
        w.write(b"in progress")
        assert list(store.keys()) == ["a/1", "b/1", "b/2", "c"]
        assert list(store.keys("b/")) == ["b/1", "b/2"]
        w.close()
        assert list(store.keys("b/")) == ["b/1", "b/2", "b/3"]

    def test_an_exception_inside_the_writer_leaves_nothing(self, store: Any) -> None:
        with pytest.raises(RuntimeError):
            with store.writer("x/aborted") as w:
                w.write(payload(20_000))
                raise RuntimeError("boom")
        assert list(store.keys("x/")) == []
        with pytest.raises((StoreError, LookupError)):
            store.reader("x/aborted")
        _put(store, "x/aborted", b"the key is free again")
        assert _get(store, "x/aborted") == b"the key is free again"

    def test_an_existing_key_is_refused(self, store: Any) -> None:
        _put(store, "k", b"first")
        with pytest.raises(StoreError):
            store.writer("k")
        assert _get(store, "k") == b"first"

    def test_a_second_writer_of_one_key_is_refused(self, store: Any, make_store: Any, key: MasterKey) -> None:
        w = store.writer("busy")
        w.write(b"first writer")
        with pytest.raises(StoreError):
            store.writer("busy")
        other = make_store(KeyRing.of(key))
        other.open()
        try:
            with pytest.raises(StoreError):
                other.writer("busy")
        finally:
            other.close()
        w.close()
        assert _get(store, "busy") == b"first writer"

    def test_delete(self, store: Any) -> None:
        _put(store, "d/1", b"x")
        _put(store, "d/2", b"y")
        store.delete("d/1")
        assert list(store.keys("d/")) == ["d/2"]
        with pytest.raises((StoreError, LookupError)):
            store.reader("d/1")
        with pytest.raises((StoreError, LookupError)):
            store.delete("d/1")
        _put(store, "d/1", b"a new object under the old key")
        assert _get(store, "d/1") == b"a new object under the old key"

    @pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "a//b", "..", "a\nb", "tab\there", "esc\x1b[31m", "nul\0",
                                     "x" * 5000])
    def test_bad_keys_are_refused_with_a_store_error(self, store: Any, bad: str) -> None:
        with pytest.raises(StoreError):
            with store.writer(bad) as w:
                w.write(b"x")
        assert list(store.keys()) == []
        assert store.status()["healthy"]

    def test_a_key_that_is_a_folder_of_another_key(self, store: Any) -> None:
        """Either both objects work, or the second is refused with a StoreError; never a broken store."""
        _put(store, "p/a/b", b"inner")
        try:
            _put(store, "p/a", b"outer")
        except StoreError:
            assert list(store.keys("p/")) == ["p/a/b"]
        else:
            assert _get(store, "p/a") == b"outer"
        assert _get(store, "p/a/b") == b"inner" and store.status()["healthy"]

    def test_data_survives_reopening(self, store: Any, make_store: Any, key: MasterKey) -> None:
        _put(store, "persist", payload(9000, 9))
        store.close()
        again = make_store(KeyRing.of(key))
        with again:
            assert _get(again, "persist") == payload(9000, 9)
        store.open()

    def test_status_and_close(self, store: Any) -> None:
        st = store.status()
        assert st["healthy"] is True and not st.get("degraded") and isinstance(st["roots"], list)
        store.close()
        store.close()  # idempotent
        store.open()

    def test_no_plaintext_at_rest(self, store: Any, raw_paths: Iterable[Path] | None) -> None:
        if raw_paths is None:
            pytest.skip("raw_paths not given: cannot look at the stored bytes")
        marker = b"PLAINTEXT-MARKER-" + payload(64, 1).hex().encode()
        _put(store, "secret", marker * 100, {"kind": "segment"})
        files = [p for root in raw_paths for p in ([Path(root)] if Path(root).is_file() else Path(root).rglob("*"))
                 if p.is_file()]
        assert files, "raw_paths holds no file"
        assert not [p for p in files if marker[:32] in p.read_bytes()]

    # ---- capability: info -------------------------------------------------------------------
    def test_info_and_metadata(self, store: Any) -> None:
        self.need(store, "info")
        data = payload(12_345, 4)
        _put(store, "i/rec.mp4", data, {"kind": "segment", "camera": "room"})
        assert store.exists("i/rec.mp4") and not store.exists("i/nothing")
        m = store.info("i/rec.mp4")
        assert m.plaintext_size == len(data) and dict(m.metadata) == {"kind": "segment", "camera": "room"}
        assert isinstance(m.sha256, str) and len(m.sha256) == 64 and not m.recovered and m.created_ns > 0
        with pytest.raises((StoreError, LookupError)):
            store.info("i/nothing")

    # ---- capability: keyring ----------------------------------------------------------------
    def test_another_key_cannot_read_and_rotation_keeps_old_objects(self, store: Any, make_store: Any,
                                                                    key: MasterKey) -> None:
        self.need(store, "keyring")
        _put(store, "old", b"written with the first key")
        stranger = make_store(KeyRing.of(MasterKey.generate()))
        with stranger:
            with pytest.raises((IntegrityError, StoreError)):
                _get(stranger, "old")
        new = MasterKey.generate()
        rotated = make_store(KeyRing.of(key).rotated(new))
        with rotated:
            _put(rotated, "new", b"written with the new key")
            assert _get(rotated, "old") == b"written with the first key"
        with make_store(KeyRing.of(new)) as only_new:
            assert _get(only_new, "new") == b"written with the new key"

    # ---- capability: segment size -----------------------------------------------------------
    def test_segment_size_per_object(self, store: Any) -> None:
        self.need(store, "segment_size")
        assert isinstance(store.segment_size, int) and store.segment_size > 0
        data = payload(50_000, 5)
        _put(store, "seg/small", data, {"kind": "data"}, segment_size=SMALL_SEGMENT)
        assert _get(store, "seg/small") == data
        if isinstance(store, STORE_CAPABILITIES["info"]):
            assert store.info("seg/small").segment_size == SMALL_SEGMENT

    # ---- capability: scrub ------------------------------------------------------------------
    def test_verify_and_scrub_a_healthy_store(self, store: Any) -> None:
        self.need(store, "scrub")
        _put(store, "s/1", payload(30_000, 6))
        _put(store, "s/2", b"")
        for report in (store.verify(), store.verify(decrypt=True), store.scrub()):
            assert report.ok and list(report.problems) == [] and list(report.lost) == [] and report.objects >= 2
            d = report.to_dict()
            assert d["ok"] is True and d["problems"] == []
        assert _get(store, "s/1") == payload(30_000, 6)

    # ---- capability: recovery ---------------------------------------------------------------
    def _crash_writer(self, make_store: Any, key: MasterKey, obj: str, data: bytes) -> None:
        """A child process writes ``data`` to ``obj`` (small segments where it can), syncs, and is killed."""
        pid = os.fork()
        if pid == 0:  # the child: never returns
            try:
                s = make_store(KeyRing.of(key))
                s.open()
                opts = {"segment_size": SMALL_SEGMENT} if isinstance(s, STORE_CAPABILITIES["segment_size"]) else {}
                w = s.writer(obj, {"kind": "segment"}, **opts)
                w.write(data)
                w.flush()
                if callable(getattr(w, "sync", None)):
                    w.sync()
                os.kill(os.getpid(), signal.SIGKILL)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"writer child ended with {status}"

    def test_crashed_write_is_listed_then_recovered_as_a_prefix(self, store: Any, make_store: Any,
                                                                key: MasterKey) -> None:
        self.need(store, "recovery")
        data = payload(200_000, 7)
        self._crash_writer(make_store, key, "crash/rec.mp4", data)
        assert "crash/rec.mp4" not in list(store.keys())
        assert "crash/rec.mp4" in {p["key"] for p in store.partials()}
        (res,) = [r for r in store.recover() if r.key == "crash/rec.mp4"]
        assert res.action == "recovered" and not res.complete
        got = _get(store, "crash/rec.mp4")
        assert got == data[: len(got)] and len(got) == res.plaintext_size
        if isinstance(store, STORE_CAPABILITIES["segment_size"]):
            assert len(got) >= len(data) - 4 * SMALL_SEGMENT  # synced segments are not lost
        assert store.partials() == [] and store.recover() == []

    def test_recover_keeps_a_crashed_write_whose_key_was_taken(self, store: Any, make_store: Any,
                                                              key: MasterKey) -> None:
        self.need(store, "recovery")
        crashed = payload(100_000, 8)
        self._crash_writer(make_store, key, "ev/segment-0001.mp4", crashed)
        _put(store, "ev/segment-0001.mp4", b"a later recording that took the same name")
        results = store.recover()
        assert _get(store, "ev/segment-0001.mp4") == b"a later recording that took the same name"
        kept = [r for r in results if r.action == "recovered" and r.key != "ev/segment-0001.mp4"]
        listed = [p for p in store.partials() if p["key"] == "ev/segment-0001.mp4"]
        assert kept or listed, f"the crashed write was dropped: {results}"
        if kept:
            got = _get(store, kept[0].key)
            assert got and got == crashed[: len(got)]

    def test_partials_list_live_writes_on_request(self, store: Any) -> None:
        self.need(store, "recovery")
        w = store.writer("live/rec.mp4")
        w.write(payload(30_000))
        if callable(getattr(w, "sync", None)):
            w.sync()
        assert [p for p in store.partials() if p["key"] == "live/rec.mp4"] == []
        assert [p["key"] for p in store.partials(live=True)].count("live/rec.mp4") >= 1
        assert [r for r in store.recover() if r.key == "live/rec.mp4"] == []  # never touches a live write
        w.close()
        assert _get(store, "live/rec.mp4") == payload(30_000)
