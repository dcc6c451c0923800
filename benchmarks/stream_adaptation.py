"""A live stream adapting to the voice: accuracy by the minutes heard, on real RAVDESS (4-fold speaker CV).

    python benchmarks/stream_adaptation.py [--data ../shared/data/ravdess_dev] [--recipe best]
                                           [--folds blocks|interleaved] [--pause 1.0] [--seed 0]
                                           [--chart PNG] [--csv CSV]

In each fold of ``ravdess_cv.py`` (the same test actors and validation actors) the recipe is trained (per clip
and adaptive) on the twelve other actors. Each test actor's 60 clips are joined, in a random order of its own with
``--pause`` s of silence between them, into one recording of about 5 minutes, which is fed to
``ser_lib.EmotionStream`` in 100 ms chunks: with adaptation off (``per window``), and on (``live adapted``: each
window adapted to the voiced windows heard up to it, never rescored). Beside them, the whole recording adapted at
once after the fact (``predict_emotion(path)``, what a file gets: ``hindsight``). A window is scored against
the clip covering most of it (windows mostly in a pause are not scored), and counted in the span of minutes
heard when it ended. Prints window accuracy per span and mode (mean and std over the folds; pooled windows) and
draws the chart. Each window's features are computed once and shared by the three modes.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ser_lib  # noqa: E402
import ser_lib.predict  # noqa: E402
import ser_lib.stream  # noqa: E402
from adaptive_recordings import join, window_labels  # noqa: E402
from ravdess_cv import FOLDS, fold_split  # noqa: E402
from ser_lib import plots  # noqa: E402
from ser_lib.audio import SAMPLE_RATE  # noqa: E402
from ser_lib.features import original_rows  # noqa: E402

# Spans of minutes heard (a window counts in the span its end falls in).
EDGES = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, np.inf)
MODES = ("per window", "live adapted", "hindsight")


def shared_features():
    """signal_rows computed once per window (keyed by its samples), whichever mode asks."""
    original, memo = ser_lib.predict.signal_rows, {}

    def signal_rows(model, signals):
        keys = [hashlib.sha1(np.ascontiguousarray(y).tobytes()).hexdigest() for y in signals]
        missing = [k for k in dict.fromkeys(keys) if k not in memo]
        if missing:
            first = {k: y for k, y in zip(keys, signals)}
            features, measures = original(model, [first[k] for k in missing])
            memo.update({k: (f, m) for k, f, m in zip(missing, features, measures)})
        return np.stack([memo[k][0] for k in keys]), np.stack([memo[k][1] for k in keys])

    ser_lib.predict.signal_rows = ser_lib.stream.signal_rows = signal_rows
    return memo


def span(minutes: float) -> str:
    k = int(np.searchsorted(EDGES, minutes, side="right")) - 1
    low, high = EDGES[k], EDGES[k + 1]
    return f"{low:g}+ min" if np.isinf(high) else f"{low:g}-{high:g} min"


def report(windows: pd.DataFrame, title: str) -> pd.DataFrame:
    """Print window accuracy per span of minutes and mode, and its gain over per window on the same windows
    (mean and std over folds); return that table."""
    windows = windows.assign(correct=windows["emotion"] == windows["predicted"])
    spans = [span(low) for low in EDGES[:-1]]
    by_fold = windows.groupby(["mode", "span", "fold"])["correct"].mean().unstack("fold")
    gain = by_fold - by_fold.xs("per window", level="mode")
    summary = pd.DataFrame({
        "accuracy_mean": by_fold.mean(axis=1), "accuracy_std": by_fold.std(axis=1),
        "gain_mean": gain.mean(axis=1), "gain_std": gain.std(axis=1),
        "windows": windows.groupby(["mode", "span"]).size(),
    }).reset_index()
    summary["mode"] = pd.Categorical(summary["mode"], MODES, ordered=True)
    summary["span"] = pd.Categorical(summary["span"], [s for s in spans if s in set(summary["span"])], ordered=True)
    summary = summary.sort_values(["mode", "span"]).reset_index(drop=True)
    print(f"\nwindow accuracy by minutes heard, {title} (mean, then std over folds; windows):")
    for values in ("accuracy_mean", "accuracy_std", "gain_mean", "gain_std", "windows"):
        print(summary.pivot(index="span", columns="mode", values=values).round(3).to_string(), end="\n\n")
    overall = windows.groupby(["mode", "fold"])["correct"].mean().unstack("mode")[list(MODES)]
    print("all windows, per fold:\n" + overall.round(3).to_string())
    print("mean: " + ", ".join(f"{m} {overall[m].mean():.3f} ± {overall[m].std():.3f}" for m in MODES))
    per_clip = windows.groupby("fold")["per_clip"].first()
    print(f"per clip (whole clips, the headline protocol): {per_clip.mean():.3f} ± {per_clip.std():.3f}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ravdess_dev")
    parser.add_argument("--recipe", default="best")
    parser.add_argument("--folds", choices=sorted(FOLDS), default="blocks")
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chart", type=Path, help="write the chart (PNG) here")
    parser.add_argument("--csv", type=Path, help="write every scored window (CSV) here")
    parser.add_argument("--report", type=Path, metavar="CSV", help="report (and chart) the windows of a run saved with --csv")
    args = parser.parse_args()
    if args.report:
        return finish(pd.read_csv(args.report), args)

    table = ser_lib.scan_corpora(args.data)
    features = ser_lib.extract_many(table, n_jobs=-1, recipe=args.recipe, progress=False)
    originals = original_rows(features)
    memo = shared_features()
    rows, per_clip = [], []
    order = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        for fold, test_actors in enumerate(FOLDS[args.folds], start=1):
            split = fold_split(originals, test_actors, seed=args.seed + fold)
            start = time.perf_counter()
            run = ser_lib.train(features, recipe=args.recipe, split=split, seed=args.seed, progress=False)
            trained = time.perf_counter() - start
            per_clip.append(run.metrics["accuracy"])
            bundle = ser_lib.save_bundle(run, Path(folder) / f"fold{fold}", overwrite=True)
            memo.clear()
            start = time.perf_counter()
            for speaker, own in run.predictions.groupby("speaker"):
                # Each speaker its own order: the clips heard in a span of minutes differ from speaker to speaker.
                own = own.sample(frac=1, random_state=order)
                y, segments = join(own["path"], own["emotion"], args.pause)
                path = Path(folder) / f"{speaker}.wav"
                soundfile.write(path, y, SAMPLE_RATE)
                timelines = {
                    "per window": ser_lib.replay(path, bundle, adapt=False).timeline,
                    "live adapted": ser_lib.replay(path, bundle, adapt=True).timeline,
                    "hindsight": ser_lib.predict_emotion(path, bundle, progress=False).timeline,
                }
                truth = window_labels(timelines["per window"], segments)
                for mode, timeline in timelines.items():
                    for label, window in zip(truth, timeline.itertuples()):
                        if label is not None and window.emotion != "silent":
                            rows.append({"fold": fold, "speaker": speaker, "mode": mode, "end": window.end,
                                         "span": span(window.end / 60), "emotion": label, "predicted": window.emotion,
                                         "confidence": window.confidence, "per_clip": per_clip[-1]})
            print(f"fold {fold} (test actors {sorted(test_actors)}): trained in {trained:.0f} s, per clip "
                  f"{per_clip[-1]:.3f}; streams of {run.predictions['speaker'].nunique()} speakers scored in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    windows = pd.DataFrame(rows)
    if args.csv:
        windows.to_csv(args.csv, index=False)
    finish(windows, args)


def finish(windows: pd.DataFrame, args) -> None:
    summary = report(windows, f"{args.recipe}, {args.folds} folds")
    if args.chart:
        chart = plots.plot_stream_adaptation(summary, per_clip=float(windows.groupby("fold")["per_clip"].first().mean()))
        chart.savefig(args.chart, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
