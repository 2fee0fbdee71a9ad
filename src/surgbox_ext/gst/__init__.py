"""GStreamer backends (through PyGObject): sources, H.264 encoders and element profiles.

* :mod:`.profiles` -- the ``cpu``, ``jetson`` and ``nvidia`` element profiles, probed with
  ``Gst.ElementFactory.find``, and the package that provides each missing element.
* :mod:`.pipelines` -- the exact pipeline descriptions each plugin builds (pure strings).
* :mod:`.source` -- ``gst_testsrc``, ``gst_v4l2``, ``gst_argus``, ``gst_uri``, ``gst_pipeline``:
  ``... -> appsink`` sources, frames stamped on the master clock at capture.
* :mod:`.encoder` -- ``gst_x264``, ``gst_nvv4l2h264``, ``gst_nvh264``: ``appsrc -> encoder ->
  h264parse -> appsink``, packets for the crash-safe muxer, AAC through PyAV.
* :mod:`.checks` -- the availability checks ``surgbox plugins`` shows.

Nothing here imports ``gi`` at import time: GStreamer loads when a plugin opens or a check runs
(:mod:`.runtime`). docs/backends.md is the guide.
"""
