"""Exports a trained model as a SavedModel whose `serve` signature takes raw uint8 RGB and flow clips."""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from twostream.data.decode.clip_spec import ClipSpec

META_FILE = "twostream.json"  # beside saved_model.pb: class names and the clip spec the model expects


def export(model: keras.Model, path: str, clip: ClipSpec, class_names: list[str]) -> None:
    """Writes PATH/saved_model.pb (+ variables) and PATH/twostream.json; serve(rgb, flow) -> probabilities."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda rgb, flow: {"probabilities": tf.nn.softmax(model({"rgb": rgb, "flow": flow}, training=False))},
        input_signature=[
            tf.TensorSpec((None, *clip.rgb_shape), tf.uint8, name="rgb"),
            tf.TensorSpec((None, *clip.flow_shape), tf.uint8, name="flow"),
        ],
    )
    archive.write_out(path, verbose=False)
    with open(os.path.join(path, META_FILE), "w") as f:
        json.dump({"class_names": list(class_names), "clip": clip.__dict__}, f, indent=2)


def load(path: str):
    """Returns (loaded SavedModel, metadata dict); call `loaded.serve(rgb, flow)`. Keep the loaded object
    alive while serving: its variables are freed with it."""
    with open(os.path.join(path, META_FILE)) as f:
        meta = json.load(f)
    return tf.saved_model.load(path), meta
