"""Evidence pictures drawn with OpenCV: Grad-CAM over RGB frames and flow fields, as a contact sheet per window."""

from __future__ import annotations

import cv2
import numpy as np

from twostream.data.decode.flow_format import to_unit

CELL = 144  # pixels: the height every frame is drawn at (a 64 px clip is enlarged, a 1080p frame shrunk)
LABEL_W, HEADER_H = 120, 34  # pixels: the row names' column, the frame numbers' row
MAX_COLUMNS = 8  # frames shown per window: evenly spread over the clip when it has more
STRENGTH = 0.6  # the heat map's opacity where the map is 1; where it is 0 the frame shows as it is
INK, PAPER = (30, 30, 30), (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def flow_colours(flow: np.ndarray) -> np.ndarray:
    """uint8 flow (T, H, W, 2) -> RGB (T, H, W, 3): hue the direction (as trainer/video/visualize.py: right = red,
    image y down), brightness the magnitude relative to the window's 99th percentile, which shows full. The scale
    is the window's own, not the clipping bound TensorBoard's samples use: the sub-pixel motion that tells a swap
    apart is a few percent of the bound, black on that scale."""
    units = to_unit(flow.astype(np.float32))  # flow / bound, in [-1, 1]
    magnitude = np.hypot(units[..., 0], units[..., 1])
    scale = max(float(np.percentile(magnitude, 99)), 1e-6)
    hue = (np.arctan2(units[..., 1], units[..., 0]) / (2 * np.pi)) % 1.0 * 180  # OpenCV's hue: 0..180
    value = np.minimum(magnitude / scale, 1.0) * 255
    hsv = np.stack([hue, np.full_like(hue, 255), value], axis=-1).round().astype(np.uint8)
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_HSV2RGB) for frame in hsv])


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) with a [0, 1] map of the same size as a jet heat map, opaque in proportion to it."""
    heat = cv2.cvtColor(cv2.applyColorMap(np.uint8(np.round(cam * 255)), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    alpha = STRENGTH * cam[..., None]
    return np.uint8(np.round(image * (1 - alpha) + heat * alpha))


def outline(image: np.ndarray, rect) -> np.ndarray:
    """A copy of `image` with the rectangle (x0, y0, x1, y1) drawn in white: where the clip was cut from."""
    marked = image.copy()
    x0, y0, x1, y1 = (int(round(v)) for v in rect)
    cv2.rectangle(marked, (x0, y0), (x1 - 1, y1 - 1), PAPER, 1)
    return marked


def _fit(image: np.ndarray, width: int) -> np.ndarray:
    """`image` scaled to CELL pixels high, centred on a white cell `width` wide."""
    scaled_w = max(1, int(round(image.shape[1] * CELL / image.shape[0])))
    smooth = cv2.INTER_AREA if image.shape[0] > CELL else cv2.INTER_NEAREST  # enlarged: its pixels stay visible
    scaled = cv2.resize(image, (scaled_w, CELL), interpolation=smooth)
    cell = np.full((CELL, width, 3), PAPER, np.uint8)
    left = (width - scaled_w) // 2
    cell[:, left : left + scaled_w] = scaled[:, : width - left]
    return cell


def _text(image, text: str, x: int, y: int, scale: float = 0.45) -> None:
    cv2.putText(image, text, (x, y), FONT, scale, INK, 1, cv2.LINE_AA)


def grid(rows: list[tuple[str, list[np.ndarray]]], headers: list[str]) -> np.ndarray:
    """Named rows of RGB images, one column per header, every cell CELL pixels high and as wide as the widest."""
    width = max(int(round(i.shape[1] * CELL / i.shape[0])) for _, images in rows for i in images)
    top = np.full((HEADER_H, LABEL_W + width * len(headers), 3), PAPER, np.uint8)
    for column, header in enumerate(headers):
        for line, part in enumerate(header.split("\n")):
            _text(top, part, LABEL_W + column * width + 4, 14 + 15 * line, 0.4)
    lines = [top]
    for name, images in rows:
        label = np.full((CELL, LABEL_W, 3), PAPER, np.uint8)
        for line, part in enumerate(name.split("\n")):
            _text(label, part, 4, CELL // 2 + 16 * line - 4)
        lines.append(np.hstack([label, *(_fit(image, width) for image in images)]))
    return np.vstack(lines)


def columns(count: int) -> np.ndarray:
    """Which of a clip's `count` frames are shown: all, or MAX_COLUMNS evenly spread."""
    return np.unique(np.linspace(0, count - 1, min(count, MAX_COLUMNS)).round().astype(int))


def cam_sheet(window, clip_cams: dict, frame_cams: dict, rects: np.ndarray) -> np.ndarray:
    """A window's contact sheet (RGB): its native frames under each stream's map (the clip's crop outlined), then
    its flow fields in colour (flow_colours), bare and under the flow stream's map."""
    shown = columns(len(window.numbers))
    rows = []
    for stream, title in (("rgb", "frame +\nRGB CAM"), ("flow", "frame +\nflow CAM")):
        if stream in frame_cams:
            rows.append((title, [outline(overlay(window.frames[t], frame_cams[stream][t]), rects[t]) for t in shown]))
    colours = flow_colours(window.flow)
    rows.append(("flow", [colours[t] for t in shown]))
    if "flow" in clip_cams:
        rows.append(("flow +\nflow CAM", [overlay(colours[t], clip_cams["flow"][t]) for t in shown]))
    headers = [f"frame {int(window.numbers[t])}" for t in shown]
    return grid(rows, headers)


def titled(image: np.ndarray, title: str) -> np.ndarray:
    """`image` under a line of text."""
    band = np.full((28, image.shape[1], 3), PAPER, np.uint8)
    _text(band, title, 6, 19, 0.5)
    return np.vstack([band, image])


def save(path: str, rgb: np.ndarray) -> None:
    """Writes an RGB image as PNG (OpenCV writes BGR)."""
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the picture (is the folder writable?)")
