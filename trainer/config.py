"""The typed config tree, YAML presets shipped with the package, and `--set section.key=value` overrides.

Every value is checked when the config is built, so loading it is the preflight of every command and
launcher. Each section declares its own rules in its fields' metadata, with the accepted values that the
owning module exports: {"one_of": NAMES} (a tuple, or a function returning one), and bounds "min"/"max"
(inclusive) and "above"/"below" (exclusive). `check_world` adds the checks that need the number of ranks.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

import yaml

from twostream.data.decode.clip_spec import CONTRIB_METHODS, ClipSpec
from twostream.data.distributed.sharding import local_batch_size
from twostream.data.distributed.shared_slots import clips_per_call, slots_per_actor
from twostream.data.manifest import MIN_CLASS_VIDEOS
from twostream.models.spec import MODEL_KINDS, ModelSpec, backbone_of, spec_problem, streams_of
from twostream.trainer.video.metrics import AGGREGATES

OPTIMIZERS = ("adamw", "sgd")  # what trainer/engine/optimizer.py make_optimizer builds
SCHEDULES = ("constant", "cosine", "step")  # what trainer/engine/schedule.py WarmupDecay computes
ON_NONFINITE = ("stop", "skip")  # what the loop does on a NaN/Inf loss or gradient
RAY_MIN_OBJECT_STORE_MB = 75  # the smallest object store Ray starts with
DEFAULT_FLOW_CACHE = ".flow_cache"  # in the dataset folder (hidden: not a class folder)


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key and what is accepted."""


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # dataset folder: sub-folder per class, or holding manifest.csv / metadata.json
    # a .csv (path,label[,split][,video_id]) or DFDC metadata.json; empty = auto-detect
    manifest: str = ""
    val_fraction: float = field(default=0.2, metadata={"above": 0, "below": 1})  # share of videos held out
    num_actors: int = field(default=0, metadata={"min": 0})  # Ray decode actors per rank; 0 = one per spare core
    cpus_per_actor: float = field(default=1.0, metadata={"above": 0})  # Ray CPU reservation per actor
    # clips per actor call (amortises Ray's overhead); 0 = about 32 MiB of clips (1 to 32: 32 at 112 px, 16 at 224)
    clips_per_call: int = field(default=0, metadata={"min": 0})
    # decode calls each actor has been sent and not yet returned: one it runs, the rest queued behind it
    calls_in_flight: int = field(default=2, metadata={"min": 1})
    prefetch: int = field(default=2, metadata={"min": 1})  # local batches tf.data holds ready ahead of the step
    ray_address: str = ""  # join this Ray cluster; empty = $RAY_ADDRESS or the node's local Ray
    # seconds a join waits for the cluster's address to answer, then one error line (launch ray too)
    ray_connect_timeout_s: float = field(default=30.0, metadata={"above": 0})
    # MiB per rank of the local Ray's object store (a node's shared Ray gets the sum over its ranks)
    object_store_mb: int = field(default=1024, metadata={"min": RAY_MIN_OBJECT_STORE_MB})
    # stop when more than this share of a rank's clips fail in an epoch
    max_failed_fraction: float = field(default=0.05, metadata={"min": 0, "max": 1})
    # The flow cache (`twostream prepare` fills it). Empty: DATA/.flow_cache if that folder exists (where prepare
    # puts it by default), else no cache (flow computed for each clip's frames). A folder: created and used.
    flow_cache_dir: str = ""
    flow_cache_gb: float = field(default=20.0, metadata={"above": 0})  # size bound; least recently used evicted
    # regions of interest: a folder of <video>.csv (frame,x,y,w,h) or one .json (docs/data.md); empty: full frames
    boxes: str = ""
    box_margin: float = field(default=0.2, metadata={"min": 0})  # box widened by this share of its side, each side
    # the class names the dataset's labels must be, comma-separated ("real,fake"); empty: whatever labels it has
    classes: str = ""
    # a class with fewer videos is refused (a label typo in a manifest makes a class of one video)
    min_class_videos: int = field(default=MIN_CLASS_VIDEOS, metadata={"min": 1})
    # a manifest path listed twice with the same label: merged with a warning (true) or refused (false)
    merge_duplicates: bool = True

    def flow_cache_folder(self, for_writing: bool = False) -> str:
        """The flow cache's folder ("" = no cache). for_writing (`twostream prepare`): the default folder even
        before it exists. Training reads exactly what prepare filled."""
        if self.flow_cache_dir:
            return self.flow_cache_dir
        default = os.path.join(self.root, DEFAULT_FLOW_CACHE) if self.root else ""
        return default if default and (for_writing or os.path.isdir(default)) else ""

    @property
    def flow_cache_bytes(self) -> int:
        return int(self.flow_cache_gb * (1 << 30))


@dataclass(frozen=True)
class TrainConfig:
    global_batch: int = field(default=16, metadata={"min": 1})  # clips per optimizer step, summed over all ranks
    epochs: int = field(default=5, metadata={"min": 1})
    optimizer: str = field(default="adamw", metadata={"one_of": OPTIMIZERS})
    lr: float = field(default=1e-3, metadata={"above": 0})  # peak learning rate of a world of one; see below
    scale_lr_with_world: bool = True  # Horovod's linear rule: lr x world size (keep the per-rank batch fixed)
    # after warmup: constant | cosine (to 0 at the last step) | step
    schedule: str = field(default="constant", metadata={"one_of": SCHEDULES})
    warmup_epochs: float = field(default=0.0, metadata={"min": 0})  # linear warmup from 0 to the peak (epochs)
    # step schedule: multiply the lr by step_decay_factor every this many epochs
    step_decay_epochs: int = field(default=30, metadata={"min": 1})
    step_decay_factor: float = field(default=0.1, metadata={"above": 0, "max": 1})
    # micro-batches per rank per optimizer step (divides the per-rank batch)
    accumulate_steps: int = field(default=1, metadata={"min": 1})
    clip_grad_norm: float = field(default=0.0, metadata={"min": 0})  # clip averaged gradients to this norm (0: off)
    label_smoothing: float = field(default=0.0, metadata={"min": 0, "below": 1})
    # NaN/Inf loss: stop every rank, or skip the update on every rank
    on_nonfinite: str = field(default="stop", metadata={"one_of": ON_NONFINITE})
    momentum: float = field(default=0.9, metadata={"min": 0, "below": 1})  # sgd only
    # decoupled (adamw) / L2-free decay (sgd), per step x lr
    weight_decay: float = field(default=1e-4, metadata={"min": 0})
    seed: int = field(default=0, metadata={"min": 0})  # shuffling, clip sampling and weight initialisation
    # also checkpoint every N steps (0: at epoch ends only)
    checkpoint_every: int = field(default=0, metadata={"min": 0})
    keep_checkpoints: int = field(default=3, metadata={"min": 1})
    eager: bool = False  # run steps eagerly (debugging) instead of as tf.function
    debug: bool = False  # deterministic ops, and the first batch's shapes/dtypes logged (`--debug`)
    fp16_allreduce: bool = False  # compress gradients to float16 for the allreduce
    elastic: bool = False  # Horovod elastic: survive lost ranks, take added ones (horovodrun --min-np)
    # elastic: commit the state in memory every N steps (work lost on a failure)
    elastic_commit_every: int = field(default=10, metadata={"min": 1})
    # read the losses back from the device (one host sync), log them, check NaN and preemption every N steps
    log_every: int = field(default=10, metadata={"min": 1})
    # optimizer steps per tf.function call (fewer Python round trips per step)
    steps_per_call: int = field(default=1, metadata={"min": 1})
    select_metric: str = "val_loss"  # epoch record field that picks the best checkpoint (*loss, *eer, *error,
    # *mae, *mse: lowest; others highest); empty: no selection, export the last


@dataclass(frozen=True)
class EvalConfig:
    views: int = field(default=1, metadata={"min": 1})  # clips per validation video, evenly spread over it
    spatial_crops: int = field(default=1, metadata={"min": 1})  # crops per clip along the long side (1: centre)
    # a video's class probabilities from its clips' (mean | max)
    video_aggregate: str = field(default="mean", metadata={"one_of": AGGREGATES})


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    clip: ClipSpec = field(default_factory=ClipSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as YAML 1.2 does (1e-4 is a float, not a string) and refusing a key
    given twice in one mapping (PyYAML keeps the last without a word)."""


_Loader.add_implicit_resolver(  # YAML 1.1 needs a dot and a signed exponent (1.0e-4); 1.2 takes 1e-4, 1E5, .5
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
        r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (first on line {seen[key] + 1}); keep one", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def parse_yaml(text: str, where: str):
    """YAML text -> Python values; ConfigError "WHERE:LINE:COLUMN: problem" (1-based) on a syntax error."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        place = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if "'\\t'" in problem or "\t" in problem:
            problem += " (indent with spaces, not tabs)"
        raise ConfigError(f"{place}: not valid YAML: {problem}") from None


def _read_tree(text: str, where: str) -> dict:
    """A config file's text -> {section: {key: value}}; ConfigError naming the file when it is not that shape."""
    tree = parse_yaml(text, where)
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{where}: a config file must be a mapping of sections (e.g. 'train:' then "
            f"'  epochs: 3' below it), got a {type(tree).__name__}"
        )
    return tree


def preset_names() -> list[str]:
    folder = resources.files("twostream.trainer") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load(preset: str | None = None, path: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults <- preset (a shipped YAML) <- file at `path` <- overrides ("section.key=value")."""
    tree: dict = {}
    if preset:
        if preset not in preset_names():
            raise ConfigError(f"unknown preset {preset!r}; shipped presets: {', '.join(preset_names())}")
        preset_file = resources.files("twostream.trainer") / "presets" / f"{preset}.yaml"
        _merge(tree, _read_tree(preset_file.read_text(), f"preset {preset}"))
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file {path!r} not found")
        with open(path) as f:
            _merge(tree, _read_tree(f.read(), path))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.epochs=3")
        section, name = key.split(".", 1)
        _merge(tree, {section: {name: parse_yaml(value, f"--set {key}")}})
    return from_dict(tree)


def _merge(into: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def from_dict(tree: dict) -> Config:
    """Builds a Config, rejecting unknown sections/keys and values of the wrong type with one clear error."""
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    unknown = set(tree) - set(sections)
    if unknown:
        raise ConfigError(f"unknown config section(s) {sorted(unknown)}; known: {sorted(sections)}")
    not_mappings = [name for name in sections if not isinstance(tree.get(name) or {}, dict)]
    if not_mappings:
        name = not_mappings[0]
        raise ConfigError(
            f"config section {name!r} must be a mapping of keys (e.g. '{name}:' then indented "
            f"'key: value' lines), got {tree[name]!r} ({type(tree[name]).__name__})"
        )
    defaults = Config()
    built = {name: _section(name, getattr(defaults, name), tree.get(name) or {}) for name in sections}
    return _check_across(Config(**built))


def _check_across(config: Config) -> Config:
    """The checks that relate two keys."""
    if _stacks_flow(config.model) and config.clip.num_frames % config.model.flow_stack:
        raise ConfigError(
            f"model.flow_stack={config.model.flow_stack} must divide clip.num_frames="
            f"{config.clip.num_frames} (flow fields stacked per input of a tsn flow stream)"
        )
    if config.train.global_batch % config.train.accumulate_steps:
        raise ConfigError(
            f"train.accumulate_steps={config.train.accumulate_steps} must divide "
            f"train.global_batch={config.train.global_batch} (micro-batches of each rank's batch)"
        )
    if config.clip.problem():
        raise ConfigError(config.clip.problem())
    if config.clip.resize == "squash":  # frames squashed to size x size: no short side, no long side to crop along
        ignored = {"clip.short_side": config.clip.short_side, "eval.spatial_crops": config.eval.spatial_crops - 1}
        for key, given in ignored.items():
            if given:
                raise ConfigError(
                    f"{key} has no effect with clip.resize=squash (frames become clip.size x "
                    f"clip.size, with no long side to keep or crop along); set clip.resize=short_side "
                    f"or drop {key}"
                )
    problem: str | None = memory_problem(config)
    if problem:
        raise ConfigError(problem)
    if config.clip.flow_method in CONTRIB_METHODS:  # dis and farneback are in every OpenCV build
        from twostream.data.decode.flow import check_method  # OpenCV: imported only to check a contrib method

        try:
            check_method(config.clip.flow_method, config.clip.dis_preset)  # e.g. tvl1 without cv2.optflow
        except ValueError as error:
            raise ConfigError(f"clip.flow_method: {error}") from None
    problem = spec_problem(config.model, min(config.clip.rgb_shape[1:3]))  # backbone, pretrained, BN, shift
    if problem:
        raise ConfigError(problem)
    return config


def _stacks_flow(model: ModelSpec) -> bool:
    """Whether model.flow_stack applies: only a tsn flow stream stacks flow fields as channels."""
    return model.name not in MODEL_KINDS or (backbone_of(model.name) == "tsn" and "flow" in streams_of(model.name))


RGB_CHANNELS, FLOW_CHANNELS = 3, 2  # uint8 per pixel of a clip's RGB frames and quantised flow fields
FLOAT_BYTES = 4  # a clip as the model's float32 input


def machine_memory_bytes() -> int:
    """This machine's physical memory (the bound a clip, an actor call and a batch must fit in)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_problem(config: Config, memory: int | None = None) -> str:
    """What makes the clips impossible to hold in memory ("" when nothing): one actor call's clips (uint8, rgb +
    flow, at the largest side a frame is resized to) and one rank's batch as float32 (a world of one)."""
    clip, memory = config.clip, memory or machine_memory_bytes()
    side = max([clip.size, clip.short_side, *clip.scale_jitter[1:]])
    one_clip = clip.num_frames * side * side * (RGB_CHANNELS + FLOW_CHANNELS)
    calls_clips = clips_per_call(clip, config.data.clips_per_call)
    per_call = one_clip * calls_clips
    per_batch = (
        clip.num_frames * clip.size**2 * (RGB_CHANNELS + FLOW_CHANNELS) * FLOAT_BYTES * config.train.global_batch
    )
    limit = f"this machine's {_gib(memory)} of memory"
    side_key = (
        "clip.size" if side == clip.size else "clip.short_side" if side == clip.short_side else "clip.scale_jitter"
    )
    frames = f"clip.num_frames={clip.num_frames} frames of {side}x{side} px, rgb + flow"
    if one_clip > memory:
        return (
            f"{side_key}={getattr(clip, side_key[5:])}: one clip ({frames}, uint8) takes {_gib(one_clip)}, "
            f"more than {limit}; lower {side_key} or clip.num_frames"
        )
    if per_call > memory:
        return (
            f"data.clips_per_call={config.data.clips_per_call}: one actor call's {calls_clips} clips ({frames}, uint8) "
            f"take {_gib(per_call)}, more than {limit}; lower data.clips_per_call, {side_key} or clip.num_frames"
        )
    if per_batch > memory:
        return (
            f"train.global_batch={config.train.global_batch}: one batch of clips (clip.num_frames="
            f"{clip.num_frames} frames of {clip.size}x{clip.size} px, rgb + flow, float32) takes "
            f"{_gib(per_batch)}, more than {limit}; lower train.global_batch, clip.size or clip.num_frames"
        )
    return ""


def decode_slots(config: Config, world_size: int) -> int:
    """Shared-memory slots per decode actor for this config's calls in flight, prefetch and batches of a world of
    `world_size` ranks (an elastic world that shrinks makes larger batches, which may then hold more calls)."""
    data = config.data
    local_batch = local_batch_size(config.train.global_batch, world_size)
    per_call = clips_per_call(config.clip, data.clips_per_call)
    return slots_per_actor(data.calls_in_flight, data.prefetch, per_call, local_batch)


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.3g} GiB"


def check_world(config: Config, world_sizes) -> None:
    """The checks that need the number of ranks, for every size the job may run with (an elastic job: each
    in its range); launchers run it before starting anything."""
    batch, accumulate = config.train.global_batch, config.train.accumulate_steps
    sizes = sorted(set(world_sizes))
    uneven = [n for n in sizes if batch % n]
    if uneven:
        every = math.lcm(*sizes)
        raise ConfigError(
            f"train.global_batch={batch} does not split evenly over {_listed(uneven)} ranks"
            + (f" (the job may run with {sizes[0]} to {sizes[-1]})" if len(sizes) > 1 else "")
            + f"; choose a multiple of {every}, e.g. {every * math.ceil(batch / every)}"
            + (f", or a number of ranks that divides {batch}" if len(sizes) == 1 else "")
        )
    for n in sizes:
        if local_batch_size(batch, n) % accumulate:
            raise ConfigError(
                f"train.accumulate_steps={accumulate} must divide the per-rank batch "
                f"({local_batch_size(batch, n)} = train.global_batch {batch} / {n} ranks)"
            )


def _listed(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:-1])) + (" or " if len(numbers) > 1 else "") + str(numbers[-1])


def rules(section_field: dataclasses.Field) -> dict:
    """The field's declared rules: "one_of" resolved to a tuple, bounds as declared."""
    declared = dict(section_field.metadata)
    if callable(declared.get("one_of")):
        declared["one_of"] = tuple(declared["one_of"]())
    return declared


def accepted(declared: dict) -> str:
    """What a field's rules accept, in words: 'one of a, b' or 'at least 1 and less than 2'."""
    if "one_of" in declared:
        return "one of " + ", ".join(map(str, declared["one_of"]))
    words = {"min": "at least", "above": "greater than", "max": "at most", "below": "less than"}
    return " and ".join(f"{words[k]} {declared[k]}" for k in words if k in declared)


def _obeys(declared: dict, value) -> bool:
    if "one_of" in declared:
        return value in declared["one_of"]
    return (
        value >= declared.get("min", value)
        and value <= declared.get("max", value)
        and ("above" not in declared or value > declared["above"])
        and ("below" not in declared or value < declared["below"])
    )


def check_section(name: str, section) -> None:
    """Every field of one section against its declared rules; ConfigError names the key, value and accepted."""
    for section_field in dataclasses.fields(section):
        declared, value = rules(section_field), getattr(section, section_field.name)
        if declared and not _obeys(declared, value):
            raise ConfigError(f"{name}.{section_field.name} must be {accepted(declared)}, got {value!r}")


def _section(name: str, default, values: dict):
    fields = {f.name: f for f in dataclasses.fields(default)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {sorted(f'{name}.{k}' for k in unknown)}; {name} accepts: {', '.join(sorted(fields))}"
        )
    checked = {key: _typed(f"{name}.{key}", getattr(default, key), value) for key, value in values.items()}
    section = dataclasses.replace(default, **checked)
    check_section(name, section)
    return section


def _typed(key: str, default, value):
    """Coerces value to the type of the default (int -> float allowed); anything else is an error."""
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and value is None:
        return ""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {kind.__name__}, got {value!r} ({type(value).__name__})")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return value


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def save(config: Config, path: str) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False)
