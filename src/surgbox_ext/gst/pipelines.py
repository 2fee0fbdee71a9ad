"""The GStreamer pipeline descriptions (``gst-launch-1.0`` syntax) each plugin builds, per profile.

Pure functions of the options -- no ``gi`` needed -- so the exact strings of every profile are
tested as strings, including the ``jetson`` and ``nvidia`` ones that cannot run here
(docs/backends.md lists them). Elements the code talks to are named: ``src`` (an ``appsrc``),
``enc`` (the H.264 encoder) and ``sink`` (an ``appsink``).

Encoder: ``appsrc (I420) -> [upload] -> H.264 encoder -> h264parse -> byte-stream/AU -> appsink``,
a keyframe (IDR) every ``gop`` frames and never elsewhere, no B-frames, SPS/PPS before every
IDR (``config-interval=-1``) so each crash-safe fragment decodes on its own.

Source: ``<capture> -> <convert to I420> -> appsink``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from .profiles import get_profile

H264_PROFILES = {"baseline": 0, "main": 2, "high": 4}  # nvv4l2h264enc's enum values
X264_TUNE_FLAGS = ("stillimage", "fastdecode", "zerolatency")  # x264enc 'tune'; other tunes are 'psy-tune'


_PLAIN = re.compile(r"[A-Za-z0-9_.:/+-]+")


def quote(value: Any) -> str:
    """A property value for a launch description: numbers, booleans and plain words as they are,
    anything else (spaces, caps, ``!``) in double quotes with backslash and quote escaped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Fraction)):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def element(name: str, props: Mapping[str, Any] | None = None) -> str:
    """``name key=value ...`` (``None`` values left out)."""
    parts = [name] + [f"{k}={quote(v)}" for k, v in (props or {}).items() if v is not None]
    return " ".join(parts)


def rate_text(fps: Fraction) -> str:
    return f"{fps.numerator}/{fps.denominator}"


def raw_caps(width: int | None = None, height: int | None = None, fps: Fraction | None = None, *,
             fmt: str | None = "I420", memory: str | None = None) -> str:
    """``video/x-raw[(memory:NVMM)],format=I420,width=W,height=H,framerate=N/D`` (unset fields left out)."""
    head = "video/x-raw" + (f"(memory:{memory})" if memory else "")
    fields = [f"format={fmt}" if fmt else None, f"width={width}" if width else None,
              f"height={height}" if height else None, f"framerate={rate_text(fps)}" if fps else None]
    return ",".join([head, *(f for f in fields if f)])


# ---- encoder -------------------------------------------------------------------------------------

H264_TAIL = "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"


def _x264(gop: int, bitrate: int | None, quality: float, preset: str | None, h264_profile: str, threads: int,
          tune: str | None, options: str | None, extra: Mapping[str, Any]) -> str:
    props: dict[str, Any] = {"name": "enc", "speed-preset": preset or "veryfast", "key-int-max": gop, "bframes": 0,
                             "b-adapt": False, "threads": threads}
    if bitrate:  # ABR capped at the bitrate with a 2 s buffer, as the libx264 plugin does
        props.update({"pass": "cbr", "bitrate": max(1, round(bitrate / 1000)), "vbv-buf-capacity": 2000})
    else:  # constant quality (x264's CRF)
        props.update({"pass": "qual", "quantizer": round(quality)})
    if tune:
        props["tune" if tune in X264_TUNE_FLAGS else "psy-tune"] = tune
    props["option-string"] = ":".join(["scenecut=0", *([options] if options else [])])  # keyframes only every GOP
    return element("x264enc", {**props, **extra}) + f" ! video/x-h264,profile={h264_profile}"


def _nvv4l2(gop: int, bitrate: int | None, preset: str | None, h264_profile: str, extra: Mapping[str, Any]) -> str:
    props: dict[str, Any] = {"name": "enc", "bitrate": int(bitrate or 8_000_000), "control-rate": 1 if bitrate else 0,
                             "iframeinterval": gop, "idrinterval": gop, "insert-sps-pps": True, "insert-vui": True,
                             "num-B-Frames": 0, "profile": H264_PROFILES[h264_profile],
                             "preset-level": int(preset) if preset else 1, "maxperf-enable": True}
    return f"nvvidconv ! {raw_caps(fmt='NV12', memory='NVMM')} ! " + element("nvv4l2h264enc", {**props, **extra})


def _nvh264(gop: int, bitrate: int | None, quality: float, preset: str | None, h264_profile: str,
            extra: Mapping[str, Any]) -> str:
    props: dict[str, Any] = {"name": "enc", "preset": preset or "hq", "gop-size": gop}
    if bitrate:
        props.update({"rc-mode": "cbr", "bitrate": max(1, round(bitrate / 1000))})
    else:
        props.update({"rc-mode": "vbr", "const-quality": float(quality)})
    return element("nvh264enc", {**props, **extra}) + f" ! video/x-h264,profile={h264_profile}"


def encoder_pipeline(profile: str, *, width: int, height: int, fps: Fraction, gop: int, bitrate: int | None = None,
                     quality: float = 23, preset: str | None = None, h264_profile: str = "high", threads: int = 0,
                     tune: str | None = None, options: str | None = None, extra: Mapping[str, Any] | None = None) -> str:
    """The encoder pipeline of ``profile`` for ``width``x``height`` I420 at ``fps``.

    ``gop`` frames between keyframes; ``bitrate`` bits/s (``None``: constant quality ``quality``,
    x264's CRF / NVENC's const-quality; the Jetson encoder has no quality mode and uses 8 Mbit/s
    VBR); ``preset`` (x264 speed preset, Jetson ``preset-level`` 0-4, NVENC preset);
    ``h264_profile`` ``baseline``/``main``/``high``; ``threads``, ``tune`` and ``options`` (raw
    ``key=value:...`` x264 options) for ``cpu`` only; ``extra``: more properties of the encoder
    element (they override the ones above).

    >>> encoder_pipeline("cpu", width=1920, height=1080, fps=Fraction(30), gop=30).split(" ! ")[1]
    'x264enc name=enc speed-preset=veryfast key-int-max=30 bframes=0 b-adapt=false threads=0 pass=qual quantizer=23 option-string="scenecut=0"'
    """
    get_profile(profile)
    if h264_profile not in H264_PROFILES:
        raise ValueError(f"H.264 profile {h264_profile!r} is not one of {', '.join(H264_PROFILES)}")
    if gop < 1:
        raise ValueError(f"gop must be >= 1 frame, got {gop}")
    head = element("appsrc", {"name": "src", "format": "time", "is-live": False, "do-timestamp": False,
                              "caps": raw_caps(width, height, fps)})
    extra = dict(extra or {})
    if profile == "cpu":
        body = _x264(gop, bitrate, quality, preset, h264_profile, threads, tune, options, extra)
    elif profile == "jetson":
        body = _nvv4l2(gop, bitrate, preset, h264_profile, extra)
    else:
        body = _nvh264(gop, bitrate, quality, preset, h264_profile, extra)
    return f"{head} ! {body} ! {H264_TAIL}"


# ---- sources -------------------------------------------------------------------------------------

def source_tail(profile: str, *, width: int | None = None, height: int | None = None, sync: bool = False,
                max_buffers: int = 2) -> str:
    """Conversion to I420 (optionally scaled to ``width``x``height``) and the ``appsink``: it keeps
    at most ``max_buffers`` and drops the oldest (the source's own queue does the rest);
    ``sync=True`` releases frames at their presentation time (files played as live)."""
    get_profile(profile)
    convert = "nvvidconv" if profile == "jetson" else "videoconvert ! videoscale"
    sink = element("appsink", {"name": "sink", "max-buffers": max_buffers, "drop": True, "sync": sync, "emit-signals": False})
    return f"{convert} ! {raw_caps(width, height)} ! {sink}"


def testsrc_head(*, width: int, height: int, fps: Fraction, pattern: str = "smpte") -> str:
    """``videotestsrc`` as a live camera (frames produced on the pipeline clock), drawn in I420
    (so the conversion after it passes the buffers through)."""
    return element("videotestsrc", {"is-live": True, "pattern": pattern}) + f" ! {raw_caps(width, height, fps)}"


def v4l2_head(*, device: str, width: int | None = None, height: int | None = None, fps: Fraction | None = None,
              mjpeg: bool = False, profile: str = "cpu") -> str:
    """``v4l2src`` (raw, or MJPEG decoded by ``jpegdec``; ``nvv4l2decoder mjpeg=1`` on Jetson)."""
    src = element("v4l2src", {"device": device})
    if not mjpeg:
        caps = raw_caps(width, height, fps, fmt=None)
        return src if caps == "video/x-raw" else f"{src} ! {caps}"
    jpeg = ",".join(["image/jpeg", *([f"width={width}"] if width else []), *([f"height={height}"] if height else []),
                     *([f"framerate={rate_text(fps)}"] if fps else [])])
    return f"{src} ! {jpeg} ! " + ("nvv4l2decoder mjpeg=1" if profile == "jetson" else "jpegdec")


def argus_head(*, sensor_id: int = 0, width: int = 1920, height: int = 1080, fps: Fraction = Fraction(30)) -> str:
    """``nvarguscamerasrc`` (Jetson CSI camera) in NVMM memory."""
    return (element("nvarguscamerasrc", {"sensor-id": sensor_id}) + " ! "
            + raw_caps(width, height, fps, fmt="NV12", memory="NVMM"))


def uri_head(*, uri: str) -> str:
    """``uridecodebin`` exposing only the video stream (decoders chosen by rank: the hardware
    decoder of the profile wins where it is installed)."""
    return element("uridecodebin", {"uri": uri, "expose-all-streams": False, "caps": "video/x-raw(ANY)"})


# ---- de-identification decoder -------------------------------------------------------------------

_DECODE = {"cpu": "avdec_h264 ! videoconvert", "jetson": "nvv4l2decoder ! nvvidconv", "nvidia": "nvh264dec ! videoconvert"}


def decoder_pipeline(profile: str, *, location: str | None = None, max_buffers: int = 4) -> str:
    """``filesrc -> qtdemux -> h264parse -> <decoder> -> I420 -> appsink`` for an MP4/MOV file:
    the first video track only (audio is copied by PyAV, never decoded here), pictures in
    presentation order. The ``appsink`` holds at most ``max_buffers`` and never drops (the
    caller's bounded queue applies back-pressure). ``location`` (``None``: set later as the
    ``file`` element's property, so any path works unquoted).

    >>> decoder_pipeline("cpu").split(" ! ")[3]
    'avdec_h264'
    """
    get_profile(profile)
    src = element("filesrc", {"name": "file", "location": location})
    sink = element("appsink", {"name": "sink", "sync": False, "max-buffers": max_buffers, "drop": False,
                               "emit-signals": False})
    return f"{src} ! qtdemux name=demux demux.video_0 ! h264parse ! {_DECODE[profile]} ! {raw_caps()} ! {sink}"


# ---- live display --------------------------------------------------------------------------------

DISPLAY_SINKS = {"cpu": "autovideosink", "jetson": "nveglglessink", "nvidia": "autovideosink"}
NVMM_SINKS = ("nveglglessink", "nv3dsink", "nvdrmvideosink")  # Jetson sinks fed from NVMM memory by nvvidconv


def display_pipeline(profile: str, *, width: int, height: int, fps: Fraction, sink: str | None = None) -> str:
    """``appsrc (I420) -> convert -> <video sink>`` for the live monitor: the profile's sink
    (:data:`DISPLAY_SINKS`: ``autovideosink``; ``nveglglessink`` on a Jetson, fed from NVMM memory
    by ``nvvidconv``) or ``sink``, a launch fragment (``kmssink``, ``fakesink``, ``appsink
    name=shown``...). The sink shows a picture when it arrives (``sync=false`` unless the fragment
    sets ``sync``); the ``appsrc`` is live and never blocks (the display's own queue drops).

    >>> display_pipeline("cpu", width=1920, height=1080, fps=Fraction(30), sink="fakesink").split(" ! ")[-1]
    'fakesink sync=false'
    """
    get_profile(profile)
    head = element("appsrc", {"name": "src", "format": "time", "is-live": True, "do-timestamp": False, "block": False,
                              "caps": raw_caps(width, height, fps)})
    sink = sink or DISPLAY_SINKS[profile]
    convert = f"nvvidconv ! {raw_caps(fmt=None, memory='NVMM')}" if sink.split()[0] in NVMM_SINKS else "videoconvert"
    tail = sink if "sync=" in sink else f"{sink} sync=false"
    return f"{head} ! {convert} ! {tail}"
