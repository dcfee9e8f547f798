"""Writes a seeded, realistic synthetic deepfake set: non-square frames, a moving camera, a small face-like region,
and fakes whose region is swapped in with temporal inconsistency; several scenes, so a split by source is meaningful.

Each scene is a source: its own background, palette, camera style and sensor noise. Each real video of a scene has
one fake made from it (as in FaceForensics++): the same background, camera path, noise and region track, with the
region replaced by another identity drawn from the same face generator. Frame by frame both classes look alike:
- real: the region is part of the scene; its offset from the smooth track (pixels), its relative scale and its
  brightness offset are drawn once per video;
- fake: the same offsets, from the same distributions, are drawn again for every frame (a swap made frame by frame
  that does not hold still); in half of the fakes the region is also updated only every other frame (it lags).
So a single frame's region has the same distribution in both classes; the evidence is in its motion over time.

Files: OUT/<class>/<scene>_<pair>_<class>.<ext>; OUT/boxes/<same name>.csv with `frame,x,y,w,h` per frame (the
rendered region's bounding box, integer pixels, clamped to the frame); OUT/manifest.csv with
`path,label,split,video_id,scene,boxes`: a fake shares its original's video_id, and `split` holds whole scenes out
(the last `val_scenes` scenes are "val").
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import cv2
import numpy as np

from twostream.data.make.synthetic import CODECS, random_texture, write_video

CLASSES = ("real", "fake")
FACE_ASPECT = 0.8  # region width / height


# The realistic set with only the evidence a region swap from the same video leaves, a per-frame offset (no
# flicker, scale change or lag), at the jitter that makes it as hard for the CPU-size footage recipe as the real
# set of benchmarks/real_fakes.py (calibrated there: docs/data.md, "Real footage fakes"). SceneSpec(**LIKE_REAL_FAKES)
LIKE_REAL_FAKES = {"jitter": 0.5, "flicker": 0.0, "scale_jitter": 0.0, "lag_share": 0.0}


@dataclass(frozen=True)
class SceneSpec:
    num_videos: int = 96  # real and fake videos together; each scene gets the same number of real/fake pairs
    scenes: int = 6  # sources: backgrounds, palettes, cameras
    val_scenes: int = 2  # the last this-many scenes form the validation split
    frames: int = 16  # frames per video
    width: int = 160  # frame width, pixels
    height: int = 120  # frame height, pixels
    region: int = 32  # face-like region height, pixels (width: FACE_ASPECT of it)
    fps: float = 10.0
    jitter: float = 0.6  # std of the region's offset from its track, pixels (per video: real; per frame: fake)
    flicker: float = 5.0  # std of the region's brightness offset, grey levels (likewise)
    scale_jitter: float = 0.03  # std of the region's relative scale change (likewise)
    lag_share: float = 0.5  # share of fakes whose region is updated only every other frame
    codec: str = "mjpg"
    seed: int = 0

    def problems(self) -> list[str]:
        """Every invalid value, each with the fix; empty when the spec can be rendered."""
        found = []
        if self.scenes < 2 or not 1 <= self.val_scenes < self.scenes:
            found.append(
                f"scenes={self.scenes}, val_scenes={self.val_scenes}: need at least 2 scenes and "
                "1 <= val_scenes < scenes, so that both splits hold whole scenes"
            )
        if self.num_videos < 2 * self.scenes or self.num_videos % (2 * self.scenes):
            found.append(
                f"num_videos={self.num_videos} must be a positive multiple of 2 x scenes = "
                f"{2 * self.scenes} (a real/fake pair per video id, the same count in every scene)"
            )
        if self.frames < 3:
            found.append(f"frames={self.frames}: need at least 3 frames (motion over time is the evidence)")
        if self.region < 8 or 2 * self.region > min(self.width, self.height):
            found.append(
                f"region={self.region} px must be at least 8 and at most half the shorter frame side "
                f"({min(self.width, self.height) // 2} px for {self.width}x{self.height})"
            )
        if self.codec not in CODECS:
            found.append(f"codec {self.codec!r}: choose one of {sorted(CODECS)}")
        return found


@dataclass(frozen=True)
class Scene:
    index: int  # its place in the set: with the seed, it picks every random draw of the scene's videos
    name: str
    world: np.ndarray  # background (BGR), larger than the frame by `margin` on every side
    margin: int  # pixels of world around the frame: room for camera travel and zoom
    pan: float  # camera speed bound, pixels per frame
    zoom: float  # zoom oscillation amplitude (relative scale)
    shake: float  # hand-held shake amplitude, pixels
    noise: float  # sensor noise std, grey levels
    gain: float  # scene brightness factor
    identities: tuple  # (texture, alpha) faces of the people filmed in this scene


# ---- scenes and faces ----


def _bgr(hue: float, saturation: float, value: float) -> np.ndarray:
    """One BGR colour from OpenCV's HSV ranges (hue 0..180)."""
    hsv = np.array([[[hue % 180, np.clip(saturation, 0, 255), np.clip(value, 0, 255)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def face_texture(rng: np.random.Generator, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A face-like BGR texture (height x FACE_ASPECT*height, uint8) and its feathered elliptical alpha (float32)."""
    h, w = 2 * height, 2 * int(round(FACE_ASPECT * height))  # drawn at twice the size, then reduced: smooth edges
    skin = _bgr(rng.uniform(5, 20), rng.uniform(60, 150), rng.uniform(110, 230))
    detail = random_texture(rng, h, w).astype(np.float32) - 128
    face = np.clip(skin + 0.2 * detail, 0, 255)
    hair = _bgr(rng.uniform(0, 30), rng.uniform(40, 200), rng.uniform(20, 120))
    cv2.ellipse(face, (w // 2, int(0.12 * h)), (int(0.55 * w), int(0.2 * h)), 0, 0, 360, hair.tolist(), -1)
    eye_y, eye_dx = int(rng.uniform(0.38, 0.46) * h), int(rng.uniform(0.16, 0.22) * w)
    iris = _bgr(rng.uniform(0, 180), rng.uniform(50, 200), rng.uniform(30, 110)).tolist()
    for side in (-1, 1):
        centre = (w // 2 + side * eye_dx, eye_y)
        cv2.ellipse(face, centre, (int(0.1 * w), int(0.045 * h)), 0, 0, 360, (235, 235, 235), -1)
        cv2.circle(face, centre, int(0.04 * h), iris, -1)
        cv2.line(
            face,
            (centre[0] - int(0.1 * w), eye_y - int(0.07 * h)),
            (centre[0] + int(0.1 * w), eye_y - int(0.08 * h)),
            hair.tolist(),
            max(1, h // 40),
        )
    lips = _bgr(rng.uniform(170, 185), rng.uniform(80, 180), rng.uniform(90, 180)).tolist()
    cv2.ellipse(
        face,
        (w // 2, int(rng.uniform(0.7, 0.76) * h)),
        (int(rng.uniform(0.14, 0.22) * w), int(0.045 * h)),
        0,
        0,
        360,
        lips,
        -1,
    )
    small = (w // 2, h // 2)
    texture = cv2.resize(face, small, interpolation=cv2.INTER_AREA).astype(np.uint8)
    ellipse = np.zeros((h, w), np.float32)
    cv2.ellipse(ellipse, (w // 2, h // 2), (w // 2 - 2, h // 2 - 2), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(cv2.resize(ellipse, small, interpolation=cv2.INTER_AREA), (0, 0), 1.0)
    return texture, alpha


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A scene's world: a palette-tinted texture at the scene's own scale, with a few flat objects on it."""
    scale = int(rng.integers(4, 16))  # pixels per texture cell: coarse rooms and fine ones
    coarse = rng.integers(0, 256, size=(max(2, height // scale), max(2, width // scale), 3), dtype=np.uint8)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    palette = _bgr(rng.uniform(0, 180), rng.uniform(40, 220), rng.uniform(70, 220))
    world = 0.55 * palette + 0.45 * texture
    for _ in range(int(rng.integers(3, 8))):  # windows, shelves, furniture
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))
        colour = _bgr(rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(30, 250)).tolist()
        cv2.rectangle(world, (x0, y0), (x1, y1), colour, -1 if rng.random() < 0.6 else int(rng.integers(2, 5)))
    return np.clip(world + rng.normal(0, 6, world.shape), 0, 255).astype(np.uint8)


def make_scene(spec: SceneSpec, index: int) -> Scene:
    """Scene `index` of a set: depends only on (seed, index), so any subset of scenes regenerates identically."""
    rng = np.random.default_rng([spec.seed, 1, index])
    pan, zoom, shake = rng.uniform(0.2, 1.5), rng.uniform(0.0, 0.04), rng.uniform(0.0, 1.5)
    margin = int(np.ceil(pan * spec.frames + shake + zoom * max(spec.width, spec.height))) + 8
    world = _background(rng, spec.height + 2 * margin, spec.width + 2 * margin)
    people = tuple(face_texture(rng, spec.region) for _ in range(3))
    return Scene(
        index,
        f"s{index:02d}",
        world,
        margin,
        pan,
        zoom,
        shake,
        noise=rng.uniform(1.0, 5.0),
        gain=rng.uniform(0.75, 1.15),
        identities=people,
    )


# ---- one real/fake pair ----


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(angle), np.sin(angle)])


def _camera(rng: np.random.Generator, scene: Scene, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: the camera's pan and shake (T, 2 each, world pixels from its mid-clip centre) and its zoom (T,)."""
    t = np.arange(frames)[:, None]
    pan = rng.uniform(0.2, scene.pan) * _random_direction(rng)
    frequency, phase = rng.uniform(0.05, 0.15, size=2), rng.uniform(0, 2 * np.pi, size=2)  # cycles per frame
    shake = scene.shake * np.sin(2 * np.pi * frequency * t + phase)
    zoom = 1 + scene.zoom * np.sin(2 * np.pi * rng.uniform(0.02, 0.06) * t[:, 0] + rng.uniform(0, 2 * np.pi))
    return pan * (t - frames / 2), shake, zoom


def _track(rng: np.random.Generator, spec: SceneSpec, zoom_amplitude: float) -> np.ndarray:
    """The region's smooth path (T, 2) on a steady camera: the camera pans with the person, so their drift on screen
    is their own (a steady drift plus a slow head bob); it stays in frame."""
    t = np.arange(spec.frames)[:, None] - spec.frames / 2
    bob = rng.uniform(0, 1.0) * np.sin(2 * np.pi * rng.uniform(0.03, 0.08) * t + rng.uniform(0, 2 * np.pi, size=2))
    room = min(spec.width, spec.height) / 2 - 0.6 * spec.region - 4  # pixels the centre may travel from mid-frame
    speed = min(rng.uniform(0.5, 1.5), max(0.1, (room - 2) / (spec.frames / 2)))  # pixels per frame
    drift = speed * _random_direction(rng) * t
    reach = speed * spec.frames / 2 + 2 + zoom_amplitude * max(spec.width, spec.height) / 2
    half = np.array([spec.width, spec.height]) / 2
    middle = half + rng.uniform(-1, 1, size=2) * np.maximum(0.0, half - 0.6 * spec.region - reach)
    return middle + drift + bob


def _offsets(rng: np.random.Generator, spec: SceneSpec, strength: float, per_frame: bool) -> dict:
    """Offsets from the track (pixels), relative scale and brightness: drawn once (real) or every frame (fake)."""
    count = spec.frames if per_frame else 1
    shape = (spec.frames, 1)
    return {
        "position": np.broadcast_to(rng.normal(0, strength * spec.jitter, (count, 2)), (spec.frames, 2)),
        "scale": np.broadcast_to(rng.normal(0, strength * spec.scale_jitter, (count, 1)), shape)[:, 0],
        "brightness": np.broadcast_to(rng.normal(0, strength * spec.flicker, (count, 1)), shape)[:, 0],
    }


def _paste(
    frame: np.ndarray, face: tuple[np.ndarray, np.ndarray], centre: np.ndarray, scale: float, brightness: float
) -> tuple[int, int, int, int]:
    """Alpha-blends the face (in place) centred at `centre` at `scale`; returns its bounding box x, y, w, h."""
    texture, alpha = face
    h, w = alpha.shape
    matrix = np.array([[scale, 0, centre[0] - scale * w / 2], [0, scale, centre[1] - scale * h / 2]], np.float32)
    size = (frame.shape[1], frame.shape[0])
    moved = cv2.warpAffine(texture, matrix, size, flags=cv2.INTER_LINEAR).astype(np.float32) + brightness
    weight = cv2.warpAffine(alpha, matrix, size, flags=cv2.INTER_LINEAR)[..., None]
    frame[:] = frame * (1 - weight) + moved * weight
    x0, y0 = np.floor(centre - scale * np.array([w, h]) / 2).astype(int)
    x1, y1 = np.ceil(centre + scale * np.array([w, h]) / 2).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size[0]), min(y1, size[1])
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def render_pair(scene: Scene, spec: SceneSpec, index: int) -> dict:
    """Renders pair `index` of a scene: {"real"|"fake": (frames (T, H, W, 3) uint8 BGR, boxes (T, 4) int x,y,w,h)}."""
    rng = np.random.default_rng([spec.seed, 2, scene.index, index])
    pan, shake, zoom = _camera(rng, scene, spec.frames)
    track = _track(rng, spec, scene.zoom)
    strength = rng.uniform(0.5, 1.0)  # how unsteady this pair's swap is (its real draws the same spread once)
    real_face = scene.identities[int(rng.integers(len(scene.identities)))]
    swapped_face = face_texture(rng, spec.region)  # another identity, from the same generator
    looks = {
        "real": (real_face, _offsets(rng, spec, strength, per_frame=False), np.arange(spec.frames)),
        "fake": (
            swapped_face,
            _offsets(rng, spec, strength, per_frame=True),
            np.arange(spec.frames) // 2 * 2 if rng.random() < spec.lag_share else np.arange(spec.frames),
        ),
    }
    noise = rng.normal(0, scene.noise, (spec.frames, spec.height, spec.width, 3)).astype(np.float32)
    half = np.array([spec.width, spec.height]) / 2
    out: dict[str, tuple[list[np.ndarray], list[tuple[int, int, int, int]]]] = {label: ([], []) for label in CLASSES}
    for t in range(spec.frames):
        # Screen = zoom x (world - camera) + frame centre; the inverse map samples the world for each frame pixel.
        camera = scene.margin + half + pan[t] + shake[t]
        inverse = np.array(
            [[1 / zoom[t], 0, camera[0] - half[0] / zoom[t]], [0, 1 / zoom[t], camera[1] - half[1] / zoom[t]]],
            np.float32,
        )
        background = cv2.warpAffine(
            scene.world,
            inverse,
            (spec.width, spec.height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        ).astype(np.float32)
        for label, (face, offsets, shown) in looks.items():
            s = shown[t]  # the track frame shown now: a lagging fake holds each position for two frames
            frame = background.copy()
            # Screen position of the person: shaken and zoomed (about the frame centre) with the scene.
            centre = half + zoom[s] * (track[s] - shake[s] - half) + offsets["position"][t]
            box = _paste(frame, face, centre, zoom[s] * (1 + offsets["scale"][t]), offsets["brightness"][t])
            out[label][0].append(np.clip(frame * scene.gain + noise[t], 0, 255).astype(np.uint8))
            out[label][1].append(box)
    return {label: (np.stack(frames), np.array(boxes)) for label, (frames, boxes) in out.items()}


# ---- the data set on disk ----


def write_boxes(path: str, boxes: np.ndarray) -> None:
    """A box track as CSV: header frame,x,y,w,h; one row per frame, integer pixels."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "x", "y", "w", "h"])
        writer.writerows([[t, *map(int, box)] for t, box in enumerate(boxes)])


def synthesize_scenes(out_dir: str, spec: SceneSpec = SceneSpec()) -> list[dict]:
    """Writes the videos, box files and manifest.csv under out_dir; returns the manifest rows."""
    problems = spec.problems()
    if problems:
        raise ValueError("invalid realistic synthetic set:\n  " + "\n  ".join(problems))
    for folder in (*CLASSES, "boxes"):
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    pairs_per_scene = spec.num_videos // (2 * spec.scenes)
    rows = []
    for scene_index in range(spec.scenes):
        scene = make_scene(spec, scene_index)
        split = "val" if scene_index >= spec.scenes - spec.val_scenes else "train"
        for pair in range(pairs_per_scene):
            video_id = f"{scene.name}_{pair:03d}"
            for label, (frames, boxes) in render_pair(scene, spec, pair).items():
                name = f"{video_id}_{label}"
                path = os.path.join(label, name + CODECS[spec.codec][1])
                write_video(os.path.join(out_dir, path), frames, spec.fps, spec.codec)
                write_boxes(os.path.join(out_dir, "boxes", name + ".csv"), boxes)
                rows.append(
                    {
                        "path": path,
                        "label": label,
                        "split": split,
                        "video_id": video_id,
                        "scene": scene.name,
                        "boxes": os.path.join("boxes", name + ".csv"),
                    }
                )
    with open(os.path.join(out_dir, "manifest.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows
