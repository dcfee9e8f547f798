"""The `model` config section (ModelSpec), the model names and their accepted options: plain data and checks,
without Keras, so reading and checking a config costs no TensorFlow start-up; models/registry.py builds them."""

from __future__ import annotations

from dataclasses import dataclass, field

from twostream.models.application_table import APPLICATIONS, FREEZE_BN

FUSIONS = ("concat", "late", "late_learned", "conv")
CONSENSUS = ("average", "max")  # how the frames' (segments') features become the clip's: see _pool
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


class WeightsFileError(FileNotFoundError):
    """A weights file the config names (model.weights, model.pretrained) is not there; says how to get it."""


STREAMS = {"two_stream": ("rgb", "flow"), "rgb_only": ("rgb",), "flow_only": ("flow",)}
FROM_SCRATCH = ("c3d", "r2plus1d", "tsn")  # models/backbones.py; APPLICATIONS: keras.applications, per frame
# name -> (backbone, streams): every model twostream.models.registry builds (two_stream_*, and the
# rgb_only_* / flow_only_* ablations)
MODEL_KINDS = {
    f"{kind}_{backbone}": (backbone, streams)
    for backbone in FROM_SCRATCH + tuple(APPLICATIONS)
    for kind, streams in STREAMS.items()
}


def model_names() -> tuple[str, ...]:
    return tuple(sorted(MODEL_KINDS))


def backbone_of(name: str) -> str:
    return MODEL_KINDS[name][0]


def streams_of(name: str) -> tuple[str, ...]:
    return MODEL_KINDS[name][1]


@dataclass(frozen=True)
class ModelSpec:
    """The `model` config section; each field's metadata holds its accepted values (checked by trainer/config.py)."""

    # a key of twostream.models.registry.MODELS (`twostream models` lists them)
    name: str = field(default="two_stream_c3d", metadata={"one_of": model_names})
    width: int = field(default=16, metadata={"min": 1})  # channels of the first backbone stage; doubles per stage
    depth: int = field(default=3, metadata={"min": 1})  # backbone stages
    # concat: features joined, one head | late: weighted logit average | late_learned: that weight is trained |
    # conv: 3D conv on stacked feature maps
    fusion: str = field(default="concat", metadata={"one_of": FUSIONS})
    # late fusions: (initial) weight of the RGB logits; flow gets 1 - late_weight
    late_weight: float = field(default=0.5, metadata={"above": 0, "below": 1})
    # tsn backbones: consecutive flow fields stacked as channels of one 2D input (divides clip.num_frames)
    flow_stack: int = field(default=2, metadata={"min": 1})
    dropout: float = field(default=0.0, metadata={"min": 0, "below": 1})  # before each classifier head
    # float32 | mixed_float16 | mixed_bfloat16 (logits and softmax stay float32)
    precision: str = field(default="float32", metadata={"one_of": PRECISIONS})
    weights: str = ""  # a local Keras weights file (*.weights.h5) loaded after building; "" = from scratch
    # keras.applications backbones: "" = random init | imagenet = Keras' cache (~/.keras/models) | a weights file
    # or a folder holding Keras' file; the flow stream gets TSN's cross-modality init (models/pretrained.py)
    pretrained: str = ""
    # keras.applications backbones: BatchNorm run on stored statistics, not trained: none | partial (all but
    # each stream's first, TSN's partial BN) | all (then a clip's output is independent of its batch again)
    freeze_bn: str = field(default="none", metadata={"one_of": FREEZE_BN})
    # 2D backbones (tsn, keras.applications), RGB stream: share of channels shifted from the next frame, and
    # as many from the previous one, before each block's first conv (TSM, Lin et al. 2019; 0.125 = theirs)
    temporal_shift: float = field(default=0.0, metadata={"min": 0, "max": 0.5})
    consensus: str = field(default="average", metadata={"one_of": CONSENSUS})  # over frames/time, see _pool


def spec_problem(spec: ModelSpec, frame_size: int) -> str | None:
    """What is wrong with spec's model options together (the config raises it as a ConfigError), or None."""
    backbone, streams = backbone_of(spec.name), streams_of(spec.name)
    applications = ", ".join(APPLICATIONS)
    if (spec.pretrained or spec.freeze_bn != "none") and backbone not in APPLICATIONS:
        key = "model.pretrained" if spec.pretrained else "model.freeze_bn"
        return (
            f"{key} applies to the keras.applications backbones ({applications}); model.name={spec.name} "
            f"is trained from scratch"
        )
    if spec.freeze_bn != "none" and not spec.pretrained:
        return (
            f"model.freeze_bn={spec.freeze_bn} keeps BatchNorm on its stored statistics, which are only "
            f"meaningful with model.pretrained (randomly initialised ones are mean 0, variance 1)"
        )
    if spec.temporal_shift and (backbone not in ("tsn", *APPLICATIONS) or "rgb" not in streams):
        return (
            f"model.temporal_shift shifts channels between frames in the RGB stream of a 2D backbone (tsn, "
            f"{applications}); model.name={spec.name} has none"
        )
    if backbone in APPLICATIONS and frame_size < APPLICATIONS[backbone].min_size:
        return f"{backbone} takes frames of at least {APPLICATIONS[backbone].min_size} pixels; clip.size={frame_size}"
    return None
