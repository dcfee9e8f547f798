"""The `clip` config section (ClipSpec) and its accepted values: plain data and geometry, no OpenCV or PyAV, so
reading and checking a config costs neither; data/decode/clips.py turns a record into a clip by this spec."""

from __future__ import annotations

from dataclasses import dataclass, field

RESIZE_MODES = ("short_side", "squash")  # data/decode/transforms.py
SAMPLING_MODES = ("dense", "segments")  # data/decode/sampling.py
DIS_PRESETS = ("ultrafast", "fast", "medium")  # OpenCV's DISOPTICAL_FLOW_PRESET_* (data/decode/flow.py)
# Dense methods of OpenCV's contrib module cv2.optflow (opencv-contrib-python-headless): name -> its factory, run at
# OpenCV's defaults. tvl1 is the two-stream literature's method (Zach et al. 2007; TSN, I3D). deepflow needs frames of
# 64 px or more and pcaflow 96 px or more (smaller, both miss a 2 px shift by over 1 px). SparseToDense is left out:
# in OpenCV 5.0.0 it returns all-NaN fields for some 64 px frame pairs.
CONTRIB_METHODS = {
    "tvl1": "DualTVL1OpticalFlow_create",
    "deepflow": "createOptFlow_DeepFlow",
    "pcaflow": "createOptFlow_PCAFlow",
}
FLOW_METHODS = ("dis", "farneback") + tuple(CONTRIB_METHODS)  # dis and farneback: in every OpenCV build
MIN_SIZE = 16  # pixels: OpenCV's DIS flow refuses frames smaller than 12 x 12


@dataclass(frozen=True)
class ClipSpec:
    """The `clip` config section; each field's metadata holds its accepted values (checked by trainer/config.py)."""

    num_frames: int = field(default=8, metadata={"min": 1})  # RGB frames per clip; one flow field per frame
    size: int = field(default=64, metadata={"min": MIN_SIZE})  # clips are size x size pixels (cropped or squashed)
    # short_side: the short side resized to short_side (aspect kept), then a size x size crop | squash: resized
    # to size x size (aspect lost)
    resize: str = field(default="short_side", metadata={"one_of": RESIZE_MODES})
    short_side: int = field(default=0, metadata={"min": 0})  # pixels, >= size; 0: = size (a crop of the long side)
    # training: rescale to a short side drawn from [min, max] pixels (both >= size) before the crop; []: off
    scale_jitter: list = field(default_factory=list)
    flow_method: str = field(default="dis", metadata={"one_of": FLOW_METHODS})  # dis | farneback | tvl1
    dis_preset: str = field(default="fast", metadata={"one_of": DIS_PRESETS})  # ultrafast | fast | medium
    flow_bound: float = field(default=20.0, metadata={"above": 0})  # flow clipped to +-bound px, then uint8
    # dense: num_frames frames `frame_stride` apart | segments: TSN, one per segment
    sampling: str = field(default="dense", metadata={"one_of": SAMPLING_MODES})
    # dense sampling: frames between sampled frames (flow is always to the next frame)
    frame_stride: int = field(default=1, metadata={"min": 1})
    # training, after the crop: random crop of side size x U(this, 1), resized back (1.0 = off)
    crop_scale_min: float = field(default=1.0, metadata={"above": 0, "max": 1})
    flip: bool = False  # training: horizontal flip with probability 1/2 (negates horizontal flow)
    # 0: sample by frame index; >0: sample on the timeline resampled at this rate, from frame timestamps
    # (variable-frame-rate files), read from the frame index. Strides count ticks of 1/sample_fps s;
    # flow is still to the next decoded frame.
    sample_fps: float = field(default=0.0, metadata={"min": 0})

    @property
    def rgb_shape(self) -> tuple[int, int, int, int]:
        return (self.num_frames, self.size, self.size, 3)

    @property
    def flow_shape(self) -> tuple[int, int, int, int]:
        return (self.num_frames, self.size, self.size, 2)

    @property
    def base_side(self) -> int:
        """The short side of the base resolution in short_side mode (pixels)."""
        return self.short_side or self.size

    def base_shape(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) frames (or a region) of this shape are resized to; flow is computed at this resolution."""
        return base_shape(height, width, self.resize, self.base_side, self.size)

    def flow_params(self) -> dict:
        """What changes a video's flow (its region aside, keyed per video): the flow cache's key includes these."""
        resolution = {"size": self.size} if self.resize == "squash" else {"short_side": self.base_side}
        return {
            "method": self.flow_method,
            "preset": self.dis_preset,
            "bound": self.flow_bound,
            "resize": self.resize,
            **resolution,
        }

    def problem(self) -> str:
        """What is wrong across this section's fields, in words ("" when nothing); trainer/config.py raises it."""
        if self.resize == "short_side" and self.short_side and self.short_side < self.size:
            return (
                f"clip.short_side={self.short_side} must be at least clip.size={self.size} (the crop is cut "
                "from the resized frame), or 0 for clip.size"
            )
        jitter = self.scale_jitter
        if jitter and (
            len(jitter) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in jitter)
            or not self.size <= jitter[0] <= jitter[1]
        ):
            return (
                f"clip.scale_jitter must be [] or [min, max] short sides in pixels with clip.size={self.size} "
                f"<= min <= max, got {jitter!r}"
            )
        return ""


def base_shape(height: int, width: int, mode: str, short_side: int, size: int) -> tuple[int, int]:
    """(height, width) a frame of this shape is resized to before any crop."""
    if mode == "squash":
        return size, size
    scale = short_side / min(height, width)
    if height <= width:
        return short_side, max(short_side, int(round(width * scale)))
    return max(short_side, int(round(height * scale))), short_side
