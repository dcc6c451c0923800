"""A rehearsal of the notebook's default run at the real bundle's size: wall time and peak memory per stage.

    python benchmarks/rehearsal.py [--manifest ../shared/data/kaggle_bundle_manifest.csv] [--root /tmp/ser_rehearsal]
                                   [--recipes original,best] [--speakers 1.0] [--runs 2] [--workers -1]
                                   [--compared-only] [--cache-dir DIR] [--no-progress]

Makes a synthetic corpus of exactly the bundle's files (``make_demo_corpus(like=manifest)``: 12,162 clips, 121
speakers, the real per-corpus and per-emotion counts and native sample rates), then runs the notebook's default
work on it, stage by stage, with the calls its cells make: features, training on the speaker split (with its
adaptive-mode evaluation), the random split, the recording conditions, cross-corpus, and the compared recipe's
features and training. The first run starts from an empty feature cache (a first notebook run), the second
reuses it (a rerun). Peak memory is the largest resident set of this process and its worker processes together,
sampled every 0.2 s (pages the processes share, such as a memory-mapped training matrix, count once per process:
an upper bound). ``--speakers 0.25`` keeps a quarter of each corpus's speakers (a smaller rehearsal, to
see how a stage grows). ``--compared-only`` runs the compared recipe's stages alone (after loading the corpus).
``--cache-dir`` uses and keeps that feature cache instead of a new one (a run that starts with entries in it is
labelled "cached"): to time training after an interrupted run extracted the features.
Issue 13's targets on 2 cores: first run <= 30 min, rerun <= 5 min, peak <= 8 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ser_lib  # noqa: E402
from ser_lib import evaluate  # noqa: E402

SEED = 42  # the notebook's


class PeakMemory:
    """The largest resident set of this process and its children while the block runs, in bytes."""

    def __enter__(self):
        self.peak, self._done = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._done.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:  # a worker that just ended
                    pass
            self.peak = max(self.peak, total)
            self._done.wait(0.2)

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def notebook_stages(root: Path, recipes: list[str], cache_dir: Path, workers: int, *, compared_only: bool = False,
                    progress: bool = True):
    """(stage, function) pairs in the notebook's order; each function takes and returns a dict of results.

    ``compared_only``: loading the corpus, then only the compared recipes' stages. ``progress``: the library's
    progress bars (on standard error).
    """
    main, compared = recipes[0], recipes[1:]
    options = dict(n_jobs=workers, cache_dir=cache_dir, progress=progress, warn=False)

    def load(state):
        state["table"], _ = ser_lib.load_corpus(str(root), seed=SEED, progress=progress)

    def features(state):
        state["features"] = ser_lib.extract_many(state["table"], recipe=main, **options)

    def speaker_split(state):
        state["run"] = ser_lib.train(state["features"], recipe=main, protocol="speaker", seed=SEED, progress=progress)
        if state["run"].model.adaptive is not None:
            evaluate.adaptation_table(evaluate.adaptation_predictions(state["run"], state["features"], seed=SEED),
                                      state["run"].classes)

    def random_split(state):
        ser_lib.train(state["features"], recipe=main, protocol="random", seed=SEED, adaptive=False, progress=progress)

    def recordings(state):
        clips = ser_lib.features.original_rows(state["features"])
        test_clips = clips[clips["path"].isin(state["run"].predictions["path"])]
        recorded = ser_lib.extract_many(test_clips, recipe=main, augmentations=tuple(ser_lib.conditions.CONDITIONS),
                                        talkers=clips, **options)
        evaluate.recording_table(evaluate.recording_predictions(state["run"], recorded), state["run"].classes)

    def cross(state):
        ser_lib.cross_corpus(state["features"], recipe=main, seed=SEED, progress=progress)

    stages = [("load the corpus", load), (f"features, {main}", features),
              (f"train {main}, speaker split (+ adaptation)", speaker_split), (f"train {main}, random split", random_split),
              (f"recording conditions, {main}", recordings), (f"cross-corpus, {main}", cross)]
    if compared_only:
        stages = stages[:1]
    for other in compared:
        def other_features(state, other=other):
            state[other] = ser_lib.extract_many(state["table"], recipe=other, **options)

        def other_training(state, other=other):
            ser_lib.train(state[other], recipe=other, protocol="speaker", seed=SEED, adaptive=False, progress=progress)

        stages += [(f"features, {other}", other_features), (f"train {other}, speaker split", other_training)]
    return stages


def keep_speakers(manifest: pd.DataFrame, share: float) -> pd.DataFrame:
    """A seeded share of each corpus's speakers (at least two), all their files."""
    rng = np.random.default_rng(SEED)
    kept = []
    for _, files in manifest.groupby("corpus"):
        speakers = sorted(files["speaker"].unique())
        n = max(2, round(share * len(speakers)))
        kept += list(rng.choice(speakers, size=min(n, len(speakers)), replace=False))
    return manifest[manifest["speaker"].isin(kept)].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/data/kaggle_bundle_manifest.csv")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "ser_rehearsal")
    parser.add_argument("--recipes", default="original,best", help="the notebook's RECIPE, then COMPARE_RECIPE")
    parser.add_argument("--speakers", type=float, default=1.0, help="share of each corpus's speakers to keep")
    parser.add_argument("--runs", type=int, default=2, help="1: first run only; 2: then again with the cache")
    parser.add_argument("--workers", type=int, default=-1)
    parser.add_argument("--compared-only", action="store_true", help="only the compared recipe's stages")
    parser.add_argument("--no-progress", action="store_true", help="without the library's progress bars")
    parser.add_argument("--cache-dir", type=Path, help="a feature cache to use and keep (default: a new one, removed after)")
    args = parser.parse_args()

    manifest = pd.read_csv(args.manifest, dtype=str)
    if args.speakers < 1:
        manifest = keep_speakers(manifest, args.speakers)
        args.root = args.root.with_name(f"{args.root.name}_{args.speakers:g}")
    start = time.perf_counter()
    root = ser_lib.make_demo_corpus(args.root, seed=SEED, like=manifest, n_jobs=args.workers, progress=True)
    print(f"corpus: {len(manifest)} clips, {manifest['speaker'].nunique()} speakers in {root} "
          f"({time.perf_counter() - start:.0f} s to make or check)")

    rows = []
    if args.cache_dir:
        args.cache_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = (contextlib.nullcontext(str(args.cache_dir)) if args.cache_dir
                 else tempfile.TemporaryDirectory(prefix="ser_rehearsal_cache_"))
    with cache_dir as cache:
        for run in range(1, args.runs + 1):
            label = "cached" if any(Path(cache).iterdir()) else "first"
            state = {}
            for stage, function in notebook_stages(root, args.recipes.split(","), Path(cache), args.workers,
                                                      compared_only=args.compared_only, progress=not args.no_progress):
                start = time.perf_counter()
                with PeakMemory() as memory:
                    function(state)
                row = {"run": f"{run}: {label}", "stage": stage,
                       "seconds": round(time.perf_counter() - start, 1), "peak_gb": round(memory.peak / 1e9, 2)}
                rows.append(row)
                print(row, flush=True)
    table = pd.DataFrame(rows)
    totals = table.groupby("run", sort=False).agg(minutes=("seconds", lambda s: round(s.sum() / 60, 1)),
                                                  peak_gb=("peak_gb", "max"))
    print(f"\n{len(manifest)} clips; recipes {args.recipes}; workers {args.workers}\n")
    print(table.to_string(index=False))
    print("\nthe stages run, in all:" if args.compared_only else "\nthe notebook's work, in all:")
    print(totals.to_string())


if __name__ == "__main__":
    main()
