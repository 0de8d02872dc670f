"""Which OpenCV this run uses and what it can do: version, where `cv2` was imported from,
its video I/O backends, GStreamer or not, and the GUI backend behind its window.

edgehar does not force a pip OpenCV over one that is already importable: JetPack's cv2 is
built with GStreamer and NVIDIA's camera elements (CSI cameras), pip's wheels have neither,
and the headless wheel has no window. So which cv2 a run gets is the install's choice, and
the camera (before a GStreamer pipeline), the view (before a window) and `edgehar live
--check` (to show the user) ask this module rather than assume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2


@dataclass(frozen=True)
class OpenCVBuild:
    """What `edgehar live --check` reports about the cv2 in use."""

    version: str
    path: Path  # the cv2 package folder: a venv's site-packages (pip) or the system's dist-packages
    gstreamer: bool
    video_backends: tuple[str, ...]  # backends VideoCapture / VideoWriter can use here, e.g. FFMPEG, V4L2
    gui: str | None  # e.g. QT5, GTK3; None: no window (opencv-python-headless)

    def summary(self) -> str:
        """One line: 'OpenCV 5.0.0 (/…/site-packages/cv2): GStreamer no, video I/O FFMPEG, V4L2, GUI QT5'."""
        gui = self.gui or "none (no window: a headless build)"
        return (f"OpenCV {self.version} ({self.path}): GStreamer {'yes' if self.gstreamer else 'no'}, "
                f"video I/O {', '.join(self.video_backends) or 'none'}, GUI {gui}")


def gui_backend(build_information: str | None = None) -> str | None:
    """The GUI backend named in `cv2.getBuildInformation()` (QT5, GTK3, ...), None without one.

    Builds from 4.5.5 on name it on the `GUI:` line ("NONE" in the headless wheels); older
    ones (Ubuntu 22.04's 4.5.4) leave that line empty and say YES on the toolkit's own
    indented line below it ("GTK+: YES (ver 3.24.33)")."""
    lines = (cv2.getBuildInformation() if build_information is None else build_information).splitlines()
    for i, line in enumerate(lines):
        key, sep, value = line.strip().partition(":")
        if key != "GUI" or not sep:
            continue
        if value.strip():
            return None if value.strip().upper() == "NONE" else value.strip()
        indent = len(line) - len(line.lstrip())
        for sub in lines[i + 1:]:
            if not sub.strip() or len(sub) - len(sub.lstrip()) <= indent:
                break
            name, _, state = sub.strip().partition(":")
            if state.strip().startswith("YES") and "support" not in name:
                return name.strip()
        return None
    return None


def video_backends() -> tuple[str, ...]:
    """Names of the video I/O backends available in this build (built in or loaded as a
    plug-in), in OpenCV's order of preference."""
    reg = cv2.videoio_registry
    return tuple(dict.fromkeys(reg.getBackendName(b) for b in reg.getBackends() if reg.hasBackend(b)))


def has_gstreamer() -> bool:
    """Whether this OpenCV can open GStreamer pipelines (pip's wheels cannot; JetPack's can)."""
    return bool(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER))


def opencv_build() -> OpenCVBuild:
    """The cv2 this process imported, described."""
    return OpenCVBuild(version=cv2.__version__, path=Path(cv2.__file__).parent, gstreamer=has_gstreamer(),
                       video_backends=video_backends(), gui=gui_backend())
