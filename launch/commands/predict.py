"""`twostream predict`: scores video files with an exported model: decode, flow, model, clips aggregated per video.

Runs in this process (no Ray): data/decode/clips.py's ClipLoader cuts `views` evenly spread clips of each video, each at
`crops` places along the long side (the exported clip settings: short-side resize or squash, then crops), exactly
as evaluation does, the SavedModel's `serve` gives each clip's class probabilities, and
trainer/video/metrics.py aggregates them into the video's.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass

import numpy as np

from twostream.data.decode.boxes import BoxError, BoxTracks
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.sampling import EvalView
from twostream.data.manifest import VideoRecord
from twostream.trainer.video import metrics


class PredictError(ValueError):
    """The model folder or an option is wrong; the message says what to pass instead."""


@dataclass
class VideoPrediction:
    path: str
    prediction: str | None = None  # the most probable class; None when the video failed
    probabilities: dict | None = None  # class name -> probability, aggregated over the views
    views: int = 0  # clips scored (views x spatial crops)
    error: str | None = None  # why the video could not be scored
    sequential: bool = False  # read from the start: its seeks disagree with such a read
    explained: str | None = None  # --explain: the name its pictures start with in OUT_DIR


def resolve(model: str | None, workdir: str | None, views: int | None, aggregate: str | None):
    """(model folder, views, aggregate): a workdir gives its export/ (the best model the run selected, else its
    last) and the evaluation settings it trained with (eval.views, eval.video_aggregate); options given
    explicitly win; otherwise 1 view, mean. Spatial crops: see crops_of."""
    defaults = (1, "mean")
    if workdir:
        from twostream.trainer import config as config_lib

        model = model or os.path.join(workdir, "export")
        if os.path.isfile(os.path.join(workdir, "config.yaml")):
            settings = config_lib.load(path=os.path.join(workdir, "config.yaml")).eval
            defaults = (settings.views, settings.video_aggregate)
    if not model:
        raise PredictError("pass --model EXPORT_FOLDER or --workdir WORKDIR (a `twostream train` workdir)")
    views, aggregate = views or defaults[0], aggregate or defaults[1]
    if views < 1:
        raise PredictError(f"--views must be at least 1, got {views}")
    if aggregate not in metrics.AGGREGATES:
        raise PredictError(f"--aggregate must be one of {', '.join(metrics.AGGREGATES)}, got {aggregate!r}")
    return model, views, aggregate


def crops_of(workdir: str | None) -> int:
    """The workdir's eval.spatial_crops (1, the centre crop, without a workdir config)."""
    if workdir and os.path.isfile(os.path.join(workdir, "config.yaml")):
        from twostream.trainer import config as config_lib

        return config_lib.load(path=os.path.join(workdir, "config.yaml")).eval.spatial_crops
    return 1


def load_model(folder: str):
    """(loaded SavedModel, metadata) of an export folder, or a PredictError saying what is missing."""
    from twostream.trainer.video import export as export_lib  # TensorFlow: loaded once the options are checked

    if not os.path.isfile(os.path.join(folder, "saved_model.pb")) or not os.path.isfile(
        os.path.join(folder, export_lib.META_FILE)
    ):
        raise PredictError(
            f"{folder!r} is not an exported model (it needs saved_model.pb and "
            f"{export_lib.META_FILE}); `twostream train` writes one to WORKDIR/export"
        )
    return export_lib.load(folder)


def predict(
    paths: list[str],
    model_folder: str,
    views: int = 1,
    aggregate: str = "mean",
    crops: int = 1,
    boxes=None,
    explain=None,
    workdir: str | None = None,
) -> list[VideoPrediction]:
    """One VideoPrediction per path, in order; a video that cannot be read gets its error, not an exception.
    `boxes`: data/decode/boxes.py BoxTracks with the videos' regions (by file stem), for a model trained on regions.
    `explain`: explain_cmd.ExplainOptions, to write each video's evidence pictures."""
    loaded, meta = load_model(model_folder)
    explainer = None
    if explain is not None:
        from twostream.launch.commands.explain_cmd import Explainer

        explainer = Explainer(loaded, meta, model_folder, workdir, explain)
    class_names = meta["class_names"]
    loader = ClipLoader(ClipSpec(**meta["clip"]))  # no flow cache: each video's flow is computed once here
    results = []
    for path in paths:
        try:
            track = boxes.for_record(VideoRecord(path, 0, "")) if boxes is not None else None
            clips = [
                loader.load(path, EvalView(clip, views, crop, crops), track)
                for clip in range(views)
                for crop in range(crops)
            ]
        except Exception as error:  # any unreadable file is reported for this video; the others still run
            message = str(error) if path in str(error) else f"{path}: {error}"
            results.append(VideoPrediction(path, error=message))
            continue
        rgb, flow = (np.stack(stream) for stream in zip(*clips))
        probabilities = loaded.serve(rgb, flow)["probabilities"].numpy().astype(np.float64)
        video = metrics.aggregate_views(probabilities, aggregate)
        result = VideoPrediction(
            path,
            class_names[int(np.argmax(video))],
            dict(zip(class_names, video.tolist())),
            len(clips),
            sequential=loader.read_sequentially(path),
        )
        if explainer is not None:
            try:
                result.explained = explainer.video(path, track)["name"]
            except Exception as error:  # scored, but its pictures failed: said, and the others still run
                result.error = f"{path}: --explain: {error}"
        results.append(result)
    return results


def box_tracks(source: str | None, workdir: str | None) -> BoxTracks | None:
    """The tracks at `source` (widened by the workdir's data.box_margin, else its default), or None."""
    if not source:
        return None
    from twostream.trainer import config as config_lib

    config_path = os.path.join(workdir, "config.yaml") if workdir else ""
    margin = (config_lib.load(path=config_path) if os.path.isfile(config_path) else config_lib.Config()).data.box_margin
    try:
        return BoxTracks(source, margin)
    except BoxError as error:
        raise PredictError(f"--boxes: {error}") from None


def run(
    paths: list[str],
    model: str | None = None,
    workdir: str | None = None,
    views: int | None = None,
    aggregate: str | None = None,
    as_json: bool = False,
    boxes: str | None = None,
    explain=None,
) -> int:
    """The command: one line per video (or one JSON object) on stdout, errors on stderr; 1 if any video failed.

    `boxes`: box tracks (data.boxes' format) of these videos, for a model trained on regions of interest.
    `explain`: explain_cmd.ExplainOptions: each video's score over time and Grad-CAM pictures."""
    model, views, aggregate = resolve(model, workdir, views, aggregate)
    tracks = box_tracks(boxes, workdir)
    results = predict(paths, model, views, aggregate, crops_of(workdir), tracks, explain, workdir)
    if as_json:
        print(
            json.dumps(
                {"model": model, "views": views, "aggregate": aggregate, "videos": [asdict(r) for r in results]},
                indent=2,
            )
        )
    for result in results:
        if result.error:
            print(f"twostream predict: error: {result.error}", file=sys.stderr)
        if result.probabilities is not None and not as_json:
            scores = "  ".join(f"{name} {p:.4f}" for name, p in result.probabilities.items())
            print(f"{result.path}\t{result.prediction}\t{scores}")
    if explain is not None:
        print(f"twostream predict: evidence pictures in {explain.out_dir}", file=sys.stderr)
    sequential = sum(r.sequential for r in results)
    if sequential:  # correct, only slower: each of their clips decodes from the start
        print(
            f"twostream predict: {sequential} of {len(results)} videos read from the start (their seeks disagree "
            "with a read from the start)",
            file=sys.stderr,
        )
    return 1 if any(r.error for r in results) else 0
