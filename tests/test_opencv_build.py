"""Issue 14: OpenCV that respects the board. Which cv2 a run uses is the install's choice
(pip's gui or headless wheel, or the board's own), so edgehar reads what it can do instead
of assuming: the GUI backend (a headless build has no window: fall back, never crash),
GStreamer, the video I/O backends, where it came from (`edgehar live --check`); and with
no cv2 at all, every verb that needs one says how to get one in one line.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgehar.app import display
from edgehar.app.opencv_build import gui_backend, has_gstreamer, opencv_build, video_backends
from edgehar.cli import NEEDS_OPENCV
from export_helpers import tiny_bundle

# The GUI part of cv2.getBuildInformation() as three kinds of build print it.
HEADLESS_5 = """
  GUI:                           NONE
    VTK support:                 NO
    Built-in fonts:              sans

  Media I/O:
"""  # opencv-python-headless 5.1.0 (pip)
QT_5 = """
  GUI:                           QT5
    QT:                          YES (ver 5.15.16 )
      QT OpenGL support:         NO
    VTK support:                 NO
"""  # opencv-python 5.x (pip): the same layout with Qt
GTK_454 = """
  GUI:
    GTK+:                        YES (ver 3.24.33)
      GThread :                  YES (ver 2.72.4)
      GtkGlExt:                  NO
    VTK support:                 NO

  Media I/O:
"""  # Ubuntu 22.04's python3-opencv 4.5.4 (JetPack 6's base): the GUI line is empty
HEADLESS_454 = """
  GUI:
    VTK support:                 NO

  Media I/O:
"""


@pytest.mark.parametrize("text, expect", [(HEADLESS_5, None), (QT_5, "QT5"), (GTK_454, "GTK+"), (HEADLESS_454, None),
                                          ("no such section", None)])
def test_gui_backend_is_read_from_each_build_information_layout(text, expect):
    assert gui_backend(text) == expect


def test_the_build_in_use_is_described_as_it_is():
    build = opencv_build()
    assert build.version == cv2.__version__ and build.path == Path(cv2.__file__).parent
    assert build.gui == gui_backend(cv2.getBuildInformation())
    assert build.gstreamer == ("GSTREAMER" in build.video_backends) == has_gstreamer()
    line = build.summary()
    assert "\n" not in line and f"OpenCV {cv2.__version__} ({build.path})" in line
    assert f"GStreamer {'yes' if build.gstreamer else 'no'}" in line


def test_the_backend_that_reads_a_video_is_among_those_listed(tmp_path):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(3):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    assert cap.getBackendName() in video_backends()
    cap.release()


def test_a_headless_build_gets_no_window_and_says_why(monkeypatch):
    """With a display that would answer, a build without GUI still gets no window: its
    imshow raises "The function is not implemented" (the headless wheel), so the view falls
    back (auto) or refuses in one line (--window) before trying."""
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: HEADLESS_5)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(display, "_probe_display", lambda *a: pytest.fail("a headless build must not be probed"))
    ok, why = display.gui_available()
    assert not ok and "has no GUI backend" in why and "pip install 'edgehar[gui]'" in why
    assert display.open_window("auto", "edgehar test") == (None, why)
    with pytest.raises(display.ViewError, match="cannot open a window: this OpenCV .* has no GUI backend"):
        display.open_window("window", "edgehar test")


# Installed as sitecustomize: `import cv2` fails in every interpreter the verb starts, as
# on a board where neither extra was installed.
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoOpenCV(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "cv2":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoOpenCV())
    """
)
# A cv2 package that is there but cannot be loaded, as each failure was seen: opencv-python
# on an image without libGL (the binary's loader names cv2), and a cv2 built for NumPy 1.x
# (JetPack's, Debian's python3-opencv) under NumPy 2 (numpy's own ImportError, no name).
BROKEN_CV2 = {
    "libgl": 'raise ImportError("libGL.so.1: cannot open shared object file: No such file or directory", name="cv2")\n',
    "numpy": 'raise ImportError("numpy.core.multiarray failed to import")\n',
}
NEEDS_CV2 = f"this needs OpenCV (cv2), which is not installed here: {NEEDS_OPENCV}"


def _run_without_cv2(tmp_path: Path, argv: list[str], broken: str | None = None) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    if broken is None:
        (site / "sitecustomize.py").write_text(BLOCKER)
    else:
        (site / "cv2").mkdir()
        (site / "cv2" / "__init__.py").write_text(BROKEN_CV2[broken])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "EDGEHAR_HOME": str(tmp_path / "cache"), "DISPLAY": "",
           "PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import cv2"], capture_output=True, text=True, env=env)
    assert probe.returncode == 1 and "cv2" in probe.stderr  # the blocker is in place
    return subprocess.run([sys.executable, "-m", "edgehar", *argv], capture_output=True, text=True, timeout=300, env=env)


WORK_WITHOUT_OPENCV = {"models", "info", "devices"}  # the registry, a manifest, ports and radios: no images
VERBS = ("demo", "live", "record", "train", "evaluate", "export", "bench", "models", "info", "devices",
         "simulate-dataset", "simulate-glove")


def _argv(verb: str, tmp: Path, eager: Path) -> list[str]:
    bundle = str(Path(__file__).resolve().parents[1] / "edgehar" / "bundles" / "default-mmtsa-v1" / "litert-int8")
    return {
        "demo": ["demo", "--seconds", "4", "--headless"],
        "live": ["live", "--model", bundle, "--glove", "sim://glove", "--imu", "sim://imu", "--camera", "0", "--check"],
        "record": ["record", "--out", str(tmp / "rec"), "--simulate", "--seconds", "2", "--headless"],
        "train": ["train", "--epochs", "1", "--out", str(tmp / "run")],
        "evaluate": ["evaluate", "--epochs", "1", "--out", str(tmp / "eval")],
        "export": ["export", str(eager), "--format", "litert", "--out", str(tmp / "exp")],
        "bench": ["bench", bundle, "--runs", "5", "--no-dense", "--gaf-reps", "0", "--out", str(tmp / "bench")],
        "models": ["models"],
        "info": ["info", bundle],
        "devices": ["devices", "--seconds", "1"],
        "simulate-dataset": ["simulate", "dataset", "--out", str(tmp / "ds"), "--subjects", "1", "--repeats", "1"],
        "simulate-glove": ["simulate", "glove", "--serial", "--seconds", "1"],
    }[verb]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_that_needs_opencv_names_both_extras_without_it(tmp_path_factory, tmp_path, verb):
    argv = _argv(verb, tmp_path, tiny_bundle(tmp_path_factory)[1] if verb == "export" else Path("unused"))
    result = _run_without_cv2(tmp_path, argv)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    if verb in WORK_WITHOUT_OPENCV:
        assert result.returncode == 0, result.stderr[-2000:]
        return
    # bench logs its progress on stderr first (each bundle is measured in a child process)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == f"edgehar {argv[0]}: error: {NEEDS_CV2}", \
        result.stderr[-2000:]
    assert "'edgehar[headless]'" in NEEDS_CV2 and "'edgehar[gui]'" in NEEDS_CV2


@pytest.mark.parametrize("broken, reason, remedy", [
    ("libgl", "is installed but cannot be loaded (libGL.so.1: cannot open shared object file",
     "apt-get install libgl1 libglib2.0-0 libxcb1 (what opencv-python needs), or use opencv-python-headless"),
    ("numpy", "cannot be loaded (numpy.core.multiarray failed to import): it was built for NumPy 1.x and NumPy",
     "pip install 'numpy<2'"),
])
def test_an_opencv_that_cannot_be_loaded_says_why_and_what_to_do(tmp_path, broken, reason, remedy):
    result = _run_without_cv2(tmp_path, ["demo", "--seconds", "4", "--headless"], broken=broken)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"edgehar demo: error: OpenCV (cv2) {reason}") and line.endswith(remedy), line
