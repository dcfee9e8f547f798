"""The `twostream` command line: synth, train, evaluate, predict, launch, config, doctor, models, prepare.

Also `python -m twostream.launch`. A ConfigError (any wrong config value), LaunchError, ManifestError or
ShardingError ends any command with one line on stderr and exit status 2, before anything starts."""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile

# ------------------------------------------------------------------ start-up chatter (one home: here, before imports)
VERBOSE_ENV = "TWOSTREAM_VERBOSE"  # set by --verbose; inherited by the ranks and actors a command starts
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}  # TensorFlow's C++ INFO/WARNING lines (Python's are kept)
# Lines TensorFlow's native libraries write while they load, whatever TF_CPP_MIN_LOG_LEVEL says: absl's notice that
# logging is not initialised, the oneDNN and CPU-feature INFO lines, and the CPU-instructions note that follows.
NOISE_PREFIXES = (
    "WARNING: All log messages before absl::InitializeLog()",
    "I0000 ",
    "To enable the following instructions:",
)
QUIET_IMPORTS = ("tensorflow",)  # packages whose first import is run with that output filtered
RAY_QUIET_LOGGERS = ("ray._private.authentication.authentication_token_setup",)  # the token-auth banner


def verbose_requested(argv: list[str]) -> bool:
    return "--verbose" in argv or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


class _FilteredFirstImport(importlib.abc.MetaPathFinder):
    """Runs the first import of QUIET_IMPORTS with file descriptor 2 captured (the native libraries write to it
    directly), then writes back every captured line except NOISE_PREFIXES ones, so real errors still show."""

    def find_spec(self, name, path=None, target=None):
        if name not in QUIET_IMPORTS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        load = spec.loader.exec_module

        def exec_module(module):
            with _stderr_filtered():
                load(module)

        spec.loader.exec_module = exec_module
        return spec


class _stderr_filtered:
    def __enter__(self):
        sys.stderr.flush()
        self.saved, self.captured = os.dup(2), tempfile.TemporaryFile()
        os.dup2(self.captured.fileno(), 2)

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.captured.seek(0)
        kept = [
            line
            for line in self.captured.read().decode(errors="replace").splitlines(keepends=True)
            if not line.startswith(NOISE_PREFIXES)
        ]
        self.captured.close()
        sys.stderr.write("".join(kept))
        return False


def quiet_start(argv: list[str]) -> None:
    """Start-up chatter off (TensorFlow's native lines, Ray's token banner) unless --verbose or $TWOSTREAM_VERBOSE."""
    if verbose_requested(argv):
        os.environ[VERBOSE_ENV] = "1"
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _FilteredFirstImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _FilteredFirstImport())
    import logging

    for name in RAY_QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


quiet_start(sys.argv[1:])

# after the start-up chatter set-up above (E402 for all of them)
from twostream.data.decode.boxes import PICKS  # noqa: E402 (NumPy only)
from twostream.launch import config_args  # noqa: E402
from twostream.launch.commands import doctor, models_cmd, prepare_cmd  # noqa: E402
from twostream.launch.jobs import horovod_cmd, k8s, ray_job, slurm  # noqa: E402
from twostream.launch.jobs.horovod_cmd import LaunchError  # noqa: E402
from twostream.launch.records import print_record  # noqa: E402
from twostream.trainer.video.metrics import AGGREGATES  # noqa: E402 (NumPy only)


def cmd_synth(args) -> int:
    if args.kind == "realistic":
        return _synth_realistic(args)
    if args.like_real:
        print("twostream synth: error: --like-real goes with --kind realistic", file=sys.stderr)
        return 2
    from twostream.data.make.synthetic import SynthSpec, synthesize

    spec = SynthSpec(
        num_videos=args.num_videos or 600, frames=args.frames or 20, size=args.size, codec=args.codec, seed=args.seed
    )
    paths = synthesize(args.out_dir, spec)
    print(
        f"wrote {len(paths)} videos ({spec.codec}, {spec.frames} frames of {spec.size}x{spec.size}) to {args.out_dir}"
    )
    return 0


def _synth_realistic(args) -> int:
    from twostream.data.make.synthetic_scenes import LIKE_REAL_FAKES, SceneSpec, synthesize_scenes

    given = {
        "num_videos": args.num_videos,
        "frames": args.frames,
        "width": args.width,
        "height": args.height,
        "scenes": args.scenes,
        "val_scenes": args.val_scenes,
        "region": args.region,
        "jitter": args.jitter,
        "flicker": args.flicker,
    }
    base = LIKE_REAL_FAKES if args.like_real else {}  # the flags given still win over it
    spec = SceneSpec(codec=args.codec, seed=args.seed, **{**base, **{k: v for k, v in given.items() if v is not None}})
    if spec.problems():
        print("twostream synth: error: " + "; ".join(spec.problems()), file=sys.stderr)
        return 2
    rows = synthesize_scenes(args.out_dir, spec)
    print(
        f"wrote {len(rows)} videos ({spec.codec}, {spec.frames} frames of {spec.width}x{spec.height}, "
        f"{spec.scenes} scenes, {spec.val_scenes} held out) and their box files to {args.out_dir}; "
        f"manifest: {os.path.join(args.out_dir, 'manifest.csv')}"
    )
    return 0


def cmd_train(args) -> int:
    config = config_args.load_config(args)  # every value checked before TensorFlow, Ray or Horovod start
    from twostream.data.manifest import from_config
    from twostream.trainer.video.select_check import check_select_metric

    check_select_metric(config, len(from_config(config.data).class_names))  # the dataset too, before Ray starts
    from twostream.trainer import dist
    from twostream.trainer.runtime.preemption import EXIT_CODE, Preempted
    from twostream.trainer.video.video_task import train

    try:
        metrics, _ = train(config, args.workdir)
    except Preempted as stopped:  # checkpoint saved; a scheduler requeues on this exit status
        print(f"twostream train: {stopped}", file=sys.stderr)
        return EXIT_CODE
    if dist.is_chief():  # one result per job, not one per rank (elastic: the chief at the end)
        print_record({"final": metrics})
    return 0


def cmd_config(args) -> int:
    """Prints the resolved config as YAML: the same loader and checks as `twostream train`."""
    import yaml

    from twostream.trainer import config as config_lib

    config = config_args.load_config(args, need_data=False)
    if args.np:
        config_lib.check_world(config, [args.np])
    print(yaml.safe_dump(config_lib.to_dict(config), sort_keys=False), end="")
    return 0


def cmd_evaluate(args) -> int:
    from twostream.launch.commands.evaluate_cmd import evaluate_workdir

    overrides = list(args.overrides) + ([f"data.root={args.data}"] if args.data else [])
    metrics = evaluate_workdir(args.workdir, overrides, checkpoint=args.checkpoint)
    print_record({"eval": metrics})
    return 0


def cmd_predict(args) -> int:
    from twostream.launch.commands.predict import PredictError, run

    try:
        if args.hop is not None and args.hop < 1:  # --stream's and --explain's windows
            raise PredictError(f"--hop must be at least 1 frame, got {args.hop}")
        if args.stream:
            return predict_stream(args)
        if not args.videos:
            raise PredictError("give the video files to score, or --stream SOURCE for a live feed")
        if args.detect_faces:
            raise PredictError("--detect-faces goes with --stream; for files, `prepare --detect-faces` and --boxes")
        return run(
            args.videos,
            args.model,
            args.workdir,
            args.views,
            args.aggregate,
            as_json=args.json,
            boxes=args.boxes,
            explain=explain_options(args),
        )
    except PredictError as error:
        print(f"twostream predict: error: {error}", file=sys.stderr)
        return 2


def explain_options(args):
    """predict's --explain options, or None without --explain."""
    from twostream.launch.commands.explain_cmd import ExplainOptions
    from twostream.launch.commands.predict import PredictError

    if not args.explain:
        if args.explain_class or args.explain_clips is not None:
            raise PredictError("--explain-class and --explain-clips go with --explain OUT_DIR")
        return None
    clips = 3 if args.explain_clips is None else args.explain_clips
    return ExplainOptions(args.explain, args.explain_class, clips, args.hop or 0)


def predict_stream(args) -> int:
    from twostream.launch.commands.predict import PredictError, resolve
    from twostream.launch.commands.stream import score_feed

    if args.videos:
        raise PredictError("give video files or --stream SOURCE, not both")
    if args.box_margin < 0:
        raise PredictError(f"--box-margin must be 0 or more, got {args.box_margin}")
    if args.stream_timeout <= 0:
        raise PredictError(f"--stream-timeout must be positive, got {args.stream_timeout}")
    model, _, _ = resolve(args.model, args.workdir, 1, None)
    explain = explain_options(args)
    faces = live_faces(args)
    return score_feed(
        args.stream, model, args.hop or 0, args.stream_timeout, explain=explain, workdir=args.workdir, faces=faces
    )


def live_faces(args):
    """--stream --detect-faces: the face tracker that cuts each window around the followed face, or None."""
    from twostream.launch.commands.predict import PredictError

    if not args.detect_faces:
        return None
    from twostream.data.make.faces import FaceModelError, LiveFaceTrack, load_detector

    try:
        detector = load_detector(args.detect_faces)
    except FaceModelError as error:
        raise PredictError(str(error)) from None
    return LiveFaceTrack(detector, args.pick_face, args.box_margin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twostream", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the libraries' start-up messages (TensorFlow, absl, oneDNN, Ray's token banner); any position",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser(
        "synth", help="write a synthetic video dataset (real/fake): the demo's motion-defined set, or --kind realistic"
    )
    synth.add_argument("out_dir")
    synth.add_argument(
        "--kind",
        choices=["demo", "realistic"],
        default="demo",
        help="demo: square frames whose motion fills them; realistic: non-square frames, moving camera, "
        "a small face-like region, several scenes split by scene, box files, manifest.csv",
    )
    synth.add_argument("--num-videos", type=int, help="default: 600 (demo), 96 (realistic)")
    synth.add_argument("--frames", type=int, help="frames per video; default: 20 (demo), 16 (realistic)")
    synth.add_argument("--size", type=int, default=64, help="demo: frame side, pixels")
    synth.add_argument("--width", type=int, help="realistic: frame width, pixels (default 160)")
    synth.add_argument("--height", type=int, help="realistic: frame height, pixels (default 120)")
    synth.add_argument("--scenes", type=int, help="realistic: sources (backgrounds, cameras); default 6")
    synth.add_argument("--val-scenes", type=int, help="realistic: scenes held out as the val split; default 2")
    synth.add_argument("--region", type=int, help="realistic: face-like region height, pixels (default 32)")
    synth.add_argument("--jitter", type=float, help="realistic: std of the region's offset, pixels (default 0.6)")
    synth.add_argument(
        "--flicker", type=float, help="realistic: std of the region's brightness, grey levels (default 5)"
    )
    synth.add_argument(
        "--like-real",
        action="store_true",
        help="realistic: fakes with only a per-frame offset of the region (no flicker, scale change or lag), as hard "
        "for the CPU-size footage recipe as fakes made from real footage (docs/data.md)",
    )
    synth.add_argument("--codec", default="mjpg", choices=["mjpg", "mp4v"])
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=cmd_synth)

    train = commands.add_parser("train", help="train (a world of one, or of N under horovodrun -np N)")
    config_args.add_config_args(train)
    train.add_argument("--workdir", required=True, help="checkpoints, logs and export; a rerun resumes here")
    train.set_defaults(run=cmd_train)

    config = commands.add_parser(
        "config", help="print the resolved config (preset <- --config <- --set) as YAML, checked like `twostream train`"
    )
    config_args.add_config_args(config)
    config.add_argument("-np", "--num-proc", dest="np", type=int, help="also check the config for this many ranks")
    config.set_defaults(run=cmd_config)

    evaluate = commands.add_parser(
        "evaluate", help="evaluate a workdir's best (or latest) checkpoint on held-out videos"
    )
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument("--data", help="dataset folder (default: the one the run trained on)")
    evaluate.add_argument(
        "--checkpoint",
        choices=["best", "latest"],
        default="best",
        help="best: the epoch train.select_metric chose (the latest where none was); or latest",
    )
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    evaluate.set_defaults(run=cmd_evaluate)

    predict = commands.add_parser(
        "predict", help="score video files with an exported model (decode, flow, model, clips aggregated per video)"
    )
    predict.add_argument("videos", nargs="*", metavar="VIDEO")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="an exported model folder (WORKDIR/export: the best; WORKDIR/export_last)")
    source.add_argument("--workdir", help="a training workdir: its export/, views and aggregation")
    predict.add_argument(
        "--views", type=int, help="evenly spread clips per video (default: the workdir's eval.views, else 1)"
    )
    predict.add_argument(
        "--aggregate",
        choices=AGGREGATES,
        help="how clip probabilities make the video's (default: eval.video_aggregate, else mean)",
    )
    predict.add_argument(
        "--boxes",
        help="box tracks of these videos (a folder of <video>.csv or a .json, as "
        "data.boxes) for a model trained on regions of interest",
    )
    predict.add_argument("--json", action="store_true", help="print one JSON object instead of one line per video")
    predict.add_argument(
        "--stream",
        metavar="SOURCE",
        help="score a live feed instead of files: a URL FFmpeg reads (udp://, rtsp://, http://), a v4l2 device "
        "(/dev/video0) or - for standard input; one JSON line per window of the model's clip",
    )
    predict.add_argument(
        "--hop", type=int, help="--stream and --explain: frames between windows (default: half a window)"
    )
    predict.add_argument(
        "--detect-faces",
        nargs="?",
        const="builtin",
        metavar="MODEL.onnx",
        help="--stream: follow a face through the feed and cut each window around it, as a model trained on face "
        "tracks (data.boxes) expects; alone (or `builtin`): the built-in detector, or a YuNet ONNX file",
    )
    predict.add_argument(
        "--pick-face",
        choices=PICKS,
        default="largest",
        help="--detect-faces: the face to follow where none is followed yet (default: the largest)",
    )
    predict.add_argument(
        "--box-margin",
        type=float,
        default=0.2,
        help="--detect-faces: the face box widened by this share of its side, each side (data.box_margin; 0.2)",
    )
    predict.add_argument(
        "--stream-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="--stream: the feed has ended when no frame came for this long (default 10)",
    )
    predict.add_argument(
        "--explain",
        metavar="OUT_DIR",
        help="also write, per video (or feed), its score over time (NAME.scores.png) and Grad-CAM over its frames "
        "and flow for the windows with the strongest evidence (NAME.cam1.png, ...), with NAME.explain.json",
    )
    predict.add_argument(
        "--explain-class",
        metavar="CLASS",
        help="--explain: the class whose evidence is shown (default: the prediction)",
    )
    predict.add_argument(
        "--explain-clips", type=int, metavar="N", help="--explain: windows drawn with Grad-CAM per video (default 3)"
    )
    predict.set_defaults(run=cmd_predict)

    launch = commands.add_parser("launch", help="start training: horovodrun, a Ray cluster, SLURM or Kubernetes")
    launchers = launch.add_subparsers(dest="launcher", required=True)
    for launcher in (horovod_cmd, ray_job, slurm, k8s):
        launcher.add_parser(launchers)
    doctor.add_parser(commands)
    models_cmd.add_parser(commands)
    prepare_cmd.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the `twostream` command, whose process ends with it
        # Last at exit: the interpreter's final collection walks TensorFlow's and Keras's objects, 1.1 s of CPU at
        # every command's end; frozen, they are freed with the process instead.
        atexit.register(gc.freeze)
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_start(argv)
    args = build_parser().parse_args([a for a in argv if a != "--verbose"])
    from twostream.data.distributed.sharding import ShardingError
    from twostream.data.manifest import ManifestError
    from twostream.models.spec import WeightsFileError  # model.weights / model.pretrained not on disk
    from twostream.trainer.config import ConfigError
    from twostream.trainer.engine.errors import RunError  # a started run that cannot go on (bad clips, full disk)

    command = " ".join(filter(None, [args.command, getattr(args, "launcher", None)]))
    try:
        return args.run(args)
    except (ConfigError, ManifestError, ShardingError, LaunchError, WeightsFileError, ConnectionError) as error:
        print(f"twostream {command}: error: {error}", file=sys.stderr)
        return 2
    except RunError as error:
        print(f"twostream {command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stopped:  # Ctrl-C; train's message says where the rerun resumes
        print(f"twostream {command}: {stopped or 'interrupted (Ctrl-C)'}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it (preemption.INTERRUPTED_EXIT_CODE)


if __name__ == "__main__":
    sys.exit(main())
