"""Render every page of a realistic event report to ``docs/images/report-page-N.png``.

A throw-away SURGBOX_HOME gets an event with long notes and names in several scripts; ``surgbox
record --event`` records it (paper layout, the room camera showing a synthetic face, the BIS
simulator on a pty, two snapshots by SIGUSR1), stops it (the report), and the PDF's pages are
drawn with pypdfium2. Nothing here uses real faces or real patient data.

    python scripts/render_report_pages.py [--out docs/images] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTES = ("Converted to open at 40 min after adhesions from an earlier appendectomy; " * 6
         + "Specimen to pathology. Estimated blood loss 150 ml. Drain placed at the right subhepatic space. "
         + "Post-operative plan: clear liquids tonight, mobilise tomorrow morning, review the drain output "
         + "at 24 h and remove it when under 50 ml. ") * 3


def synthetic_face_video(path: Path, seconds: float = 8.0, fps: int = 25) -> None:
    """A 640x360 room-camera clip of a drawn face drifting across the picture (no real person)."""
    import av
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    def frame(i: int) -> np.ndarray:
        img = Image.new("RGB", (640, 360), (70, 90, 110))
        d = ImageDraw.Draw(img)
        d.rectangle([0, 290, 640, 360], fill=(40, 110, 100))  # the operating table's drape
        cx, cy, r = 220 + i * 2, 170, 95
        d.ellipse([cx - r * 0.8, cy - r, cx + r * 0.8, cy + r], fill=(224, 182, 150))
        d.ellipse([cx - r * 0.85, cy - r * 1.05, cx + r * 0.85, cy - r * 0.35], fill=(60, 40, 25))
        for ex in (-0.33, 0.33):
            d.ellipse([cx + ex * r - 14, cy - r * 0.15 - 8, cx + ex * r + 14, cy - r * 0.15 + 8], fill=(250, 250, 250))
            d.ellipse([cx + ex * r - 6, cy - r * 0.15 - 6, cx + ex * r + 6, cy - r * 0.15 + 6], fill=(50, 30, 20))
        d.polygon([(cx, cy - r * 0.05), (cx - 11, cy + r * 0.25), (cx + 11, cy + r * 0.25)], fill=(200, 150, 120))
        d.chord([cx - 34, cy + r * 0.35, cx + 34, cy + r * 0.62], 0, 180, fill=(170, 70, 70))
        return np.asarray(img.filter(ImageFilter.GaussianBlur(1.5)))

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        for i in range(int(seconds * fps)):
            for p in s.encode(av.VideoFrame.from_ndarray(frame(i), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def run(cmd: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "surgbox", *cmd], env=env, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise SystemExit(f"surgbox {' '.join(cmd)} failed:\n{out.stderr}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder for report-page-N.png")
    ap.add_argument("--keep", type=Path, help="also keep the PDF and the home in this folder")
    ap.add_argument("--scale", type=float, default=1.6, help="pixels per PDF point (1.6: about 135 dpi)")
    args = ap.parse_args()
    import pypdfium2 as pdfium

    from surgbox.catalog import install_home
    from surgbox.cli.demo import SimulatedBIS

    tmp = Path(tempfile.mkdtemp(prefix="surgbox-report-"))
    try:
        home = install_home(tmp / "home", "admin", "admin-password")
        cfg = home.config_path.read_text()
        home.config_path.write_text(cfg.replace("min_length = 8", "min_length = 8\ntime_cost = 1\nmemory_kib = 8192\nparallelism = 1"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SURGBOX_")}
        env.update(SURGBOX_HOME=str(home.path), SURGBOX_USER="admin", SURGBOX_PASSWORD="admin-password")
        out = run(["events", "create", "--patient", "Zoë Quintanilla-Brightwater 王小明", "--medical-record", "MRN-2026-004711",
                   "--procedure", "Laparoscopic cholecystectomy with intraoperative cholangiography",
                   "--physician", "Dr. Hélène Okonkwo", "--physician", "Dr. 佐藤 健 🩺", "--place", "OR 3 (east wing)",
                   "--notes", NOTES], env)
        event_id = out.stdout.strip().splitlines()[-1]
        room = tmp / "room.mp4"
        synthetic_face_video(room)
        with SimulatedBIS(rate=2.0, course_s=60) as sim:
            config = tmp / "rec.toml"
            sources = {"endo": {"plugin": "testsrc", "width": 1280, "height": 720},
                       "room": {"plugin": "file", "path": str(room), "loop": True},
                       "vitals": {"plugin": "testsrc", "width": 640, "height": 360},
                       "mic": {"plugin": "tone"}, "bis": {"plugin": "bis", "url": sim.url}}
            config.write_text('[encoder]\nplugin = "libx264"\npreset = "ultrafast"\n[layout]\npreset = "paper"\n'
                              'sources = { endoscope = "endo", room = "room", vitals = "vitals" }\n'
                              + "".join(f"[sources.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in opts.items())
                                        for name, opts in sources.items()))

            proc = subprocess.Popen([sys.executable, "-m", "surgbox", "record", "--config", str(config), "--event", event_id,
                                     "--duration", "10", "--snapshot-source", "room"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            lines: list[str] = []
            reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
            reader.start()
            deadline = time.monotonic() + 120
            while not any("REC" in line for line in lines) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)  # SIGUSR1 only once the recorder's handler is installed
            for _ in range(2):
                time.sleep(2.5)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGUSR1)
            proc.wait(300)
            reader.join(10)
            if proc.returncode != 0:
                raise SystemExit("surgbox record failed:\n" + "".join(lines))
        pdf = tmp / "report.pdf"
        run(["report", event_id, "--out", str(pdf)], env)
        args.out.mkdir(parents=True, exist_ok=True)
        for old in args.out.glob("report-page-*.png"):
            old.unlink()
        doc = pdfium.PdfDocument(pdf.read_bytes())
        for i in range(len(doc)):
            target = args.out / f"report-page-{i + 1}.png"
            doc[i].render(scale=args.scale).to_pil().convert("RGB").save(target, optimize=True)
            print(target)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(pdf, args.keep / "report.pdf")
            shutil.copytree(home.path, args.keep / "home", dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
