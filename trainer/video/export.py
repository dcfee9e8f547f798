"""Exports a trained model as a SavedModel whose `serve` signature takes raw uint8 RGB and flow clips."""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import tensorflow as tf

from twostream.data.decode.clip_spec import ClipSpec
from twostream.models.spec import ModelSpec

META_FILE = "twostream.json"  # beside saved_model.pb: class names, the clip spec the model expects, the model spec


def export(
    model: keras.Model, path: str, clip: ClipSpec, class_names: list[str], spec: ModelSpec | None = None
) -> None:
    """Writes PATH/saved_model.pb (+ variables) and PATH/twostream.json; serve(rgb, flow) -> probabilities.
    `spec` (the model section) lets load_keras rebuild the Keras model, e.g. for Grad-CAM."""
    archive = keras.export.ExportArchive()
    archive.track(model)  # also what keeps `variables` on the loaded archive, which load_keras reads
    archive.add_endpoint(
        name="serve",
        fn=lambda rgb, flow: {"probabilities": tf.nn.softmax(model({"rgb": rgb, "flow": flow}, training=False))},
        input_signature=[
            tf.TensorSpec((None, *clip.rgb_shape), tf.uint8, name="rgb"),
            tf.TensorSpec((None, *clip.flow_shape), tf.uint8, name="flow"),
        ],
    )
    archive.write_out(path, verbose=False)
    meta = {"class_names": list(class_names), "clip": clip.__dict__}
    if spec is not None:
        meta["model"] = dataclasses.asdict(spec)
    with open(os.path.join(path, META_FILE), "w") as f:
        json.dump(meta, f, indent=2)


def load(path: str):
    """Returns (loaded SavedModel, metadata dict); call `loaded.serve(rgb, flow)`. Keep the loaded object
    alive while serving: its variables are freed with it."""
    with open(os.path.join(path, META_FILE)) as f:
        meta = json.load(f)
    return tf.saved_model.load(path), meta


def load_keras(loaded, meta: dict, spec: ModelSpec) -> keras.Model:
    """The Keras model `spec` builds, in float32, holding the loaded SavedModel's weights (the served ones)."""
    from twostream.models.registry import build_model

    clip = ClipSpec(**meta["clip"])
    spec = dataclasses.replace(spec, pretrained="", weights="", precision="float32")  # every weight comes from here
    model = build_model(spec, len(meta["class_names"]), clip.rgb_shape, clip.flow_shape)
    saved = list(loaded.variables)
    shapes = [tuple(v.shape) for v in model.variables], [tuple(v.shape) for v in saved]
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"the exported weights ({len(saved)} variables) do not fit model {spec.name!r} "
            f"({len(model.variables)}): is the model section the one the export was trained with?"
        )
    for variable, value in zip(model.variables, saved):
        variable.assign(tf.cast(value, variable.dtype))
    return model
