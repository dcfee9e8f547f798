"""The typed config tree, YAML presets shipped with the package, and `--set section.key=value` overrides."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources

import yaml

from twostream.data.clips import ClipSpec
from twostream.models.two_stream import ModelSpec


VIDEO_AGGREGATES = ("mean", "max")   # how a video's clip probabilities become one (trainer/metrics.py)


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key and what is accepted."""


@dataclass(frozen=True)
class DataConfig:
    root: str = ""                    # dataset folder: sub-folder per class, or holding manifest.csv / metadata.json
    manifest: str = ""                # a .csv (path,label[,split][,video_id]) or DFDC metadata.json; empty = auto-detect
    val_fraction: float = 0.2         # share of source videos held out for evaluation
    num_actors: int = 0               # Ray decode actors per rank; 0 = one per spare core on this node
    cpus_per_actor: float = 1.0       # Ray CPU reservation per actor
    clips_per_call: int = 8           # clips decoded per actor call (amortises Ray's per-call overhead)
    ray_address: str = ""             # join this Ray cluster; empty = $RAY_ADDRESS or a private local Ray
    object_store_mb: int = 1024       # object store of a private local Ray, MiB
    max_failed_fraction: float = 0.05  # stop when more than this share of a rank's clips fail in an epoch
    flow_cache_dir: str = ""          # cache each video's flow here (fill it with `twostream prepare`); empty = off
    flow_cache_gb: float = 20.0       # the cache's size bound; least recently used videos are evicted past it


@dataclass(frozen=True)
class TrainConfig:
    global_batch: int = 16            # clips per optimizer step, summed over all ranks
    epochs: int = 5
    optimizer: str = "adamw"          # adamw | sgd
    lr: float = 1e-3                  # peak learning rate of a world of one; see scale_lr_with_world
    scale_lr_with_world: bool = True  # Horovod's linear rule: lr x world size (keep the per-rank batch fixed)
    schedule: str = "constant"        # after warmup: constant | cosine (to 0 at the last step) | step
    warmup_epochs: float = 0.0        # linear warmup from 0 to the peak over this many epochs
    step_decay_epochs: int = 30       # step schedule: multiply the lr by step_decay_factor every this many epochs
    step_decay_factor: float = 0.1
    accumulate_steps: int = 1         # micro-batches per rank per optimizer step (divides the local batch)
    clip_grad_norm: float = 0.0       # clip averaged gradients to this global norm (0: off)
    label_smoothing: float = 0.0
    on_nonfinite: str = "stop"        # NaN/Inf loss: stop every rank, or skip the update on every rank
    momentum: float = 0.9             # sgd only
    weight_decay: float = 1e-4        # decoupled (adamw) / L2-free decay (sgd), per step x lr
    seed: int = 0                     # shuffling, clip sampling and weight initialisation
    checkpoint_every: int = 0         # also checkpoint every N steps (0: at epoch ends only)
    keep_checkpoints: int = 3
    eager: bool = False               # run steps eagerly (debugging) instead of as tf.function
    debug: bool = False               # deterministic ops, and the first batch's shapes/dtypes logged (`--debug`)
    fp16_allreduce: bool = False      # compress gradients to float16 for the allreduce
    eval_views: int = 1               # evaluation: clips per validation video, evenly spread over it
    video_aggregate: str = "mean"     # evaluation: a video's class probabilities from its clips' (mean | max)
    elastic: bool = False             # Horovod elastic: survive lost ranks, take added ones (horovodrun --min-np)
    elastic_commit_every: int = 10    # elastic: commit the state in memory every N steps (work lost on a failure)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    clip: ClipSpec = field(default_factory=ClipSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)


def preset_names() -> list[str]:
    folder = resources.files("twostream.trainer") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load(preset: str | None = None, path: str | None = None, overrides: list[str] = ()) -> Config:
    """Defaults <- preset (a shipped YAML) <- file at `path` <- overrides ("section.key=value")."""
    tree: dict = {}
    if preset:
        if preset not in preset_names():
            raise ConfigError(f"unknown preset {preset!r}; shipped presets: {', '.join(preset_names())}")
        _merge(tree, yaml.safe_load((resources.files("twostream.trainer") / "presets" / f"{preset}.yaml").read_text()))
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file {path!r} not found")
        _merge(tree, yaml.safe_load(open(path)) or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.epochs=3")
        section, name = key.split(".", 1)
        _merge(tree, {section: {name: yaml.safe_load(value)}})
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
    defaults = Config()
    built = {name: _section(name, getattr(defaults, name), tree.get(name) or {}) for name in sections}
    return _check_values(Config(**built))


def _check_values(config: Config) -> Config:
    """Value checks that the types alone cannot make."""
    if config.train.eval_views < 1:
        raise ConfigError(f"train.eval_views must be at least 1 (clips per validation video), "
                          f"got {config.train.eval_views}")
    if config.train.video_aggregate not in VIDEO_AGGREGATES:
        raise ConfigError(f"train.video_aggregate must be one of {', '.join(VIDEO_AGGREGATES)}, "
                          f"got {config.train.video_aggregate!r}")
    return config


def _section(name: str, default, values: dict):
    fields = {f.name: f for f in dataclasses.fields(default)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(f'{name}.{k}' for k in unknown)}; "
                          f"{name} accepts: {', '.join(sorted(fields))}")
    checked = {key: _typed(f"{name}.{key}", getattr(default, key), value) for key, value in values.items()}
    try:
        return dataclasses.replace(default, **checked)
    except ValueError as error:       # a section's own check (e.g. a negative clip.sample_fps)
        raise ConfigError(str(error)) from error


def _typed(key: str, default, value):
    """Coerces value to the type of the default (int -> float allowed); anything else is an error."""
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and value is None:
        return ""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {kind.__name__}, got {value!r} ({type(value).__name__})")
    return value


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def save(config: Config, path: str) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False)
