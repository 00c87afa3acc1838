"""The ``hv`` command line. Commands are thin: parse flags, load the config once, call one function.

Errors from bad input (config, data, model files) become a one-line message and exit
code 1 here, at the boundary, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import traceback
from datetime import datetime
from pathlib import Path

from hv.bundled import CHECKOUT_KERAS_MODEL, DEFAULT_MODEL, SAMPLE_FIELDS
from hv.config import Config, ConfigError, load_config, override

log = logging.getLogger("hv")

REPO_ROOT = Path(__file__).resolve().parent.parent
# In a source checkout the repository's config.toml; an installed package has none and runs on
# the defaults written in hv/config.py (the same values).
DEFAULT_CONFIG = REPO_ROOT / "config.toml"
_MODEL_HELP = "a .keras or .tflite model (default: the bundled int8 TFLite model)"


def _abs(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


def _load(args: argparse.Namespace) -> Config:
    if args.config is None:  # no --config: the checkout's config.toml, or the defaults of an installed package
        config = load_config(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else Config()
    else:
        config = load_config(args.config)
    return override(config, **getattr(args, "overrides", {}))


def _classifier(model: str, config: Config):
    """Open the model; warn when the config cuts crops unlike those it was trained on (``training.trained_crop``)."""
    from hv.classifier import load_classifier

    _warn_on_crop_mismatch(model, config)
    return load_classifier(model)


def _warn_on_crop_mismatch(model: str, config: Config) -> None:
    from training.trained_crop import crop_mismatches, mismatch_text

    mismatches = crop_mismatches(model, config.locator)
    if mismatches:
        log.warning(mismatch_text(model, mismatches))


def cmd_train(args: argparse.Namespace) -> int:
    from training.train import train

    args.overrides = {
        "data.train_dirs": tuple(_abs(d) for d in args.data) if args.data else None,
        "train.seed": args.seed,
        "train.out_dir": _abs(args.out),
        "train.phase1.epochs": args.phase1_epochs,
        "train.phase2.epochs": args.phase2_epochs,
        "model.backbone": args.backbone,
        "model.weights": args.weights if args.weights in (None, "imagenet", "none") else _abs(args.weights),
        "data.input": args.input,
        "train.batch_size": args.batch_size,
        "train.strategy": args.strategy,
        "train.keep_epoch_models": args.keep_epoch_models or None,
        "data.val_fold": args.fold,
        "data.split_seed": args.split_seed,
    }
    config = _load(args)
    name = (
        args.name
        or f"{config.model.backbone}_{config.data.input}_seed{config.train.seed}_{datetime.now():%Y%m%d-%H%M%S}"
    )
    run_dir = train(config, Path(config.train.out_dir) / name)
    print(f"run written to {run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate

    args.overrides = {"data.input": args.input}
    config = _load(args)
    if args.held_out:
        metrics = _evaluate_held_out(args, config)
    else:
        data = args.data or list(config.data.test_dirs)
        if not data:
            raise ConfigError("no test data: pass --data FOLDER [FOLDER ...] or set data.test_dirs")
        metrics = evaluate(_classifier(args.model, config), data, config, Path(args.out), tta=args.tta)
    summary = {k: metrics[k] for k in ("accuracy", "macro_f1", "n_images", "flagged_share")}
    summary["per_class_recall"] = {k: round(v["recall"], 4) for k, v in metrics["per_class"].items() if v["support"]}
    for key in ("other", "sources"):
        if key in metrics:
            summary[key] = metrics[key]
    print(json.dumps(summary, indent=2))
    print(f"metrics, confusion matrix and mistakes written to {args.out}")
    return 0


def _evaluate_held_out(args: argparse.Namespace, config: Config) -> dict:
    """Score the training sources' images the model's training held out: validation, never a test set."""
    from training.evaluate import evaluate_sources
    from training.heldout import held_out_sources, model_split, saved_config

    if args.data:
        raise ConfigError("--held-out scores the images the model's training held out from data.train_dirs; "
                          "drop --data (or drop --held-out to score those folders)")
    if saved_config(args.model) is None:
        raise ConfigError(f"{args.model}: --held-out needs the config hv train saved beside the model (config.json "
                          "in its run folder, or <model>.config.json); pass such a .keras model with --model")
    split = model_split(args.model, config)
    if not len(split.held_out):
        raise ConfigError(f"{args.model}: its training held out no image it did not train on ({split.described})")
    log.info("scoring %d held-out images: %s", len(split.held_out), split.described)
    return evaluate_sources(_classifier(args.model, config), held_out_sources(split), config, Path(args.out),
                            tta=args.tta, data=split.described)


def cmd_classify(args: argparse.Namespace) -> int:
    from hv.field_images import classify_fields

    config = _load(args)
    images = [Path(p) for p in args.images] or sorted(SAMPLE_FIELDS.glob("*.jpg"))
    if not images:
        raise ConfigError("no images given and no bundled samples found; pass image files")
    classify_fields(_classifier(args.model, config), images, config, Path(args.out))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from mobile.export import export

    args.overrides = {"export.qat_steps": args.qat_steps}
    config = _load(args)
    report = export(
        Path(args.model),
        config,
        Path(args.out),
        ship=args.ship,
        calibration_images=args.calibration_images,
        verify_images=args.verify_images,
        verify_data=_abs(args.data),
        lab_data=args.lab_data or (),
    )
    print((Path(args.out) / "verification.md").read_text())
    print(f"app package ({report['shipped']}) written to {Path(args.out) / 'package'}")
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from training.data import DataError
    from training.lab_adaptation import CHECK_CELLS, DEFAULT_LAYERS, ShiftCheck, adapt, check
    from training.lab_tuning import flagged_text, per_class_text
    from training.self_training import own_calls_text

    config = _load(args)
    _warn_on_crop_mismatch(args.model, config)  # adapting on crops cut otherwise re-estimates the wrong statistics
    if args.check:
        if args.training_data or args.layers or args.labelled or args.self_train:
            raise DataError("hv adapt --check measures a model that holds its training labs' statistics (hv train "
                            "stores them) and changes no layer: leave out --training-data, --layers, --labelled and "
                            "--self-train")
        print(check(Path(args.model), args.data, config, max_cells=args.max_cells).describe())
        return 0
    if not args.out:
        raise DataError("hv adapt: give --out ADAPTED.keras for the adapted model, or --check to only see "
                        "whether these cells need it")
    report = adapt(Path(args.model), args.data, config, Path(args.out), layers=args.layers or DEFAULT_LAYERS,
                   max_cells=args.max_cells, training_data=args.training_data, labelled=args.labelled,
                   self_train=args.self_train)
    skipped = f", {len(report.unreadable)} unreadable images skipped" if report.unreadable else ""
    rebased = (f", after rebasing on {report.training_cells} training cells" if report.training_cells else
               "; the model was taken to hold its training lab's statistics (hv train since 2026-12-04 and the "
               "bundled model do): for an older one, add --training-data")
    print(f"{args.out}: {', '.join(report.layers)} re-estimated on {report.cells} cells from {report.images_read} "
          f"of {report.images_found} images{skipped}{rebased} (report: {Path(args.out).with_suffix('.adapt.json')})")
    print("before adapting, " + ShiftCheck(min(report.cells, CHECK_CELLS), report.feature_shift).describe())
    if report.labelled:
        tuned = report.labelled
        print(f"then the head was retrained on {tuned['cells']} labelled cells ({per_class_text(tuned['per_class'])}); "
              f"the adapted model called {tuned['agreement_before']:.0%} of them as labelled before, "
              f"{tuned['agreement_after']:.0%} after (cells it learnt from: score it on other labelled cells with "
              f"hv evaluate); {flagged_text(tuned)}")
    if report.self_trained:
        print(f"then {own_calls_text(report.self_trained)}: score it on labelled cells of yours (hv evaluate) before "
              "relying on it")
    print(f"for the app: hv export --model {shlex.quote(args.out)} --lab-data {shlex.join(args.data)} "
          "--out EXPORT_FOLDER (int8 checked on these cells)")
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from training.averaging import average_runs

    description = average_runs([Path(m) for m in args.models], Path(args.out), _load(args))
    print(f"{args.out}: the mean of {len(description['members'])} runs' class probabilities (model.keras); "
          f"{description['held_out_by_all']} images held out by every run (validation.txt)")
    average = shlex.quote(str(Path(args.out) / "model.keras"))
    if description["held_out_by_all"]:
        print(f"next: hv evaluate --model {average} --held-out, then hv export")
    else:  # a final fit on every image, or runs that held out different images
        print(f"next: hv export --model {average} (nothing to score with --held-out: the export verifies its "
              "variants on training images)")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from stream.batch_replay import expand_videos, replay_videos
    from stream.pipeline import StreamPipeline, run_stream
    from stream.sources import SourceError, VideoFileSource

    config = _load(args)
    videos = expand_videos(args.video)
    if not videos:
        raise SourceError(f"no video files in {', '.join(args.video)}")
    if len(args.video) == 1 and len(videos) == 1 and Path(args.video[0]).is_file() and args.workers == 1 \
            and args.address is None:  # one video: its outputs directly in --out, as always
        pipeline = StreamPipeline(_classifier(args.model, config), config)
        with VideoFileSource(videos[0], stride=args.stride) as source:
            summary = run_stream(source, pipeline, Path(args.out), video=args.annotated_video)
        print(json.dumps(summary, indent=2))
        _say_what_held_the_run_back("replay", summary)
        return 0
    if args.annotated_video:
        raise SourceError("--annotated-video is for one video; a batch writes cells.csv and summary.json per video")
    _warn_on_crop_mismatch(args.model, config)  # once here, not once per worker
    summary = replay_videos(videos, Path(args.out), args.model, config, workers=args.workers, address=args.address,
                            stride=args.stride)
    print(json.dumps({k: summary[k] for k in ("cells", "counts", "failed", "complete")}, indent=2))
    print(f"{len(videos) - len(summary['failed'])} of {len(videos)} videos done; per video: {args.out}/<video>/, "
          f"all together: {args.out}/summary.json and cells.csv")
    return 0 if summary["complete"] else 1


def _source_spec(args: argparse.Namespace) -> str:
    """The --source form of whichever source flag was given."""
    if args.source is not None:
        return args.source
    if args.camera is not None:
        return str(args.camera)
    if args.virtual is not None:
        return "virtual" + (f":{args.virtual}" if args.virtual else "")
    return args.url or args.video or args.folder


def cmd_stream(args: argparse.Namespace) -> int:
    from stream.pipeline import StreamPipeline, run_stream

    config = _load(args)
    pipeline = StreamPipeline(_classifier(args.model, config), config)
    from stream.source_spec import open_source

    with open_source(_source_spec(args), max_frames=args.max_frames) as source:
        summary = run_stream(
            source, pipeline, Path(args.out), video=args.record, display=args.display, max_frames=args.max_frames
        )
    print(json.dumps(summary, indent=2))
    _say_what_held_the_run_back("stream", summary)
    return 0


def _say_what_held_the_run_back(command: str, summary: dict) -> None:
    """A line on stderr when most frames failed one check (a count of 0 from a monochrome camera says why),
    one when most frames' cells were smaller than the model learnt from (a lower magnification), one when most
    were lit unevenly (evened before locating), one when the camera was noisier than the model learnt from, and
    one when the stage motion was lost (cells may have been counted twice)."""
    from stream.frame_quality import mostly_skipped
    from stream.pipeline import motion_lost_line, noisy_camera_line, small_cells_line, uneven_light_line

    for line in (mostly_skipped(summary.get("frames_skipped", {}), summary.get("frames", 0),
                                summary.get("jpeg_quality")),
                 small_cells_line(summary), uneven_light_line(summary),
                 noisy_camera_line(summary), motion_lost_line(summary)):
        if line:
            print(f"hv {command}: {line}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from stream.app import launch_app

    args.overrides = {"serve.host": args.host, "serve.port": args.port, "serve.username": args.username}
    config = _load(args)
    from hv.saliency import load_explainer
    from stream.microscope_adaptation import MicroscopeAdapter

    explainer, note = load_explainer(args.model, args.explain_model)
    # The Keras model behind the served one is what a visitor's microscope adapts.
    adapter = MicroscopeAdapter(explainer.path, config) if explainer is not None else None
    print(f"HematoVision on http://{config.serve.host}:{config.serve.port} (Ctrl-C to stop)")
    launch_app(_classifier(args.model, config), config, autostart=args.command == "demo", explainer=explainer,
               explainer_note=note, adapter=adapter)
    return 0



def build_parser() -> argparse.ArgumentParser:
    from mobile.convert import VARIANTS  # numpy only; TensorFlow loads when a variant is converted

    parser = argparse.ArgumentParser(prog="hv", description="HematoVision: white blood cell classification.")
    parser.add_argument("--config", help="config file (default: the checkout's config.toml, or the built-in defaults)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a classifier (two phases) and write a run folder")
    train.add_argument("--data", nargs="+", metavar="FOLDER",
                       help="training sources, each a folder of class folders, FOLDER#train / FOLDER#test for a "
                            "fixed part of one (default: data.train_dirs)")
    train.add_argument("--out", help="parent folder for runs (default: train.out_dir)")
    train.add_argument("--name", help="run folder name (default: backbone, input, seed and time)")
    train.add_argument("--seed", type=int)
    train.add_argument("--strategy", choices=["default", "mirrored", "multi_worker"],
                       help="one device, all local GPUs, or several machines from TF_CONFIG (default: train.strategy)")
    train.add_argument("--backbone", choices=["efficientnet_b0", "efficientnet_lite0"])
    train.add_argument("--weights", help='"imagenet", "none" or a weights file')
    train.add_argument("--input", choices=["cell", "field"])
    train.add_argument("--batch-size", type=int)
    train.add_argument("--phase1-epochs", type=int)
    train.add_argument("--phase2-epochs", type=int)
    train.add_argument("--fold", metavar="I/K",
                       help="hold out fold I of K folds of the original fields for validation instead of "
                            "data.val_fraction (data.val_fold); K runs, I = 1..K, validate on every original once")
    train.add_argument("--split-seed", type=int, metavar="SEED",
                       help="seed of the validation split (data.split_seed; default: --seed): runs to average with "
                            "hv average share one, so that they hold out the same originals")
    train.add_argument("--keep-epoch-models", action="store_true",
                       help="also save the model after every epoch (epoch_NN.keras), to choose the epoch count "
                            "with hv evaluate --held-out")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="metrics, confusion matrix and mistakes on a folder data set")
    evaluate.add_argument("--model", default=str(DEFAULT_MODEL), help=_MODEL_HELP)
    evaluate.add_argument("--data", nargs="+", metavar="FOLDER",
                          help="sources to score apart and together; class folders outside the four count as "
                               "\"other\" (default: data.test_dirs)")
    evaluate.add_argument("--held-out", action="store_true",
                          help="score the images of data.train_dirs that the model's training held out (its run "
                               "folder's validation.txt, or the split rebuilt from the config saved beside it), "
                               "minus copies of originals it trained on: validation, for choosing recipes")
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument("--input", choices=["cell", "field"], help="must match how the model was trained")
    evaluate.add_argument("--tta", action="store_true",
                          help="average over the 8 turned and mirrored copies of each crop (8x slower)")
    evaluate.set_defaults(func=cmd_evaluate)

    export = sub.add_parser("export", help="convert to TFLite, verify with LiteRT, write the app package")
    export.add_argument("--model", required=True, help="the trained .keras model")
    export.add_argument("--out", required=True, help="output folder (variants/, verification.*, package/)")
    export.add_argument("--data", help="test folder to score the shipped variant on (default: each of data.test_dirs);"
                                       " the variant is chosen on the training sources' validation split")
    export.add_argument(
        "--ship",
        default="auto",
        choices=["auto", *VARIANTS],
        help="variant to package (auto: int8 if it holds accuracy, else the next smallest)",
    )
    export.add_argument("--calibration-images", type=int,
                        help="int8 calibration images from TRAIN, or cells with --lab-data "
                             "(default: export.calibration_images)")
    export.add_argument("--verify-images", type=int,
                        help="choose the variant on a class-balanced sample of this many images (with --lab-data: this "
                             "many held-out cells, default 500); the test sets are scored whole")
    export.add_argument("--lab-data", nargs="+", metavar="FOLDER",
                        help="for a model adapted to a new lab (hv adapt): folders of that lab's unlabelled images; "
                             "the int8 model is calibrated, fine-tuned and chosen on its cells (a quarter of the "
                             "images held out to verify agreement with the Keras model), and only --data is scored")
    export.add_argument("--qat-steps", type=int,
                        help="quantisation-aware fine-tuning steps per int8 variant, about 1 s each on 2 CPU cores "
                             "(default: export.qat_steps; 0 = off)")
    export.set_defaults(func=cmd_export)

    adapt = sub.add_parser("adapt", help="adapt a .keras model to your lab from unlabelled images (no labels needed; "
                           "labelled cells, if you have some, teach it more)")
    adapt.add_argument("data", nargs="+", metavar="FOLDER",
                       help="folders of images from the lab to adapt to (fields or one-cell images, any layout)")
    adapt.add_argument("--model", default=str(CHECKOUT_KERAS_MODEL), help="the .keras model to adapt (default: the "
                       "checkout's models/hv_lite0.keras)")
    adapt.add_argument("--out", default="", help="the adapted model to write (.keras)")
    adapt.add_argument("--check", action="store_true",
                       help="only say how unlike the cells the model learnt from these cells look, and whether "
                            "adapting is advised, unclear or not needed; writes nothing")
    adapt.add_argument("--layers", nargs="+", default=None, metavar="NAME",
                       help="BatchNormalization layers to re-estimate (default: stem_bn and top_bn, the first and "
                            "the last, which hv train rebases; for others add --training-data)")
    adapt.add_argument("--max-cells", type=int, default=1000, help="use at most this many located cells")
    adapt.add_argument("--training-data", nargs="+", default=[], metavar="FOLDER",
                       help="the class folders the model was trained on: rebase on them first, for a model trained "
                            "before hv train stored its training lab's statistics (2026-12-04)")
    adapt.add_argument("--labelled", nargs="+", default=[], metavar="FOLDER",
                       help="class folders of this lab's labelled cells (the web page's corrections folder, say): "
                            "after adapting, retrain the model's head on them (seconds; the backbone is kept)")
    adapt.add_argument("--self-train", action="store_true",
                       help="after adapting, retrain the model's head on its own surest calls over the cells (no "
                            "label; not with --labelled). In validation it helped models trained on one lab on "
                            "average, not every run (one of three lost 1.4 points); the bundled model lost points on "
                            "cells like its training labs'. Compare on labelled cells of your lab (BENCHMARKS.md)")
    adapt.set_defaults(func=cmd_adapt)

    average = sub.add_parser("average", help="average several runs' class probabilities in one model (a run folder)")
    average.add_argument("models", nargs="+", metavar="MODEL",
                         help="two or more model.keras files of hv train's run folders (trained with one --split-seed, "
                              "so that they hold out the same originals)")
    average.add_argument("--out", required=True, help="the run folder to write (must not exist)")
    average.set_defaults(func=cmd_average)

    replay = sub.add_parser("replay", help="process recorded videos as fast as possible")
    replay.add_argument("video", nargs="+", help="video files, globs or folders (several: one folder each in --out, "
                                                 "and a summary.json and cells.csv over them all)")
    replay.add_argument("--out", required=True, help="folder for cells.csv, summary.json (and annotated.webm)")
    replay.add_argument("--workers", type=int, default=1, help="videos at once, on Ray (pip install -e '.[ray]')")
    replay.add_argument("--address", help="an existing Ray cluster's address (default: a local Ray instance)")
    replay.add_argument("--model", default=str(DEFAULT_MODEL), help=_MODEL_HELP)
    replay.add_argument("--stride", type=int, default=1, help="process every Nth frame")
    replay.add_argument("--annotated-video", action="store_true", help="also write annotated.webm")
    replay.set_defaults(func=cmd_replay)

    stream = sub.add_parser("stream", help="run live on a camera, stream, video, folder or the virtual microscope")
    which = stream.add_mutually_exclusive_group(required=True)
    which.add_argument("--source", help="camera index, URL, video file, image folder/glob, or 'virtual[:FOLDER]'")
    which.add_argument("--camera", type=int, help="camera index (USB microscope cameras are webcams)")
    which.add_argument("--url", help="network stream (rtsp://, http://, ...)")
    which.add_argument("--video", help="video file, played as a live source")
    which.add_argument("--folder", help="folder or glob of images")
    which.add_argument(
        "--virtual",
        nargs="?",
        const="",
        help="virtual microscope over a folder of fields (default: the bundled samples)",
    )
    stream.add_argument("--out", default="hv-stream", help="folder for cells.csv, summary.json")
    stream.add_argument("--model", default=str(DEFAULT_MODEL), help=_MODEL_HELP)
    stream.add_argument("--display", action="store_true", help="show an OpenCV window (q or Esc to stop)")
    stream.add_argument("--record", action="store_true", help="also write annotated.webm")
    stream.add_argument("--max-frames", type=int, help="stop after this many frames")
    stream.set_defaults(func=cmd_stream)

    for name, text in (("serve", "start the web app"),
                       ("demo", "start the web app on the virtual microscope with the bundled model")):
        serve = sub.add_parser(name, help=text)
        serve.add_argument("--model", default=str(DEFAULT_MODEL), help=_MODEL_HELP)
        serve.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1)")
        serve.add_argument("--port", type=int, help="port (default: serve.port)")
        serve.add_argument("--username", help="require a login with this name; password from $HV_PASSWORD")
        serve.add_argument("--explain-model", help="the .keras model an app package was exported from, for the "
                           "Review page's heat maps (default: the checkout's models/hv_lite0.keras when it is the "
                           "bundled package's source)")
        serve.set_defaults(func=cmd_serve)

    classify = sub.add_parser("classify", help="find and classify every white cell in field images")
    classify.add_argument("images", nargs="*", help="field images (default: the bundled samples)")
    classify.add_argument("--model", default=str(DEFAULT_MODEL), help=_MODEL_HELP)
    classify.add_argument("--out", default="hv-output", help="folder for annotated images and cells.csv")
    classify.set_defaults(func=cmd_classify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except _expected_errors() as exc:
        # A user's mistake (a bad file, folder, setting or source): one line that says what and
        # where; with -v the traceback too. Anything else is a bug and keeps its traceback.
        if args.verbose:
            traceback.print_exc()
        print(f"hv {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hv {args.command}: interrupted", file=sys.stderr)
        return 130


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean bad input, each raised with a message that names it."""
    from hv.classifier import ModelLoadError
    from hv.model import WeightsError
    from hv.preprocess import ImageReadError
    from hv.torch_checkpoint import CheckpointError
    from mobile.convert import ConversionError
    from mobile.package import PackageError
    from mobile.quantisation_aware import TuningError
    from mobile.verify import VerificationError
    from stream.batch_replay import RayMissingError
    from stream.sources import SourceError
    from training.data import DataError
    from training.distribute import DistributeError

    return (ConfigError, ModelLoadError, WeightsError, ImageReadError, CheckpointError, PackageError, SourceError,
            RayMissingError, DistributeError,
            DataError, ConversionError, TuningError, VerificationError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError, PermissionError)


if __name__ == "__main__":
    sys.exit(main())
