"""The chest camera: draws the workbench, the gloved hand and the tools with OpenCV.

Only what a camera could see is drawn: where the hand is, how it is turned, the
finger pose the `Look` says is visible, the object in the hand, the button lamp.
The bend and pressure the glove measures are never read here, which is what keeps
glove-only pairs indistinguishable in pixels.

Drawing is plain integer OpenCV primitives on a 160x120 canvas, with the per-frame
"camera" effects (shake, look-away pans, brightness, sensor noise) done by one
nearest-neighbour warpAffine, one convertScaleAbs and two saturating adds: about
0.3 ms a frame, so ten subjects of video render in tens of seconds on two cores.
"""

from __future__ import annotations

import cv2
import numpy as np

from .activities import BASE_Z
from .datasheet import FRAME_HEIGHT as H
from .datasheet import FRAME_WIDTH as W
from .signals import draw_drift, drift
from .subject import Subject

# fixed props on the bench, pixel coordinates
BUTTON_BOX = (14, 6, 50, 30)  # x0, y0, x1, y1 on the panel
BUTTONS = ((22, 18, (40, 40, 200)), (32, 18, (40, 170, 40)), (42, 18, (40, 190, 220)))
SOCKET = (118, 8, 146, 28)
HOLE = (80, 22)  # where caps are assembled
SCREW_PLATE = (92, 48, 114, 62)
PEG_BLOCK = (44, 52, 62, 64)
PARTS_TRAY = (4, 86, 30, 112)
CABLE_REST = (146, 96)
CABLE_EXIT = (W + 6, 112)
FINGER_LEN = (7.0, 10.0, 11.0, 10.0, 8.0)  # px at scale 1, thumb .. pinky
FINGER_SPLAY = (-1.0, -0.18, 0.0, 0.14, 0.3)  # rad from the hand's forward direction
KNUCKLE_OFFSET = (-6.0, -4.0, -1.3, 1.3, 4.0)  # px sideways from the palm centre
SKIN = (150, 175, 215)
PX_SCALE = 1.6  # px per unit of the hand geometry above, for an average hand at BASE_Z


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(p[0] + 0.5), int(p[1] + 0.5)


def draw_background(subject: Subject, rng: np.random.Generator) -> np.ndarray:
    """The static bench: wood table, grey panel with button box, socket, screw plate, tray, peg."""
    img = np.empty((H, W, 3), np.uint8)
    wood = np.clip(np.array([70, 120, 165]) + subject.table_tint, 0, 255)
    img[:] = wood
    for _ in range(18):  # wood grain
        y = int(rng.integers(40, H))
        shade = tuple(int(c) for c in np.clip(wood - rng.integers(8, 25), 0, 255))
        cv2.line(img, (0, y), (W, y + int(rng.integers(-6, 7))), shade, 1)
    cv2.rectangle(img, (0, 0), (W, 38), (150, 150, 150), -1)
    cv2.rectangle(img, (0, 36), (W, 39), (90, 90, 90), -1)
    x0, y0, x1, y1 = BUTTON_BOX
    cv2.rectangle(img, (x0, y0), (x1, y1), (60, 60, 60), -1)
    for x, y, c in BUTTONS:
        cv2.circle(img, (x, y), 4, tuple(int(v * 0.6) for v in c), -1)
    x0, y0, x1, y1 = SOCKET
    cv2.rectangle(img, (x0, y0), (x1, y1), (30, 30, 30), -1)
    cv2.rectangle(img, (x0 + 9, y0 + 7), (x1 - 9, y1 - 7), (200, 200, 200), -1)
    cv2.circle(img, HOLE, 5, (40, 40, 40), -1)
    x0, y0, x1, y1 = SCREW_PLATE
    cv2.rectangle(img, (x0, y0), (x1, y1), (175, 175, 180), -1)
    cv2.circle(img, ((x0 + x1) // 2, (y0 + y1) // 2), 3, (90, 90, 90), -1)
    x0, y0, x1, y1 = PEG_BLOCK
    cv2.rectangle(img, (x0, y0), (x1, y1), (40, 70, 110), -1)
    x0, y0, x1, y1 = PARTS_TRAY
    cv2.rectangle(img, (x0, y0), (x1, y1), (160, 160, 160), -1)
    for cy in (92, 99, 106):
        cv2.circle(img, (17, cy), 3, (60, 180, 60), -1)
    return img


def draw_tool(img: np.ndarray, tool: str, p: np.ndarray, f: np.ndarray, r: np.ndarray, s: float, fore: float) -> None:
    """A power tool held in the palm at p, pointing along f; `fore` foreshortens its length."""
    L = s * fore
    if tool == "screwdriver":
        cv2.line(img, _pt(p - f * 4 * s), _pt(p + f * 15 * L), (40, 40, 210), max(3, int(4.5 * s)))
        cv2.line(img, _pt(p + f * 15 * L), _pt(p + f * 17 * L), (30, 200, 230), max(3, int(4.5 * s)))
        cv2.line(img, _pt(p + f * 17 * L), _pt(p + f * 27 * L), (200, 200, 200), 2)
    elif tool == "hex_key":
        corner = p - f * 4 * s
        cv2.line(img, _pt(corner), _pt(p + f * 21 * L), (200, 110, 30), 3)
        cv2.line(img, _pt(corner), _pt(corner + r * 9 * s), (200, 110, 30), 3)
    elif tool == "hammer":
        head = p + f * 21 * L
        cv2.line(img, _pt(p - f * 6 * s), _pt(head), (40, 90, 150), max(2, int(2 * s)))
        cv2.line(img, _pt(head - r * 5 * s), _pt(head + r * 4 * s), (165, 165, 170), max(3, int(3 * s)))
        cv2.line(img, _pt(head + r * 4 * s), _pt(head + r * 6 * s - f * 2 * s), (165, 165, 170), 2)
    elif tool == "mallet":
        head = p + f * 19 * L
        cv2.line(img, _pt(p - f * 6 * s), _pt(head), (130, 190, 225), max(2, int(2 * s)))
        cv2.line(img, _pt(head - r * 8 * s), _pt(head + r * 8 * s), (25, 25, 25), max(6, int(6.5 * s)))


def draw_cable(img: np.ndarray, end: np.ndarray) -> None:
    """The cable from the bench edge to its connector (in the hand or at rest)."""
    a, b = np.array(CABLE_EXIT, float), end
    c = np.array([(a[0] + b[0]) / 2 + 10, max(a[1], b[1]) + 8])
    u = np.linspace(0, 1, 8)[:, None]
    pts = ((1 - u) ** 2 * a + 2 * u * (1 - u) * c + u**2 * b).round().astype(np.int32)
    cv2.polylines(img, [pts], False, (20, 20, 20), 3)


def draw_hand(img: np.ndarray, p: np.ndarray, f: np.ndarray, r: np.ndarray, s: float, roll: float, bend: np.ndarray, glove: tuple, sleeve: tuple) -> None:
    """Forearm, palm and five fingers; a finger's drawn length shrinks as it bends."""
    cv2.line(img, _pt(p - f * 8 * s), _pt(p - f * 60 * s), sleeve, max(3, int(7 * s)))
    width = 6 * s * (0.6 + 0.4 * abs(np.cos(roll)))
    angle = float(np.degrees(np.arctan2(f[1], f[0])))
    cv2.ellipse(img, _pt(p), (max(1, int(7 * s)), max(1, int(width))), angle, 0, 360, glove, -1)
    for i in range(5):
        a = FINGER_SPLAY[i]
        d = f * np.cos(a) + r * np.sin(a)
        knuckle = p + r * KNUCKLE_OFFSET[i] * s + f * (2 if i == 0 else 5) * s
        tip = knuckle + d * FINGER_LEN[i] * s * (1 - 0.75 * bend[i])
        cv2.line(img, _pt(knuckle), _pt(tip), glove, max(2, int(2.6 * s)))
    cv2.circle(img, _pt(p - f * 2 * s), max(1, int(1.5 * s)), (60, 160, 60), -1)  # the glove's sensor board


class Camera:
    """Renders frames of one subject's bench; holds the per-recording camera randomness."""

    def __init__(self, subject: Subject, rng: np.random.Generator):
        self.subject = subject
        self.background = draw_background(subject, rng)
        n = 6  # a small bank of noise images, picked per frame: real noise at no per-frame RNG cost
        noise = rng.normal(0, subject.image_noise, (n, H, W, 3))
        self.noise_pos = np.clip(noise, 0, 255).astype(np.uint8)
        self.noise_neg = np.clip(-noise, 0, 255).astype(np.uint8)
        self.shake = draw_drift(rng, 3, 1.2, 0.3, 3.0)  # px, px, deg of head shake
        self.light = draw_drift(rng, 2, 0.06, 0.02, 0.3)  # slow gain / offset wander
        self.tilt_deg = 0.0  # how the camera is turned on the chest strap (nuisance.py sets it)
        self.zoom = 1.0  # image scale from the strap's height and the wearer's build

    def render(self, t: np.ndarray, state: dict[str, np.ndarray], tools: list, occlusion: np.ndarray, rng: np.random.Generator,
               lighting: np.ndarray | None = None) -> np.ndarray:
        """Frames (n, H, W, 3) BGR uint8 at times t.

        state: the timeline's blended latent state at t; tools: the dominant bout's tool
        per frame; occlusion: (n, 5) rows (arm, look_away, ox, oy, envelope) from the world;
        lighting: (n,) extra image gain of lighting episodes (nuisance.py), None: none.
        """
        sub = self.subject
        frames = np.empty((len(t), H, W, 3), np.uint8)
        pos, rpy = state["pos"], state["rpy"]
        u = 0.5 + pos[:, 0] / 0.6
        v = 1 - pos[:, 1] / 0.45 - 0.6 * (pos[:, 2] - BASE_Z)
        scale = np.clip(PX_SCALE * sub.hand_size * (1 + 3.0 * (pos[:, 2] - BASE_Z)), 1.0, 2.6)
        fore = np.clip(np.cos(rpy[:, 1] + state["flexion"]), 0.4, 1.0)
        shake = drift(t, self.shake) + rng.normal(0, 0.25, (len(t), 3))
        light = drift(t, self.light)
        noise_pick = rng.integers(0, len(self.noise_pos), len(t))
        for i in range(len(t)):
            img = self.background.copy()
            p = np.array([u[i] * W, v[i] * H])
            yaw = rpy[i, 2]
            f = np.array([np.sin(yaw), -np.cos(yaw)])
            r = np.array([np.cos(yaw), np.sin(yaw)])
            s, tool = scale[i], tools[i]
            if state["contact"][i] > 0.5:
                x, y, c = BUTTONS[1]
                cv2.circle(img, (x, y), 4, (120, 255, 120), -1)
            draw_cable(img, p + f * 11 * s if tool == "connector" else np.array(CABLE_REST, float))
            if tool in ("screwdriver", "hex_key", "hammer", "mallet"):
                draw_tool(img, tool, p, f, r, s, fore[i])
            draw_hand(img, p, f, r, s, rpy[i, 0], state["shown"][i], sub.glove_color, sub.sleeve_color)
            if tool == "connector":
                c = p + f * 11 * s
                cv2.line(img, _pt(c - f * 3 * s), _pt(c + f * 3 * s), (215, 215, 215), max(3, int(4 * s)))
            elif tool == "cap":
                cv2.circle(img, _pt(p + f * 11 * s), max(2, int(3.5 * s)), (60, 180, 60), -1)
            arm, away, ox, oy, env = occlusion[i]
            if arm:  # the other arm reaches over the working hand
                edge = np.array([-12.0, H * 0.95])
                target = p + np.array([ox, oy])
                end = edge + (target - edge) * env
                cv2.line(img, _pt(edge), _pt(end), sub.sleeve_color, 18)
                cv2.circle(img, _pt(end), 10, SKIN, -1)
            dx, dy = sub.camera_offset[0] + shake[i, 0], sub.camera_offset[1] + shake[i, 1]
            if away:  # the wearer turns: the scene slides partly out of view
                dx, dy = dx + ox * env, dy + oy * env
            m = cv2.getRotationMatrix2D((W / 2, H / 2), float(shake[i, 2]) + self.tilt_deg, self.zoom)
            m[:, 2] += (dx, dy)
            img = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)  # 5x cheaper than bilinear
            gain = sub.brightness * (1 + light[i, 0])
            if lighting is not None:
                gain *= lighting[i]
            img = cv2.convertScaleAbs(img, alpha=gain, beta=30 * light[i, 1])
            k = noise_pick[i]
            cv2.add(img, self.noise_pos[k], dst=img)
            cv2.subtract(img, self.noise_neg[k], dst=frames[i])
        return frames
