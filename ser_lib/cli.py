"""The ``ser`` command: train a model bundle, predict the emotion of audio files with one, or say what one is.

An expected mistake (bad arguments, missing data, no network, too few speakers for a split, a bundle
that does not fit, a missing optional dependency) ends in one ``error: ...`` line on stderr and exit
status 2, as argparse's own errors do; ``--debug`` (or ``SER_DEBUG=1``) shows the traceback instead,
for bug reports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

import pandas as pd

from ser_lib import __version__
from ser_lib.corpora import AUDIO_EXTENSIONS, CORPORA
from ser_lib.download import DownloadError
from ser_lib.kernels import KernelCacheError
from ser_lib.features import original_rows
from ser_lib.predict import HOP_SECONDS, SILENCE_DB, WINDOW_SECONDS
from ser_lib.recipes import ALIASES, RECIPES, get_recipe, recipe_names
from ser_lib.recipes.original import TRAINING_DEFAULTS
from ser_lib.training import check_split

MAIN_HELP = """Speech emotion recognition on CREMA-D, TESS, RAVDESS and SAVEE.

  ser train --data ROOT --out DIR     train a recipe (the original MLP by default) and write a model bundle with its metrics
  ser predict FILE_OR_DIR... --artifacts DIR   the emotion of audio files, one row per file
  ser predict ... --speaker-by folder  adapt to each speaker's other clips (the adaptive mode)
  ser enroll NAME CLIP... --artifacts DIR   store a speaker's statistics; then ser predict --speaker NAME
  ser listen --artifacts DIR          the emotion of the microphone, live, one line per window (Ctrl-C stops)
  ser info DIR                        what a model bundle is: recipe, classes, data, metrics, calibration, versions
"""
SCHEDULER_HELP = ("a Dask scheduler (e.g. tcp://host:8786): {what} on its workers, which must reach the same paths "
                  "and have ser_lib installed (pip install 'ser_lib[cluster]')")
# Mistakes a user can make and fix: one line each, no traceback (unless --debug).
EXPECTED_ERRORS = (OSError, ValueError, ImportError, DownloadError, KernelCacheError)


def _train(args) -> int:
    import ser_lib
    from ser_lib import evaluate

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        print(f"error: '{out}' is not empty: choose a new folder or pass --force to replace a bundle in it.", file=sys.stderr)
        return 2
    # Before minutes of feature extraction, not after them.
    get_recipe(args.recipe).check_training_dependencies()
    table, skipped = ser_lib.load_corpus(
        args.data, fold_calm=args.fold_calm, max_per_corpus=args.max_per_corpus, seed=args.seed
    )
    protocol = "corpus" if args.test_corpus else args.split
    check_split(table, recipe=args.recipe, protocol=protocol, test_corpus=args.test_corpus, seed=args.seed)
    features, failed = ser_lib.extract_many(table, n_jobs=args.workers, return_skipped=True, recipe=args.recipe,
                                            scheduler=args.scheduler)
    skipped = pd.concat([skipped, failed], ignore_index=True)
    run = ser_lib.train(
        features, recipe=args.recipe, protocol=protocol, test_corpus=args.test_corpus, seed=args.seed, epochs=args.epochs,
        n_jobs=args.workers, scheduler=args.scheduler,
    )
    clips = original_rows(features)  # the recipe's training-only augmented copies are not clips
    summary = {**evaluate.data_summary(clips, skipped, source=args.data), "fold_calm": args.fold_calm}
    ser_lib.save_bundle(run, out, data_summary=summary, overwrite=args.force)
    evaluate.write_data_tables(clips, skipped, out)
    evaluate.write_run_tables(run, out)
    metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in run.metrics.items()}
    print(json.dumps({"recipe": run.model.recipe, "split": run.protocol, "test": metrics, "bundle": str(out)}, indent=2))
    return 0


def _audio_files(inputs, list_file=None) -> list[str]:
    """Files as given (and listed in ``list_file``, one per line); folders searched recursively, sorted."""
    extensions = {*AUDIO_EXTENSIONS, ".ogg", ".mp3"}
    items = list(inputs)
    if list_file is not None:
        lines = Path(list_file).read_text().splitlines()
        items += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    files = []
    for item in map(Path, items):
        if item.is_dir():
            # A dangling link is listed too: its row says where it points, rather than it vanishing.
            files.extend(str(p) for p in sorted(item.rglob("*"))
                         if p.suffix.lower() in extensions and (p.is_file() or (p.is_symlink() and not p.exists())))
        else:
            # A missing file or a folder given as a file is reported in its row, not here.
            files.append(str(item))
    return files


# Below this many files, starting worker processes costs more than it saves (measured on 2 cores:
# joblib's processes take ~1 s to start and load the bundle; one clip's features take ~0.1-0.2 s).
_PARALLEL_FROM = 16


def _predict(args) -> int:
    from ser_lib.predict import predict_many

    try:
        files = _audio_files(args.inputs, args.list)
    except OSError as error:
        raise OSError(f"cannot read the list file: {error}") from error
    if not files:
        print(f"error: no audio files (.wav .flac .ogg .mp3) in {args.inputs or args.list}", file=sys.stderr)
        return 2
    workers = args.workers if args.workers is not None else (-1 if len(files) >= _PARALLEL_FROM else 1)
    speakers = speaker_ids(files, args.speaker_by) if args.speaker_by else None
    table, timeline = predict_many(
        files, args.artifacts, speakers=speakers, speaker=args.speaker, window=args.window, hop=args.hop,
        silence_db=args.silence_db, n_jobs=workers, scheduler=args.scheduler, progress=not args.quiet, return_timeline=True,
    )
    if args.timeline:
        timeline.to_csv(args.timeline, index=False)
    if args.csv:
        table.to_csv(args.csv, index=False)
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.width", 200, "display.float_format", "{:.3f}".format):
            print(table.to_string(index=False))
    failed = int((table["error"] != "").sum())
    if failed:
        print(f"{failed} of {len(table)} files could not be predicted (see the error column).", file=sys.stderr)
    return 1 if failed else 0


def speaker_ids(files: list[str], spec: str) -> list:
    """The speaker of each file under ``--speaker-by``: ``folder``, ``regex:PATTERN`` or ``csv:FILE:COLUMN``.

    ``folder``: the name of the file's parent folder. ``regex:PATTERN``: the first group of the
    pattern's first match in the path (the whole match without a group). ``csv:FILE:COLUMN``: the
    COLUMN of the CSV row whose ``path`` is the file. A file the pattern does not match, or the CSV
    does not list, has no speaker (None): it is predicted per clip.
    """
    import re

    kind, _, rest = spec.partition(":")
    if kind == "folder" and not rest:
        return [Path(f).parent.name or None for f in files]
    if kind == "regex" and rest:
        try:
            pattern = re.compile(rest)
        except re.error as error:
            raise ValueError(f"--speaker-by regex:{rest}: not a regular expression ({error}).") from error
        matches = [pattern.search(f) for f in files]
        return [None if m is None else (m.group(1) if pattern.groups else m.group(0)) for m in matches]
    if kind == "csv" and ":" in rest:
        path, column = rest.rsplit(":", 1)
        table = pd.read_csv(path, dtype=str)
        missing = [c for c in ("path", column) if c not in table.columns]
        if missing:
            raise ValueError(f"--speaker-by {spec}: expected columns 'path' and {column!r} in '{path}', "
                             f"missing {missing} (found {list(table.columns)}).")
        by_path = {str(Path(p).resolve()): s for p, s in zip(table["path"], table[column]) if isinstance(s, str)}
        return [by_path.get(str(Path(f).resolve())) for f in files]
    raise ValueError(f"--speaker-by {spec!r}: expected 'folder', 'regex:PATTERN' or 'csv:FILE:COLUMN'.")


def _enroll(args) -> int:
    from ser_lib.predict import enroll_speaker

    files = _audio_files(args.clips)
    if not files:
        print(f"error: no audio files (.wav .flac .ogg .mp3) in {args.clips}", file=sys.stderr)
        return 2
    path, table = enroll_speaker(args.name, files, args.artifacts, overwrite=args.force,
                                 n_jobs=-1 if len(files) >= _PARALLEL_FROM else 1, progress=not args.quiet)
    unused = table[~table["used"]]
    for _, row in unused.iterrows():
        print(f"not used: {row['path']}: {row['error']}", file=sys.stderr)
    print(f"enrolled {args.name!r} from {int(table['used'].sum())} clips: {path}")
    return 1 if len(unused) else 0


def _listen(args) -> int:
    from ser_lib.stream import EmotionStream, Microphone, summary_line, window_line

    device = int(args.device) if args.device and args.device.isdigit() else args.device
    microphone = Microphone(device, sr=args.sr)
    stream = EmotionStream(args.artifacts, sr=microphone.sr, silence_db=args.silence_db, adapt=not args.no_adapt,
                           speaker=args.speaker)
    print(f"listening to {microphone.name} at {microphone.sr} Hz; a line every {HOP_SECONDS:g} s, Ctrl-C stops", flush=True)
    # Ctrl-C stops the microphone between chunks, never in the middle of a window's analysis.
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    printed = 0
    try:
        for chunk in microphone.chunks(stop):
            for window in stream.feed(chunk).itertuples():
                print(window_line(window), flush=True)
                printed += 1
    finally:
        signal.signal(signal.SIGINT, previous)
    summary = stream.close()
    for window in summary.timeline.iloc[printed:].itertuples():
        print(window_line(window))
    print(summary_line(summary))
    if microphone.overflows:
        print(f"warning: {microphone.overflows} chunks of audio were lost (the machine did not keep up)", file=sys.stderr)
    if args.csv:
        summary.timeline.to_csv(args.csv, index=False)
        print(f"timeline: {args.csv}")
    return 0


def _info(args) -> int:
    from ser_lib.artifacts import bundle_info

    info = bundle_info(args.directory)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    width = max(map(len, info))
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items() if v is not None)
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        print(f"{key.replace('_', ' '):<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser", description=MAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ser {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the Python traceback (for bug reports; also SER_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train a model bundle on a corpus folder",
        description="Extract a recipe's features, train its classifier under a split protocol, evaluate it on the "
        "test part and write a model bundle (model_weights.npz and model_metadata.json, which ser predict reads; "
        "for the original recipe also best_ser_model.keras, scaler.pkl and label_encoder.pkl) with its metrics "
        "(CSV/JSON) to --out.",
    )
    train.add_argument("--data", required=True, help="a folder holding any of the four corpora, or 'kaggle', or 'demo'")
    train.add_argument("--out", required=True, help="folder for the bundle and its metrics (must be new or empty)")
    train.add_argument("--split", choices=("speaker", "random", "none"), default="speaker",
                       help="speaker: test speakers are never heard in training (default); random: the original's split; "
                            "none: no test part, every speaker trains (a model to use once a speaker split or "
                            "benchmarks/ravdess_cv.py has measured the recipe)")
    recipe_help = "; ".join(f"{name}: {recipe.summary}" for name, recipe in RECIPES.items())
    alias_help = "; ".join(f"{alias} = {name}" for alias, name in ALIASES.items())
    train.add_argument("--recipe", choices=recipe_names(), default="original",
                       help=f"{recipe_help} ({alias_help}; default: original)")
    train.add_argument("--test-corpus", choices=CORPORA, default=None,
                       help="cross-corpus: test on every clip of this corpus, train on the others (overrides --split)")
    train.add_argument("--epochs", type=int, default=TRAINING_DEFAULTS["epochs"],
                       help=f"at most this many epochs (early stopping; default {TRAINING_DEFAULTS['epochs']})")
    train.add_argument("--seed", type=int, default=0, help="one seed for split, initialisation and batches (default 0)")
    train.add_argument("--fold-calm", action="store_true", help="relabel calm as neutral (7 classes)")
    train.add_argument("--max-per-corpus", type=int, default=None, help="use at most N files per corpus (quick runs)")
    train.add_argument("--workers", type=int, default=-1, help="feature extraction processes (default: all cores)")
    train.add_argument("--scheduler", metavar="ADDRESS", help=SCHEDULER_HELP.format(what="the features are extracted"))
    train.add_argument("--force", action="store_true", help="replace a bundle already in --out")
    train.set_defaults(handler=_train)

    predict = commands.add_parser(
        "predict", help="predict the emotion of audio files",
        description="Predict the emotion of audio files (wav, flac, ogg, mp3; any sample rate and channel count; "
        "folders are searched recursively). Prints, or writes with --csv, one row per file: path, emotion, "
        "confidence (percent), one probability column per class, tier (high >= 70%, or higher under a recording "
        "condition the model recognises as less reliable; medium >= 40%; low), "
        "uncertain (top probability under the bundle's abstain threshold, or audio unlike the clips it trained on), "
        "note (what the audio's own measures show: narrow-band, noisy, not speech, quiet, clipped; and the recording "
        "condition it sounds like, with a bundle that recognises them), warning (e.g. a "
        "truncated file: how "
        "much of the audio its header announces is missing) and error (why a file could not be read; the "
        "others are still predicted). A recording of at least --window + --hop seconds is analysed "
        "in overlapping windows: its row holds the mean over windows above the silence gate, and --timeline "
        "writes one row per window (start, end, emotion, confidence, tier, uncertain and class probabilities in 0-1). "
        "Exits 1 if any file failed, 2 if nothing could be predicted (no files, bad bundle).",
    )
    predict.add_argument("inputs", nargs="*", help="audio files or folders")
    predict.add_argument("--list", help="a text file of audio paths, one per line (blank lines and # comments ignored)")
    predict.add_argument("--artifacts", default="artifacts", help="the model bundle folder (default: artifacts)")
    predict.add_argument("--csv", help="write the table to this CSV file instead of printing it")
    predict.add_argument("--timeline", help="write the per-window rows of every file to this CSV file")
    predict.add_argument("--window", type=float, default=WINDOW_SECONDS,
                         help=f"window length in seconds (default {WINDOW_SECONDS:g})")
    predict.add_argument("--hop", type=float, default=HOP_SECONDS, help=f"window step in seconds (default {HOP_SECONDS:g})")
    predict.add_argument("--silence-db", type=float, default=SILENCE_DB,
                         help=f"windows quieter than this RMS level (dBFS) are silent and left out (default {SILENCE_DB:g})")
    predict.add_argument("--workers", type=int, default=None,
                         help=f"processes (-1: all cores; default: all cores from {_PARALLEL_FROM} files, else 1)")
    predict.add_argument("--scheduler", metavar="ADDRESS", help=SCHEDULER_HELP.format(what="clips are predicted"))
    voice = predict.add_mutually_exclusive_group()
    voice.add_argument("--speaker-by", metavar="folder|regex:PATTERN|csv:FILE:COLUMN",
                       help="who speaks in each file: the parent folder's name, the first group of PATTERN in the path, "
                            "or COLUMN of the CSV row whose 'path' is the file. Each speaker's files are normalised by "
                            "their statistics (the adaptive mode: better on unseen voices given several of their clips); "
                            "adds columns speaker, adapted and n_clips. Files without a speaker are predicted per clip")
    voice.add_argument("--speaker", metavar="NAME", help="every file is this enrolled speaker (see ser enroll)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(handler=_predict)

    enroll = commands.add_parser(
        "enroll", help="store a speaker's statistics for ser predict --speaker",
        description="Compute the features of clips of one speaker (folders are searched) and store their mean and "
        "variance as plain arrays in ARTIFACTS/speakers/NAME.npz, so that single clips of that voice can be predicted "
        "adapted to it (ser predict --speaker NAME). Clips of several emotions work best: clips of one mood bias the "
        "statistics (shrinkage and the estimated emotion shares limit it). Exits 1 if a file could not be used.",
    )
    enroll.add_argument("name", help="the speaker's name (letters, digits, '.', '_', '-')")
    enroll.add_argument("clips", nargs="+", help="audio clips of the speaker, or folders of them")
    enroll.add_argument("--artifacts", default="artifacts", help="the model bundle folder (default: artifacts)")
    enroll.add_argument("--force", action="store_true", help="replace the speaker's stored statistics")
    enroll.add_argument("--quiet", action="store_true", help="no progress bar")
    enroll.set_defaults(handler=_enroll)

    listen = commands.add_parser(
        "listen", help="the emotion of the microphone, live",
        description="Read the default microphone (or --device) and print one line per window as it is heard: time, "
        "emotion, confidence and tier (high >= 70%, or higher under a recording condition the model recognises as "
        "less reliable; medium >= 40%; low), 'uncertain' and, once the voice's statistics "
        "hold two windows, 'adapted(N)' (the windows adapted to, with an adaptive bundle). Ctrl-C stops and prints the "
        "summary. Needs sounddevice: pip install 'ser_lib[live]'.",
    )
    listen.add_argument("--artifacts", default="artifacts", help="the model bundle folder (default: artifacts)")
    listen.add_argument("--device", default=None, help="an input device's number or name (default: the system's)")
    listen.add_argument("--sr", type=int, default=None, help="the sample rate to record at (default: the device's)")
    listen.add_argument("--silence-db", type=float, default=SILENCE_DB,
                        help=f"windows quieter than this RMS level (dBFS) are silent (default {SILENCE_DB:g})")
    voice = listen.add_mutually_exclusive_group()
    voice.add_argument("--speaker", metavar="NAME", help="start from this enrolled speaker's statistics (see ser enroll)")
    voice.add_argument("--no-adapt", action="store_true", help="predict every window on its own, not adapted to the voice")
    listen.add_argument("--csv", help="on stopping, write the timeline (one row per window) to this CSV file")
    listen.set_defaults(handler=_listen)

    info = commands.add_parser("info", help="what a model bundle is",
                               description="What a model bundle is: its recipe, classes, feature settings, the data "
                               "it was trained on, its test metrics and split, its calibration and the library "
                               "versions it needs. Reads model_metadata.json only, so it works where the bundle "
                               "cannot predict.")
    info.add_argument("directory", help="the model bundle folder")
    info.add_argument("--json", action="store_true", help="print it as JSON")
    info.set_defaults(handler=_info)
    return parser


@contextlib.contextmanager
def sigterm_exits():
    """Within: SIGTERM (``kill``, a batch scheduler's stop) raises ``SystemExit(143)`` instead of ending the process at once.

    Python's default for SIGTERM ends the process without unwinding, which leaves joblib's worker processes
    orphaned, computing the jobs already queued (measured: a killed `best` training's two workers ran on for
    about 40 minutes). Raised as an exception, it unwinds like Ctrl-C: joblib stops its workers on the way out.
    Only the main thread can set a handler; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Warnings (e.g. a bundle without an adaptive mode asked to adapt) as one plain line each.
    warnings.formatwarning = lambda message, category, *_, **__: f"warning: {message}\n"
    try:
        with sigterm_exits():
            return args.handler(args)
    except EXPECTED_ERRORS as error:
        if args.debug or os.environ.get("SER_DEBUG"):
            raise
        # One line: what was expected, what was found, what to do (the messages say all three).
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
