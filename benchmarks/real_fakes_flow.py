"""Is a set's manipulation visible in the flow the recipe gets? The region's motion relative to its surround, real vs
fake, on region crops at the recipe's resolution, and how well that one number tells the classes apart.

    .venv/bin/python benchmarks/real_fakes_flow.py runs/real_fakes/base    # any set with a boxes column

Per video: each frame pair is cut as the recipe cuts it (data/decode/boxes.py's crop box, margin 0.15, resized
to --side px), DIS medium flow between them; the relative flow is the distance between the median flow inside the
region (the inner part of its ellipse) and the median flow outside it (pixels at --side), averaged over pairs.
Printed per split: the median relative flow of real and of fake videos, and the ROC-AUC of the relative flow as a
fake score (0.5: it does not separate them; the model sees more than this one number, but no more frames).
"""

from __future__ import annotations

import argparse
import csv
import json
import os

import av
import cv2
import numpy as np

from twostream.data.decode.boxes import read_csv, region_boxes
from twostream.data.decode.flow import FlowEngine

MARGIN = 0.15  # the footage preset's data.box_margin


def decode(path: str) -> np.ndarray:
    """Every frame (T, H, W, 3) uint8 RGB."""
    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def relative_flow(root: str, row: dict, side: int, engine: FlowEngine) -> float:
    """Mean over frame pairs of |median flow inside the region - median flow outside it|, pixels at `side`."""
    frames = decode(os.path.join(root, row["path"]))
    boxes_file = os.path.join(root, row["boxes"])
    regions = np.loadtxt(boxes_file, delimiter=",", skiprows=1, ndmin=2)  # frame, x, y, w, h
    crops = region_boxes(read_csv(boxes_file, MARGIN), *frames.shape[1:3])
    yy, xx = np.mgrid[:side, :side]
    values = []
    for t in range(min(len(frames), len(regions)) - 1):
        x0, y0, x1, y1 = crops[min(t, len(crops) - 1)]  # frame t's crop for both frames: no motion of its own
        pair = [cv2.resize(frames[i, y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA) for i in (t, t + 1)]
        flow = engine.between_frames(np.stack(pair))[0]
        scale, (_, x, y, w, h) = side / (x1 - x0), regions[t]
        radius = ((xx - (x + w / 2 - x0) * scale) / (w * scale / 2)) ** 2
        radius = radius + ((yy - (y + h / 2 - y0) * scale) / (h * scale / 2)) ** 2
        inside, outside = flow[radius < 0.5], flow[radius > 1.3]
        if len(outside) < 20:  # a region filling its crop: take whatever lies outside the ellipse
            outside = flow[radius > 1.0]
        values.append(np.linalg.norm(np.median(inside, 0) - np.median(outside, 0)))
    return float(np.mean(values))


def auc(positives: list[float], negatives: list[float]) -> float:
    """Probability that a random positive scores above a random negative."""
    p, n = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(np.mean(p > n) + 0.5 * np.mean(p == n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a set with manifest.csv (path,label,split,...,boxes)")
    parser.add_argument("--side", type=int, default=72, help="crop side, pixels (the recipe's short side)")
    args = parser.parse_args()
    engine = FlowEngine("dis", "medium")
    found: dict[str, dict[str, list[float]]] = {}
    for row in csv.DictReader(open(os.path.join(args.root, "manifest.csv"))):
        by_label = found.setdefault(row["split"], {"real": [], "fake": []})
        by_label[row["label"]].append(relative_flow(args.root, row, args.side, engine))
    for split, by_label in found.items():
        real, fake = by_label["real"], by_label["fake"]
        print(
            json.dumps(
                {
                    "set": args.root,
                    "split": split,
                    "videos": len(real) + len(fake),
                    "relative_flow_px_real": round(float(np.median(real)), 2),
                    "relative_flow_px_fake": round(float(np.median(fake)), 2),
                    "auc_relative_flow": round(auc(fake, real), 3),
                }
            )
        )


if __name__ == "__main__":
    main()
