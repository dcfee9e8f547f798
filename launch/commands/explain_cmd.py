"""`twostream predict --explain OUT`: per video or feed, its score over time and Grad-CAM contact sheets (PNG).

The exported SavedModel serves scores but hides the feature maps Grad-CAM needs, so the Keras model is rebuilt from
the model section (the export's twostream.json, else the workdir's config.yaml, else the config.yaml beside the
export folder) and given the SavedModel's weights (trainer/video/export.py load_keras). What is drawn:
trainer/video/explain.py.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from twostream.data.decode.boxes import Track
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.launch.commands.predict import PredictError
from twostream.models.spec import ModelSpec


def model_spec(meta: dict, model_folder: str, workdir: str | None) -> ModelSpec:
    """The model section the export was trained with: from its metadata, else a training config.yaml."""
    known = {f.name for f in dataclasses.fields(ModelSpec)}
    if "model" in meta:
        return ModelSpec(**{k: v for k, v in meta["model"].items() if k in known})
    from twostream.trainer import config as config_lib

    for folder in (workdir, os.path.dirname(os.path.abspath(model_folder))):
        if folder and os.path.isfile(os.path.join(folder, "config.yaml")):
            return config_lib.load(path=os.path.join(folder, "config.yaml")).model
    raise PredictError(
        f"--explain rebuilds the model, and {model_folder!r} does not say which (an export written before "
        "--explain existed): pass --workdir of the run that trained it"
    )


@dataclass(frozen=True)
class ExplainOptions:
    """predict's --explain OUT_DIR, --explain-class, --explain-clips and --hop."""

    out_dir: str
    target: str | None = None  # the class explained; None: each video's prediction
    clips: int = 3  # windows drawn with Grad-CAM per video
    hop: int = 0  # frames between windows; 0: half a window


class Explainer:
    """Writes each video's (or feed's) evidence pictures to options.out_dir (trainer/video/explain.py)."""

    def __init__(self, loaded, meta: dict, model_folder: str, workdir: str | None, options: ExplainOptions):
        from twostream.models.gradcam import GradCam
        from twostream.trainer.video.export import load_keras

        self.class_names, target = meta["class_names"], options.target
        if target is not None and target not in self.class_names:
            raise PredictError(f"--explain-class {target!r} is not a class of the model: {', '.join(self.class_names)}")
        if options.clips < 1:
            raise PredictError(f"--explain-clips must be at least 1, got {options.clips}")
        self.target = None if target is None else self.class_names.index(target)
        self.loader = ClipLoader(ClipSpec(**meta["clip"]))
        self.gradcam = GradCam(load_keras(loaded, meta, model_spec(meta, model_folder, workdir)))
        self.out_dir, self.clips = options.out_dir, options.clips
        self.hop = self.loader.window_hop(options.hop)
        self.names: set[str] = set()

    def evidence(self):
        """An empty Evidence for one video or feed."""
        from twostream.trainer.video.explain import Evidence

        return Evidence(self.class_names, self.clips, self.target)

    def video(self, path: str, track: Track | None = None) -> dict:
        """Scores every window of `path` and writes its pictures; returns what its .explain.json holds."""
        from twostream.trainer.video import explain

        evidence = self.evidence()
        explain.score(path, self.gradcam, self.loader, evidence, self.hop, track)
        return self.write(evidence, os.path.splitext(os.path.basename(path))[0])

    def write(self, evidence, name: str) -> dict:
        """The pictures of `evidence` under `name` (numbered when a video of the same name came before)."""
        from twostream.trainer.video import explain

        unique, n = name, 1
        while unique in self.names:
            n += 1
            unique = f"{name}_{n}"
        self.names.add(unique)
        return {"name": unique, **explain.write(evidence, self.gradcam, self.loader, self.out_dir, unique)}
