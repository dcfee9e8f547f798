"""Builds a real-vs-manipulated set from a folder of real videos: a region of each fake replaced by the same video's
content from another time, feathered, jittering per frame; H.264; split by source video.

    scripts/real_video_corpus.sh /tmp/realvid
    .venv/bin/python benchmarks/real_fakes.py /tmp/realvid runs/real_fakes/videos

Each source video (a file under the folder) is cut into up to --clips windows of --frames frames at a short side of
--short-side px. Each window gives a pair with one video id (as FaceForensics++: a fake made from its real):
- real: the window as it is;
- fake: the window with an elliptical region (height --region x the short side, width 0.8 of that) replaced by the
  same place in another window of the same video (another time), shifted by a fresh integer offset in
  [-jitter, jitter] px every frame (a swap that does not hold still), blended through an alpha feathered over
  --feather px.
Both classes get the region's box track (the same smooth drifting path), so a region crop cuts the same place.
Files as data/make/synthetic_scenes.py writes them: OUT/<class>/<id>_<class>.mp4 (libx264, CRF --crf, yuv420p),
OUT/boxes/<same name>.csv (`frame,x,y,w,h`), OUT/manifest.csv (`path,label,split,video_id,scene,boxes`; `scene`
is the source, and `split` holds whole sources out). OUT/sources.jsonl says per source its frames, size and
motion (mean absolute grey-level change per frame), and per pair how far the fake is from its real inside the
region (`region_diff`, grey levels, before encoding): a fake of a still source differs by its jitter only.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os

import av
import cv2
import numpy as np

from twostream.data.make.synthetic_scenes import FACE_ASPECT, write_boxes

CLASSES = ("real", "fake")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", help="folder of real videos (searched recursively)")
    parser.add_argument("out", help="the set: real/, fake/, boxes/, manifest.csv")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--clips", type=int, default=4, help="clips (real/fake pairs) per source, at most")
    parser.add_argument("--short-side", type=int, default=144, help="clip short side, pixels (0: native)")
    parser.add_argument("--region", type=float, default=0.35, help="region height / short side")
    parser.add_argument("--jitter", type=int, default=2, help="the fake region's per-frame offset bound, pixels")
    parser.add_argument("--feather", type=float, default=3.0, help="alpha blur sigma at the region's edge, pixels")
    parser.add_argument("--crf", type=int, default=23, help="libx264 constant rate factor")
    parser.add_argument("--min-motion", type=float, default=0.0, help="skip sources whose motion is below this")
    parser.add_argument("--val-fraction", type=float, default=0.3, help="share of sources held out")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


# ---- reading a source ----


def read_source(path: str, short_side: int, limit: int) -> tuple[np.ndarray, float]:
    """Up to `limit` frames (T, H, W, 3) uint8 BGR at `short_side` (even sides, for yuv420p), and the frame rate."""
    frames = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="bgr24")
            scale = short_side / min(image.shape[:2]) if short_side else 1.0  # 0: native size
            size = (2 * round(image.shape[1] * scale / 2), 2 * round(image.shape[0] * scale / 2))
            frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
            if len(frames) >= limit:
                break
    return np.stack(frames), min(max(rate, 5.0), 60.0)  # a rate outside 5..60 fps is a container's guess


def motion(frames: np.ndarray) -> float:
    """Mean absolute grey-level change between consecutive frames."""
    grey = frames.mean(axis=3)
    return float(np.abs(np.diff(grey, axis=0)).mean()) if len(frames) > 1 else 0.0


def windows(count: int, frames: int, clips: int) -> list[tuple[int, int]]:
    """(clip start, donor start) pairs: non-overlapping windows, each's donor the next window round; a source
    shorter than two windows takes its donor half the video later (looped)."""
    starts = list(range(0, max(count - frames, 0) + 1, frames))[:clips] if count >= frames else [0]
    if count >= 2 * frames:
        every = list(range(0, count - frames + 1, frames))
        return [(s, every[(every.index(s) + 1) % len(every)]) for s in starts]
    return [(s, s + count // 2) for s in starts]


# ---- one pair ----


def region_track(rng: np.random.Generator, height: int, width: int, region: int, frames: int) -> np.ndarray:
    """The region's boxes (T, 4) x, y, w, h: a steady drift under 1 px/frame plus a slow bob, inside the frame."""
    w, h = round(FACE_ASPECT * region), region
    t = np.arange(frames)[:, None] - frames / 2
    drift = rng.uniform(0, 1.0) * t * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
    bob = rng.uniform(0, 1.5) * np.sin(2 * np.pi * rng.uniform(0.03, 0.08) * t + rng.uniform(0, 2 * np.pi, 2))
    room = np.array([width - w, height - h]) / 2 - frames / 2 - 3  # so the drift and bob stay inside
    centre = np.array([width, height]) / 2 + rng.uniform(-1, 1, 2) * np.maximum(room, 0) + drift + bob
    top_left = np.clip(np.round(centre - np.array([w, h]) / 2), 0, [width - w, height - h])
    return np.column_stack([top_left, np.full(frames, w), np.full(frames, h)]).astype(int)


def feathered_ellipse(w: int, h: int, feather: float) -> np.ndarray:
    """Alpha (h, w) float32: 1 inside an ellipse a feather's width inside the box, falling off smoothly."""
    alpha = np.zeros((h, w), np.float32)
    inset = int(np.ceil(feather))
    cv2.ellipse(alpha, (w // 2, h // 2), (max(w // 2 - inset, 1), max(h // 2 - inset, 1)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(alpha, (0, 0), feather) if feather > 0 else alpha


def make_fake(clip: np.ndarray, donor: np.ndarray, boxes: np.ndarray, rng, jitter: int, feather: float) -> np.ndarray:
    """The clip with each frame's region blended from the donor frame at the same place, shifted by the jitter."""
    fake = clip.astype(np.float32)
    height, width = clip.shape[1:3]
    for t, (x, y, w, h) in enumerate(boxes):
        dx, dy = rng.integers(-jitter, jitter + 1, 2) if jitter else (0, 0)
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = cv2.warpAffine(donor[t], shift, (width, height), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        alpha = feathered_ellipse(w, h, feather)[..., None]
        patch = fake[t, y : y + h, x : x + w]
        fake[t, y : y + h, x : x + w] = patch * (1 - alpha) + moved[y : y + h, x : x + w] * alpha
    return np.clip(np.round(fake), 0, 255).astype(np.uint8)


def region_diff(real: np.ndarray, fake: np.ndarray, boxes: np.ndarray) -> float:
    """Mean absolute difference between fake and real inside the region's boxes, grey levels."""
    diffs = [
        np.abs(fake[t, y : y + h, x : x + w].astype(float) - real[t, y : y + h, x : x + w]).mean()
        for t, (x, y, w, h) in enumerate(boxes)
    ]
    return float(np.mean(diffs))


def write_h264(path: str, frames: np.ndarray, fps: float, crf: int) -> None:
    """Encodes BGR frames with libx264 at the given CRF (yuv420p, the common delivery format)."""
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())


# ---- the set ----


def held_out(source: str, seed: int, fraction: float) -> bool:
    """A stable draw per (seed, source): whole sources land on one side."""
    digest = hashlib.sha256(f"{seed}:{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def source_pairs(args, path: str, index: int) -> tuple[list[dict], dict]:
    """Writes one source's pairs; returns their manifest rows and the source's report line."""
    name = f"src{index:02d}"
    frames, fps = read_source(path, args.short_side, (args.clips + 1) * args.frames)
    report = {
        "source": name,
        "file": os.path.relpath(path, args.sources),
        "frames": len(frames),
        "size": list(frames.shape[1:3]),
        "motion": round(motion(frames), 2),
        "pairs": [],
    }
    if len(frames) < 4 or report["motion"] < args.min_motion:
        report["skipped"] = True
        return [], report
    split = "val" if held_out(name, args.seed, args.val_fraction) else "train"
    rng = np.random.default_rng([args.seed, index])
    rows = []
    for pair, (start, donor_start) in enumerate(windows(len(frames), args.frames, args.clips)):
        take = np.arange(args.frames)
        clip, donor = frames[(start + take) % len(frames)], frames[(donor_start + take) % len(frames)]
        region = round(args.region * min(clip.shape[1:3]))
        boxes = region_track(rng, clip.shape[1], clip.shape[2], region, args.frames)
        videos = {"real": clip, "fake": make_fake(clip, donor, boxes, rng, args.jitter, args.feather)}
        report["pairs"].append(round(region_diff(clip, videos["fake"], boxes), 2))
        video_id = f"{name}_{pair:02d}"
        for label, video in videos.items():
            file = f"{video_id}_{label}"
            write_h264(os.path.join(args.out, label, file + ".mp4"), video, fps, args.crf)
            write_boxes(os.path.join(args.out, "boxes", file + ".csv"), boxes)
            rows.append(
                {
                    "path": f"{label}/{file}.mp4",
                    "label": label,
                    "split": split,
                    "video_id": video_id,
                    "scene": name,
                    "boxes": f"boxes/{file}.csv",
                }
            )
    return rows, report


def main() -> None:
    args = parse_args()
    for folder in (*CLASSES, "boxes"):
        os.makedirs(os.path.join(args.out, folder), exist_ok=True)
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(args.sources) for f in files)
    rows = []
    with open(os.path.join(args.out, "sources.jsonl"), "w") as log:
        for index, path in enumerate(paths):
            try:
                mine, report = source_pairs(args, path, index)
            except (av.error.FFmpegError, ValueError) as error:  # a file PyAV cannot read: counted, not fatal
                mine, report = [], {"source": f"src{index:02d}", "file": path, "error": str(error)}
            rows += mine
            log.write(json.dumps(report) + "\n")
    with open(os.path.join(args.out, "manifest.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    splits = {s: sum(r["split"] == s for r in rows) for s in ("train", "val")}
    print(json.dumps({"videos": len(rows), **splits, "sources": len({r["scene"] for r in rows})}))


if __name__ == "__main__":
    main()
