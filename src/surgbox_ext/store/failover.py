"""Mirror fail-over: read one object from several copies (one per disk) and take each segment from
whichever copy holds it intact.

:class:`MirrorCopies` is a :class:`~surgbox.crypto.reader.SegmentSource`: for every segment it
tries the copies in order and reports each copy that fails (``on_bad_copy(copy, segment, error)``).
Each copy's header is parsed and one key is derived per distinct header; a segment is decrypted
with its own copy's header first, then with the other copies' headers, so one damaged header or
segment per copy never makes the object unreadable while another copy holds it intact.
:func:`open_copies` also copes with copies of different sizes (one truncated or extended).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from surgbox.crypto.format import DEFAULT_SEGMENT_SIZE, HEADER_SIZE, DecryptionError, SegmentCipher, StreamFormat
from surgbox.crypto.reader import DecryptingReader, failure
from surgbox.crypto.sources import read_exact, read_into, source_size

__all__ = ["MirrorCopies", "open_copies"]

BadCopy = Callable[[int, int, BaseException], None]


@attrs.define(eq=False)
class MirrorCopies:
    """The segments of one stream read from identical ``sources`` (see the module doc).
    ``ciphers``: one per distinct header; ``own[i]``: index of source ``i``'s cipher, or why its
    header is unusable. ``owned`` sources are closed by :meth:`close`."""

    sources: list[Any]
    ciphers: list[SegmentCipher] = attrs.field(repr=False)
    own: list[int | BaseException] = attrs.field(repr=False)
    format: StreamFormat
    ciphertext_size: int
    name: str = "<stream>"
    on_bad_copy: BadCopy | None = None
    owned: list[Any] = attrs.field(factory=list, repr=False)
    _header_reported: set[int] = attrs.field(init=False, factory=set, repr=False)
    _ct: bytearray = attrs.field(init=False, factory=bytearray, repr=False)

    def decrypt_segment(self, index: int, last: bool, out: memoryview | None) -> bytes:
        fmt = self.format
        start = fmt.segment_offset(index)
        length = (self.ciphertext_size - start) if last else fmt.segment_length(index)
        if len(self._ct) < length:
            self._ct = bytearray(fmt.segment_size)
        ct = memoryview(self._ct)[:length]
        errors: list[BaseException] = []
        for i, src in enumerate(self.sources):
            try:
                if read_into(src, start, ct) != length:
                    raise DecryptionError(f"segment {index}: copy {i} is shorter than expected (truncated)")
                mine = self.own[i]
                order = list(range(len(self.ciphers)))
                if isinstance(mine, int):  # this copy's own header first, then the other copies' headers
                    order.remove(mine)
                    order.insert(0, mine)
                for k in order:
                    try:
                        plain = self.ciphers[k].decrypt(index, last, ct, out)
                    except DecryptionError:
                        if k == order[-1]:
                            raise DecryptionError(f"copy {i}: authentication failed") from None
                        continue
                    if k != mine and i not in self._header_reported and self.on_bad_copy is not None:
                        self._header_reported.add(i)  # the copy's data is fine, its header is not
                        why = mine if isinstance(mine, BaseException) else DecryptionError("its header differs")
                        self.on_bad_copy(i, 0, DecryptionError(
                            f"copy {i}: damaged header ({why}); decrypted with another copy's header"))
                    return plain
            except (OSError, DecryptionError) as exc:
                if out is not None:
                    out[:] = bytes(len(out))  # never leave unauthenticated plaintext in the caller's buffer
                errors.append(exc)
                if self.on_bad_copy is not None:
                    self.on_bad_copy(i, index, exc)
        detail = "; ".join(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__ for e in errors)
        raise failure(self.name, index, fmt.layout(self.ciphertext_size)[0], detail)

    def close(self) -> None:
        for s in self.owned:
            s.close()
        self.owned = []


def open_copies(sources: Sequence[Any], key: bytes, associated_data: bytes = b"", *,
                segment_size: int = DEFAULT_SEGMENT_SIZE, cache_segments: int = 4,
                on_bad_copy: BadCopy | None = None, name: str | None = None,
                owned: Sequence[Any] = ()) -> DecryptingReader:
    """A :class:`~surgbox.crypto.reader.DecryptingReader` over identical copies of one stream.

    ``sources`` are :class:`~surgbox.crypto.sources.FdSource` or seekable binary file objects;
    ``owned`` ones are closed with the reader (also when this fails). Copies may differ in size:
    the size shared by most copies is tried first, then the others, until the first and last
    segments authenticate; failures seen while trying a wrong size are not reported, so a good copy
    is never blamed. Raises :class:`DecryptionError` when no size authenticates.
    """
    srcs = list(sources)
    try:
        if not srcs:
            raise ValueError("open_copies needs at least one copy")
        label = str(name or getattr(srcs[0], "name", None) or "<stream>")
        fmt = StreamFormat(segment_size)
        ciphers: list[SegmentCipher] = []
        by_header: dict[bytes, int] = {}
        own: list[int | BaseException] = []
        sizes: list[int | None] = []
        for i, s in enumerate(srcs):  # one derived key per distinct header
            try:
                sizes.append(source_size(s))
            except OSError as exc:
                sizes.append(None)
                own.append(exc)
                continue
            try:
                header = read_exact(s, 0, HEADER_SIZE)
                cipher = by_header.get(header)
                if cipher is None:
                    ciphers.append(SegmentCipher.from_header(key, associated_data, header, f"{label} (copy {i})"))
                    by_header[header] = len(ciphers) - 1
                own.append(by_header[header])
            except (OSError, DecryptionError) as exc:
                own.append(exc)
        if not ciphers:
            err = next(e for e in own if isinstance(e, BaseException))
            raise err if isinstance(err, DecryptionError) else DecryptionError(f"{label}: cannot read the header: {err}")
        counts: dict[int, int] = {}
        for z in sizes:
            if z is not None:
                counts[z] = counts.get(z, 0) + 1
        first_error: BaseException | None = None
        for size in sorted(counts, key=lambda z: (-counts[z], sizes.index(z))):
            reports: list[tuple[int, int, BaseException]] = []
            try:
                copies = MirrorCopies(srcs, ciphers, own, fmt, size, label, lambda i, seg, exc: reports.append((i, seg, exc)))
                reader = DecryptingReader.over(copies, fmt, name=label, cache_segments=cache_segments)
            except DecryptionError as exc:
                first_error = first_error or exc
                continue
            copies.on_bad_copy = on_bad_copy
            copies.owned = list(owned)
            copies._header_reported.clear()
            if on_bad_copy is not None:
                for i, z in enumerate(sizes):
                    if z != size and not any(r[0] == i for r in reports):
                        reports.append((i, reader.segments - 1, DecryptionError(
                            f"{label}: copy {i} is {z} bytes, the stream is {size} bytes")))
                for i, seg, exc in reports:
                    on_bad_copy(i, seg, exc)
            return reader
        assert first_error is not None
        raise first_error
    except BaseException:
        for s in owned:
            s.close()
        raise

