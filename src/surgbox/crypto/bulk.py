"""Whole-file encryption and decryption: :func:`encrypt_file` (parallel on regular files) and
:func:`decrypt_file`. Same format as :class:`~surgbox.crypto.writer.EncryptingWriter`."""

from __future__ import annotations

import errno
import fcntl
import io
import os
import stat
import threading
from typing import IO, Any

from ..errors import SurgboxError
from .format import DEFAULT_SEGMENT_SIZE, HEADER_SIZE, MAX_SEGMENTS, TAG_SIZE, SegmentCipher, StreamFormat
from .reader import DecryptingReader
from .sources import fill_from
from .writer import EncryptingWriter

__all__ = ["decrypt_file", "encrypt_file"]


def encrypt_file(src: IO[bytes], dst: IO[bytes], key: bytes, associated_data: bytes = b"", *,
                 segment_size: int = DEFAULT_SEGMENT_SIZE, background: bool = True, workers: int | None = None) -> int:
    """Encrypt the rest of ``src`` (from its position) into ``dst`` (at its position); returns the
    plaintext size in bytes.

    When both are regular files (with ``fileno()``; ``dst`` not in append mode), ``workers`` threads
    (default: the usable CPUs, at most 4) each read, encrypt and write whole segments at their own
    offsets (``pread``/``pwrite``; the AES-GCM and I/O calls release the GIL), so encryption runs on
    every core; memory is 2 segments per worker; ``src`` must not change size meanwhile (an error
    otherwise). Other streams go through :class:`EncryptingWriter` (``background``: write from a
    helper thread), 4 segments of memory. Either way ``dst`` holds the same format; on an error it may
    hold part of the output (write through :class:`surgbox._fs.AtomicFile`, as the CLI does). An
    exception in the calling thread (a signal handler's, Ctrl-C) stops the workers before it
    propagates: nothing writes to ``dst`` after this function returns or raises.
    """
    fmt = StreamFormat(segment_size)
    fds = _regular_fds(src, dst)
    if fds is not None:
        return _encrypt_parallel(src, dst, *fds, key, associated_data, fmt, workers)
    w = EncryptingWriter.open(dst, key, associated_data, segment_size=segment_size, background=background)
    # Read each segment's plaintext straight into one of two buffers and encrypt it from there (no copy,
    # cache-sized); the next segment is read first, to know whether this one is the last.
    bufs = (memoryview(bytearray(fmt.plain)), memoryview(bytearray(fmt.plain)))
    try:
        cap, k = fmt.first_plain, 0
        cur = bufs[0][: fill_from(src, bufs[0][:cap])]
        while True:
            if len(cur) < cap:
                w.write_segment(cur, last=True)
                break
            nxt = bufs[1 - k]
            n = fill_from(src, nxt[: fmt.plain])
            if n == 0:
                w.write_segment(cur, last=True)
                break
            w.write_segment(cur, last=False)
            cur, cap, k = nxt[:n], fmt.plain, 1 - k
    except BaseException:
        w.abort()
        raise
    w.close()
    return w.plaintext_size


def _regular_fds(src: Any, dst: Any) -> tuple[int, int] | None:
    """``(src_fd, dst_fd)`` when both are regular files usable with pread/pwrite, else ``None``."""
    try:
        sfd, dfd = src.fileno(), dst.fileno()
        if not (stat.S_ISREG(os.fstat(sfd).st_mode) and stat.S_ISREG(os.fstat(dfd).st_mode)):
            return None
        if fcntl.fcntl(dfd, fcntl.F_GETFL) & os.O_APPEND:  # pwrite ignores the offset in append mode
            return None
        return sfd, dfd
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _encrypt_parallel(src: Any, dst: Any, sfd: int, dfd: int, key: bytes, associated_data: bytes,
                      fmt: StreamFormat, workers: int | None) -> int:
    """:func:`encrypt_file` for two regular files: segment ``i`` is read at plaintext offset
    ``plain_offset(i)`` and written at ``segment_offset(i)``, by worker ``i mod workers``."""
    start = src.tell()  # accounts for a buffered reader's read-ahead
    size = os.fstat(sfd).st_size - start
    if size < 0:
        raise SurgboxError(f"{getattr(src, 'name', 'input')}: position {start} is past the end of the file")
    dst.flush()
    base = dst.tell()
    cipher = SegmentCipher.new(key, associated_data)
    n_seg = fmt.segment_count(size)
    if n_seg > MAX_SEGMENTS:
        raise SurgboxError(f"stream exceeds {MAX_SEGMENTS} segments; use a larger segment_size")
    total = fmt.ciphertext_size(size)
    if hasattr(os, "posix_fallocate") and os.fstat(dfd).st_size < base + total:
        # Allocate the output's blocks at once: cheaper than block by block as writes arrive, and a
        # full disk fails here, before any work. Not all file systems support it.
        try:
            os.posix_fallocate(dfd, base, total)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
    if os.pwrite(dfd, cipher.header, base) != HEADER_SIZE:
        raise OSError(f"short write of the header to {getattr(dst, 'name', 'output')}")
    n_workers = max(1, min(workers or _default_workers(), n_seg))
    errors: list[BaseException] = []
    stop = threading.Event()

    def work(first: int) -> None:
        plain, out = bytearray(fmt.plain), bytearray(fmt.segment_size)
        try:
            for i in range(first, n_seg, n_workers):
                if errors or stop.is_set():
                    return
                last = i == n_seg - 1
                off = fmt.plain_offset(i)
                n = size - off if last else (fmt.first_plain if i == 0 else fmt.plain)
                view = memoryview(plain)[:n]
                got = 0
                while got < n:
                    k = os.preadv(sfd, [view[got:]], start + off + got)
                    if k == 0:
                        raise SurgboxError(f"{getattr(src, 'name', 'input')} shrank while being encrypted "
                                           f"(segment {i}); encrypt a file that is not being written")
                    got += k
                ct = memoryview(out)[: n + TAG_SIZE]
                cipher.encrypt_into(i, last, view, ct)
                pos = base + fmt.segment_offset(i)
                while ct:
                    k = os.pwrite(dfd, ct, pos)
                    ct, pos = ct[k:], pos + k
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,), name=f"surgbox-encrypt-{k}", daemon=True)
               for k in range(1, n_workers)]
    try:
        for t in threads:
            t.start()
        work(0)
    except BaseException:
        stop.set()
        raise
    finally:
        _join_all(threads, stop)
    if errors:
        raise errors[0]
    src.seek(start + size)
    dst.seek(base + total)
    return size


def _join_all(threads: list[threading.Thread], stop: threading.Event) -> None:
    """Join ``threads`` even when an exception (a signal's) interrupts a join: the workers are told
    to stop and joined again before that exception propagates, so none writes to a closed fd."""
    pending: BaseException | None = None
    for t in threads:
        while t.ident is not None and t.is_alive():  # (a thread never started has no ident)
            try:
                t.join()
            except BaseException as exc:
                stop.set()
                pending = pending or exc
    if pending is not None:
        raise pending


def decrypt_file(src: Any, dst: IO[bytes], key: bytes, associated_data: bytes = b"", *,
                 segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Decrypt all of ``src`` into ``dst``; returns the plaintext size. Raises :class:`DecryptionError`
    (possibly after writing part of the plaintext: write through :class:`surgbox._fs.AtomicFile`)."""
    with DecryptingReader.open(src, key, associated_data, segment_size=segment_size, cache_segments=2) as r:
        for plain in r.iter_segments():
            dst.write(plain)
        return r.size
