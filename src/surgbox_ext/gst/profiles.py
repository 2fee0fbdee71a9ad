"""GStreamer element profiles: which elements each backend needs, and whether this machine has them.

A **profile** names the elements one hardware family uses for each **role**:

* ``cpu`` -- any Linux with Debian's GStreamer packages: ``x264enc`` encodes, ``avdec_h264``
  decodes, ``videoconvert``/``videoscale`` convert.
* ``jetson`` -- NVIDIA Jetson (JetPack's ``nvidia-l4t-gstreamer``): ``nvv4l2h264enc`` /
  ``nvv4l2decoder`` on the hardware codecs, ``nvvidconv`` between NVMM and system memory,
  ``nvarguscamerasrc`` for CSI cameras, ``nveglglessink`` for the HDMI monitor.
* ``nvidia`` -- a desktop/server NVIDIA GPU (the ``nvcodec`` plugin of
  ``gstreamer1.0-plugins-bad``, which registers ``nvh264enc``/``nvh264dec`` only where the
  driver's NVENC/NVDEC libraries load).

Roles: ``encoder`` (``appsrc -> ... -> appsink``), ``source`` (the conversion after a capture
element), ``decoder`` (``filesrc -> qtdemux -> ... -> appsink``, de-identification) and
``display`` (the live monitor). :func:`missing` probes with ``Gst.ElementFactory.find`` (results
cached per process) and :func:`check` turns what is missing into one line naming each element
and the package that provides it -- what ``surgbox plugins`` prints.

Importing this module does not import ``gi``: probing happens when a check is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from . import runtime

ROLES = ("encoder", "source", "decoder", "display")

DEBIAN = "debian"
JETPACK = "jetpack"


@attrs.frozen
class Provider:
    """Where an element comes from: ``package`` (``system`` ``debian`` or ``jetpack``), the
    GStreamer ``plugin`` that holds it, and ``needs`` (hardware/driver it registers only with)."""

    package: str
    system: str = DEBIAN
    plugin: str | None = None
    needs: str | None = None

    def describe(self) -> str:
        where = f"JetPack package {self.package}" if self.system == JETPACK else f"Debian package {self.package}"
        return where + (f"; {self.needs}" if self.needs else "")


_NVCODEC_NEEDS = "registered only where an NVIDIA GPU and its driver ({lib}) are present"
_JETSON_NEEDS = "runs only on an NVIDIA Jetson"

PROVIDERS: Mapping[str, Provider] = {
    **{e: Provider("gstreamer1.0-plugins-base") for e in (
        "appsrc", "appsink", "videoconvert", "videoscale", "videorate", "videotestsrc", "uridecodebin", "audioconvert")},
    **{e: Provider("libgstreamer1.0-0") for e in ("filesrc", "fakesink", "queue", "capsfilter")},
    **{e: Provider("gstreamer1.0-plugins-good") for e in ("v4l2src", "qtdemux", "jpegdec", "autovideosink")},
    **{e: Provider("gstreamer1.0-plugins-bad") for e in ("h264parse", "kmssink")},
    "x264enc": Provider("gstreamer1.0-plugins-ugly"),
    "avdec_h264": Provider("gstreamer1.0-libav"),
    "nvh264enc": Provider("gstreamer1.0-plugins-bad", plugin="nvcodec", needs=_NVCODEC_NEEDS.format(lib="libnvidia-encode, libcuda")),
    "nvh264dec": Provider("gstreamer1.0-plugins-bad", plugin="nvcodec", needs=_NVCODEC_NEEDS.format(lib="libnvcuvid, libcuda")),
    **{e: Provider("nvidia-l4t-gstreamer", JETPACK, needs=_JETSON_NEEDS) for e in (
        "nvv4l2h264enc", "nvv4l2decoder", "nvvidconv", "nvarguscamerasrc", "nveglglessink")},
}
"""Element -> the package that provides it (and what it needs to register)."""


@attrs.frozen
class Profile:
    """One backend's elements per role (:data:`ROLES`); ``description`` says what it runs on."""

    name: str
    description: str
    elements: Mapping[str, tuple[str, ...]]

    def needed(self, role: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
        """The elements of ``role`` plus ``extra`` (a source's capture element), in order, once each."""
        if role not in ROLES:
            raise ValueError(f"unknown GStreamer role {role!r}; roles: {', '.join(ROLES)}")
        return tuple(dict.fromkeys((*extra, *self.elements[role])))


PROFILES: Mapping[str, Profile] = {
    "cpu": Profile("cpu", "software codecs on any CPU (x264, FFmpeg's H.264 decoder)", {
        "encoder": ("appsrc", "x264enc", "h264parse", "appsink"),
        "source": ("videoconvert", "videoscale", "appsink"),
        "decoder": ("filesrc", "qtdemux", "h264parse", "avdec_h264", "videoconvert", "appsink"),
        "display": ("videoconvert", "autovideosink"),
    }),
    "jetson": Profile("jetson", "NVIDIA Jetson hardware codecs (JetPack)", {
        "encoder": ("appsrc", "nvvidconv", "nvv4l2h264enc", "h264parse", "appsink"),
        "source": ("nvvidconv", "appsink"),
        "decoder": ("filesrc", "qtdemux", "h264parse", "nvv4l2decoder", "nvvidconv", "appsink"),
        "display": ("nvvidconv", "nveglglessink"),
    }),
    "nvidia": Profile("nvidia", "NVIDIA desktop/server GPU: NVENC/NVDEC through the nvcodec plugin", {
        "encoder": ("appsrc", "nvh264enc", "h264parse", "appsink"),
        "source": ("videoconvert", "videoscale", "appsink"),
        "decoder": ("filesrc", "qtdemux", "h264parse", "nvh264dec", "videoconvert", "appsink"),
        "display": ("videoconvert", "autovideosink"),
    }),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; :class:`ValueError` listing the profiles otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown GStreamer profile {name!r}; profiles: {', '.join(PROFILES)}") from None


def missing(elements: Sequence[str]) -> list[str]:
    """The ``elements`` this machine's GStreamer lacks (needs GStreamer: see :func:`runtime.reason`)."""
    return [e for e in elements if not runtime.has_element(e)]


def explain_missing(elements: Sequence[str]) -> str:
    """``'x264enc (Debian package gstreamer1.0-plugins-ugly), ...'``: each missing element with its
    package; a plugin that is installed but registered none of its elements says so."""
    groups: dict[str, list[str]] = {}  # explanation -> elements (one package named once)
    for e in elements:
        p = PROVIDERS.get(e)
        if p is None:
            groups.setdefault(f"{e} (no known package: see `gst-inspect-1.0 {e}`)", [])
        elif p.plugin and runtime.has_plugin(p.plugin):
            groups.setdefault(f"{e} (the {p.plugin} plugin of {p.package} is installed but registered no {e}: it is {p.needs})", [])
        else:
            groups.setdefault(p.describe(), []).append(e)
    return ", ".join(f"{', '.join(names)} ({why})" if names else why for why, names in groups.items())


def check(profile: str, role: str, extra: Sequence[str] = ()) -> str | None:
    """``None`` when ``profile`` can play ``role`` here (with the ``extra`` elements), else one
    line naming the missing elements and their packages (or why GStreamer itself is missing)."""
    why = runtime.reason()
    if why is not None:
        return why
    prof = get_profile(profile)
    lacking = missing(prof.needed(role, extra))
    if not lacking:
        return None
    return f"GStreamer profile {prof.name!r} ({role}) lacks {explain_missing(lacking)}"


def table() -> list[dict[str, object]]:
    """Every profile and role with ``available`` and ``missing`` elements (``surgbox`` docs, the benchmark)."""
    why = runtime.reason()
    rows: list[dict[str, object]] = []
    for prof in PROFILES.values():
        for role in ROLES:
            needed = prof.needed(role)
            lacking = list(needed) if why else missing(needed)
            rows.append({"profile": prof.name, "role": role, "elements": list(needed), "available": not lacking,
                         "missing": lacking, "reason": why or (explain_missing(lacking) if lacking else None)})
    return rows
