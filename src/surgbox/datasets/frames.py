"""Frame extraction: decode the frames a video annotation names into a dataset folder.

Frames are numbered as CVAT numbers them: the n-th decoded picture of the first video stream is
frame ``n`` (from 0). The video may be a path or any seekable binary file object (a decrypting
reader of the encrypted store or of a catalog event: nothing is decrypted to disk). Frames go to
``DATASET/images/<video>/<frame:06d>.png`` (or ``.jpg``), or encrypted with a key as
``.png.enc`` (Tink streaming AES-256-GCM, associated data = the relative path); the manifest is
updated (samples of the same video replaced) when the extraction ends, also when the video turns
out shorter than the annotation (then :class:`~surgbox.errors.DatasetError` says how many frames
were missing). Memory: one decoded frame at a time.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from .._fs import atomic_write
from ..crypto import encrypt_file
from ..errors import DatasetError
from .annotations import Annotations
from .folder import Dataset, Sample
from .formats import load_annotations


def _safe_name(name: str) -> str:
    stem = Path(name).stem if "." in Path(name).name else Path(name).name
    out = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._")
    return out or "video"


def extract_frames(
    annotations: str | Path | Annotations,
    video: Any,
    out: str | Path,
    *,
    labels: Sequence[str] | None = None,
    fmt: str = "auto",
    name: str | None = None,
    every: int = 1,
    image_format: str = "png",
    key: bytes | None = None,
    source: str = "",
    encrypted_source: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Decode the annotated frames of ``video`` into the dataset folder ``out`` and return the
    updated dataset. ``annotations``: a CVAT-for-video file (or items with ``frame`` numbers);
    ``every``: keep every n-th annotated frame; ``key``: encrypt the frame files with it;
    ``source``/``encrypted_source``: recorded in the manifest's sources."""
    import av
    from PIL import Image

    ann = annotations if isinstance(annotations, Annotations) else load_annotations(annotations, labels=labels, format=fmt)
    items = [it for it in ann if it.frame is not None][::every]
    if not items:
        raise DatasetError(f"{ann.path or 'annotations'}: no annotated frames (is this a CVAT for video export?)")
    vname = _safe_name(name or ann.source or Path(ann.path).stem or "video")
    out = Path(out)
    folder = out / "images" / vname
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {it.frame: it for it in items}
    last = max(wanted)
    samples: list[Sample] = []
    ext = "jpg" if image_format == "jpg" else "png"
    decoded = 0
    try:
        container = av.open(video)
    except (av.FFmpegError, OSError) as exc:
        raise DatasetError(f"cannot open video {source or video!r}: {exc}; give the recording the annotation was made on") from None
    try:
        if not container.streams.video:
            raise DatasetError(f"{source or video!r} has no video stream")
        for index, frame in enumerate(container.decode(video=0)):
            if index > last:
                break
            decoded = index + 1
            it = wanted.get(index)
            if it is None:
                continue
            if it.width and it.height and (frame.width, frame.height) != (it.width, it.height):
                raise DatasetError(f"{source or video!r} is {frame.width}x{frame.height} but the annotation was made on "
                                   f"{it.width}x{it.height} frames; give the original recording")
            rgb = frame.to_ndarray(format="rgb24")
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="PNG" if ext == "png" else "JPEG", **({"quality": 95} if ext == "jpg" else {}))
            rel = f"images/{vname}/{index:06d}.{ext}" + (".enc" if key else "")
            data = buf.getvalue()
            if key:
                enc = io.BytesIO()
                encrypt_file(io.BytesIO(data), enc, key, rel.encode())
                data = enc.getvalue()
            atomic_write(out / rel, data, mode=0o600)
            samples.append(Sample(attrs.evolve(it, video=vname, width=frame.width, height=frame.height), rel, bool(key)))
            if progress:
                progress(len(samples), len(items))
    except av.FFmpegError as exc:
        raise DatasetError(f"decoding {source or video!r} failed after {len(samples)} frames: {exc}") from None
    finally:
        container.close()
    old = Dataset.load(out) if (out / "dataset.json").is_file() else Dataset(out, [])
    kept = [s for s in old.samples if s.item.video != vname]
    srcs = [s for s in old.sources if s.get("video_name") != vname]
    srcs.append({"annotations": str(Path(ann.path).resolve()) if ann.path else "", "format": ann.format,
                 "video": source or str(video), "video_name": vname, "encrypted_source": encrypted_source,
                 "encrypted_frames": bool(key), "frames": len(samples), "every": every, "labels": list(labels or [])})
    ds = Dataset(out, kept + samples, srcs)
    ds.save()
    missing = len(items) - len(samples)
    if missing:
        raise DatasetError(f"{source or video!r} has {decoded} frames: {missing} of {len(items)} annotated "
                           f"frames are missing (the {len(samples)} found are in {out}); is it the right recording?")
    return ds
