"""Third-party plugin packages installed the way pip installs them (a ``*.dist-info`` folder with
``entry_points.txt`` beside the module), in a folder that goes on ``PYTHONPATH``: the real
entry-point discovery of ``surgbox.plugins`` finds them in a subprocess.

* ``acme-broken``: its module cannot be imported (a missing native library);
* ``acme-hook``: imports, but its registration hook raises;
* ``acme-faces``: a detector ``retinaface`` (shadows surgbox's: vendors win at priority 0), a
  detector ``twin``, and ``acme_boxes``: a minimal detector that accepts none of the usual
  options (threshold, threads, device) and finds one box in the middle of every image;
* ``acme-twin``: another detector ``twin`` at the same priority as acme-faces' (a conflict).
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

MODULES = {
    "acme_broken_plugin": """
        raise ImportError("libacme.so.3: cannot open shared object file (install acme-runtime)")
    """,
    "acme_hook_plugin": """
        from surgbox import hookimpl

        @hookimpl
        def register_detectors(register):
            raise RuntimeError("acme licence server unreachable")
    """,
    "acme_faces_plugin": """
        import numpy as np

        from surgbox import hookimpl
        from surgbox.interfaces import Detector
        from surgbox.types import Detections


        class Boxes(Detector):
            '''One box over the middle third of each image (score 0.9); takes no options at all.'''

            name = "acme_boxes"
            version = "1"

            def detect(self, images):
                out = []
                for im in images:
                    h, w = im.shape[:2]
                    out.append(Detections(np.array([[w / 3, h / 3, 2 * w / 3, 2 * h / 3]], np.float32),
                                          np.array([0.9], np.float32)))
                return out


        class Shadow(Boxes):
            def __init__(self, **options):
                self.options = options


        @hookimpl
        def register_detectors(register):
            register("acme_boxes", Boxes, description="one box in the middle")
            register("retinaface", Shadow, description="acme's own retinaface", priority=0)
            register("twin", Shadow, description="acme-faces twin")
    """,
    "acme_twin_plugin": """
        from surgbox import hookimpl
        from acme_faces_plugin import Shadow


        @hookimpl
        def register_detectors(register):
            register("twin", Shadow, description="acme-twin twin")
    """,
}
DISTS = {"acme-broken": "acme_broken_plugin", "acme-hook": "acme_hook_plugin", "acme-faces": "acme_faces_plugin",
         "acme-twin": "acme_twin_plugin"}


def install(folder: Path, dists: dict[str, str] = DISTS) -> Path:
    """Write the modules and the ``.dist-info`` folders of ``dists`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for dist, module in dists.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(MODULES[module]).lstrip())
        info = folder / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[surgbox]\n{dist.split('-', 1)[1]} = {module}\n")
    return folder


def env_with(folder: Path) -> dict[str, str]:
    """The environment for a ``python -m surgbox`` subprocess that sees the packages in ``folder``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])
    return env


SURGBOX = [sys.executable, "-m", "surgbox"]
