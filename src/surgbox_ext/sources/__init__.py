"""Default source plugins (one module each), registered by :mod:`surgbox_ext.plugin`.

* :mod:`.testsrc` ``testsrc`` — synthetic video with a white sync flash every 2 s
* :mod:`.tone` ``tone`` — synthetic audio with a 1 kHz sync beep every 2 s
* :mod:`.file` ``file`` — a media file played as a live source
* :mod:`.v4l2` ``v4l2`` — capture cards and USB cameras (Linux)
* :mod:`.url` ``url`` — RTSP/HTTP/UDP/TCP IP cameras with reconnect
* :mod:`.alsa` ``alsa`` / :mod:`.pulse` ``pulse`` — microphones
* :mod:`.footswitch` ``footswitch`` / ``footswitch_evdev`` — triggers

Importing this package imports nothing heavy; :mod:`.checks` holds the availability checks.
See ``docs/sources.md``.
"""
