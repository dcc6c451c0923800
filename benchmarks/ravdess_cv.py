"""Speaker-grouped cross-validation on real RAVDESS: accuracy, macro-F1 and calibration per fold.

    python benchmarks/ravdess_cv.py [--recipe original] [--data ../shared/data/ravdess_dev] [--seed 0]
                                    [--folds blocks|interleaved]

Four folds of four actors (``blocks``: {1-4}, {5-8}, {9-12}, {13-16}; ``interleaved``, a second partition
to check that a result is not one partition's luck: {1,2,9,10}, {3,4,11,12}, {5,6,13,14}, {7,8,15,16}; two
male, two female each). In each fold the
twelve other actors are split into training and two validation actors (one male, one female, chosen by the
seed). ``original``: early stopping, the calibration temperature and the abstention threshold use the
validation actors only. ``best`` chooses its settings and calibrates by speaker-grouped cross-validation over
all twelve (validation actors are training actors for it). Neither ever uses the fold's test actors. Prints
one row per fold, the mean and standard deviation, and accuracy and ECE pooled over the four test folds.

A recipe with an adaptive mode (``ser_lib.adapt``) is also scored adapted to each test speaker's unlabelled
clips, under each condition of ``ser_lib.evaluate.adaptation_predictions`` (all clips, batches of 5 / 10 / 20
random clips, batches of two emotions, neutral enrolment): mean and standard deviation over the folds, and
ECE pooled over them, with the band a perfectly calibrated model would stay in; ``--adaptation-chart PNG``
draws them. ``--no-adaptive`` trains the per-clip model only.

``--recordings`` also scores each fold's test clips under every recording condition of
``ser_lib.conditions`` (telephone, MP3, Opus, white noise, babble of other speakers, a room, a quiet and an
overdriven microphone), per clip and adapted (each speaker's clips of one condition together): accuracy and
macro-F1 mean ± std over folds; ECE, mean confidence, share uncertain, share wrong among the high-tier answers
(each recognised condition's tier: ``EmotionModel.tiers``) and among those not marked uncertain, pooled over them; ``--recordings-chart PNG`` draws them. The conditioned features are cached like the
clean ones (the first run extracts 8 more versions of every clip). ``--train-augmentations`` trains on other
copies than the recipe's (``speed0.9,speed1.1,telephone``: the speed copies and a telephone copy of every
training clip; babble is made of the table's other speakers, test actors included, so it is no training copy here).

``--within-training`` runs the same study on each fold's twelve training actors only, so that a change can be
checked without the test actors: three folds of four of them each (every third actor), trained on the other eight
(12 runs). The test actors are never trained, calibrated or scored on; their clips are only in the babble behind
some scored clips, as the training actors' are in the test actors' babble.

With ``--recordings``, the share of wrong answers in each condition's high tier is also compared with clean
speech's on resampled speakers (2,000 draws of the scored actors with replacement, the same actors for both): the
difference and its 95% interval. Answers of one voice are not independent, so this interval is wider than the
binomial band of the table.

A recipe with training augmentations (``best``: speed 0.9 and 1.1, two recording conditions drawn per clip) gets
its copies from ``extract_many``;
the folds are made on the original clips, and ``train`` trains only on the copies of the fold's training
actors' clips (never of its test actors). ``best``'s babble copies are made by ``train`` in each fold, of
the fold's training actors only (the first run extracts them, about a minute a fold).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ser_lib  # noqa: E402
import ser_lib.conditions  # noqa: E402
import ser_lib.evaluate  # noqa: E402
import ser_lib.model  # noqa: E402
from ser_lib.features import feature_matrix, original_rows  # noqa: E402
from ser_lib.recipes import recipe_names  # noqa: E402


def fold_split(features: pd.DataFrame, test_actors: set, *, seed: int) -> pd.Series:
    actor = actor_numbers(features)
    rest = sorted(set(actor) - test_actors)
    rng = np.random.default_rng(seed)
    validation = {int(rng.choice([a for a in rest if a % 2 == 1])), int(rng.choice([a for a in rest if a % 2 == 0]))}
    split = pd.Series("train", index=features.index, name="split", dtype=object)
    split[actor.isin(validation)] = "validation"
    split[actor.isin(test_actors)] = "test"
    return split


FOLDS = {
    "blocks": ({1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11, 12}, {13, 14, 15, 16}),
    "interleaved": ({1, 2, 9, 10}, {3, 4, 11, 12}, {5, 6, 13, 14}, {7, 8, 15, 16}),
}


def within_training(folds: tuple) -> list[tuple[set, set]]:
    """(actors, test actors) of three folds over each fold's training actors: every third of them tested."""
    everyone = set().union(*folds)
    plan = []
    for test_actors in folds:
        training = sorted(everyone - test_actors)
        plan += [(set(training), set(training[k::3])) for k in range(3)]
    return plan


def actor_numbers(table: pd.DataFrame) -> pd.Series:
    return table["speaker"].str.slice(-2).astype(int)


def high_tier_excess(predictions: pd.DataFrame, *, draws: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per recording and mode: the high tier's share wrong minus clean speech's, and its 95% interval over resampled speakers."""
    wrong = predictions.assign(wrong=predictions["predicted"] != predictions["emotion"])
    high = wrong[wrong["tier"] == "high"]
    speakers = np.array(sorted(predictions["speaker"].unique()))
    picks = np.random.default_rng(seed).integers(0, len(speakers), size=(draws, len(speakers)))
    counts = {key: (group.groupby("speaker")["wrong"].sum().reindex(speakers, fill_value=0).to_numpy(),
                    group.groupby("speaker").size().reindex(speakers, fill_value=0).to_numpy())
              for key, group in high.groupby(["recording", "mode"], sort=False)}
    rows = []
    for (recording, mode), (n_wrong, n) in counts.items():
        if recording == ser_lib.model.CLEAN or (ser_lib.model.CLEAN, mode) not in counts:
            continue
        clean_wrong, clean_n = counts[ser_lib.model.CLEAN, mode]
        with np.errstate(invalid="ignore", divide="ignore"):
            resampled = n_wrong[picks].sum(1) / n[picks].sum(1) - clean_wrong[picks].sum(1) / clean_n[picks].sum(1)
        rows.append({"recording": recording, "mode": mode, "high_n": int(n.sum()),
                     "excess": n_wrong.sum() / n.sum() - clean_wrong.sum() / clean_n.sum(),
                     "low": np.nanquantile(resampled, 0.025), "high": np.nanquantile(resampled, 0.975)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ravdess_dev")
    parser.add_argument("--recipe", choices=recipe_names(), default="original")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--folds", choices=sorted(FOLDS), default="blocks")
    parser.add_argument("--no-adaptive", dest="adaptive", action="store_false", help="train the per-clip model only")
    parser.add_argument("--adaptation-chart", type=Path, help="write the adaptation chart (PNG) here")
    parser.add_argument("--adaptation-predictions", type=Path, help="write every adapted prediction (CSV) here")
    parser.add_argument("--train-augmentations", type=lambda text: tuple(text.split(",")) if text else (),
                        help="training copies instead of the recipe's own, comma-separated (e.g. "
                             "'speed0.9,speed1.1,telephone'; names of ser_lib.features.VERSIONS)")
    parser.add_argument("--within-training", action="store_true",
                        help="three folds over each fold's training actors instead: no test actor is scored")
    parser.add_argument("--recordings", action="store_true", help="also score the test clips under recording conditions")
    parser.add_argument("--recordings-chart", type=Path, help="write the recording conditions chart (PNG) here")
    parser.add_argument("--recordings-predictions", type=Path, help="write every prediction under recording conditions (CSV) here")
    args = parser.parse_args()
    if set(args.train_augmentations or ()) & ser_lib.conditions.NEEDS_TALKERS:
        parser.error("babble is made of the table's other speakers, test actors included: it cannot be a training copy here")

    table = ser_lib.scan_corpora(args.data)
    start = time.perf_counter()
    features = ser_lib.extract_many(table, n_jobs=-1, recipe=args.recipe, augmentations=args.train_augmentations)
    extract_seconds = time.perf_counter() - start
    originals = original_rows(features)
    recorded = None
    if args.recordings:
        start = time.perf_counter()
        recorded = ser_lib.extract_many(table, n_jobs=-1, recipe=args.recipe, augmentations=tuple(ser_lib.conditions.CONDITIONS))
        print(f"recording conditions: {len(recorded)} rows in {time.perf_counter() - start:.0f} s", flush=True)
    rows, predictions, adapted, recordings = [], [], [], []
    folds = FOLDS[args.folds]
    plan = within_training(folds) if args.within_training else [(set().union(*folds), test) for test in folds]
    name = f"{args.folds} folds{', within training' if args.within_training else ''}"
    for fold, (actors, test_actors) in enumerate(plan, start=1):
        fold_features = features[actor_numbers(features).isin(actors)]
        split = fold_split(original_rows(fold_features), test_actors, seed=args.seed + fold)
        run = ser_lib.train(fold_features, recipe=args.recipe, split=split, seed=args.seed, epochs=args.epochs,
                            adaptive=args.adaptive, progress=False)
        m = run.metrics
        rows.append({
            "fold": fold, "test_actors": ",".join(f"{a:02d}" for a in sorted(test_actors)), "n": m["n"], "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"], "ece_before": m["ece_uncalibrated"], "ece_after": m["ece"],
            "temperature": m["temperature"], "temperature_slope": m["temperature_slope"], "coverage": m["coverage"],
            "accuracy_kept": m["accuracy_kept"],
            "train_seconds": run.train_seconds, "augmented_train_rows": run.settings.get("augmented_train_rows", 0),
            **{f"C_{member}": chosen["C"] for member, chosen in run.settings.get("members", {}).items()},
        })
        predictions.append(run.predictions)
        if run.model.adaptive is not None:
            adapted.append(ser_lib.evaluate.adaptation_predictions(run, features, seed=args.seed + fold).assign(fold=fold))
            by_condition = ser_lib.evaluate.adaptation_table(adapted[-1], run.classes).set_index("condition")["accuracy"]
            rows[-1].update({f"adapted_{k}": v for k, v in by_condition.items() if k != "per clip"})
        if recorded is not None:
            recordings.append(ser_lib.evaluate.recording_predictions(run, recorded).assign(fold=fold))
            by_recording = ser_lib.evaluate.recording_table(recordings[-1], run.classes).set_index(["recording", "mode"])["accuracy"]
            rows[-1].update({f"{mode} {recording}": v for (recording, mode), v in by_recording.items()})
            if run.model.recogniser is not None:  # how often the condition recogniser names a test recording's condition
                test = recorded[recorded["path"].isin(run.predictions["path"])]
                named = np.asarray(run.model.conditions)[run.model.recognise(feature_matrix(test, recipe=args.recipe)).argmax(axis=1)]
                rows[-1]["condition_recognised"] = float((named == test["augmentation"].replace("none", "clean")).mean())
        print(rows[-1], flush=True)
        if run.model.caution:
            cautions = {"per clip": run.model.caution, "adapted": run.model.adaptive.caution if run.model.adaptive else {}}
            print(f"fold {fold} caution factors: " + "; ".join(
                f"{mode} " + ", ".join(f"{name} {factor:.2f}" for name, factor in factors.items())
                for mode, factors in cautions.items() if factors)
                + f"; adapted with typical emotion shares: {', '.join(run.model.typical_shares) or 'none'}", flush=True)
            floors = {"per clip": run.model.high_from, "adapted": run.model.adaptive.high_from if run.model.adaptive else {}}
            print(f"fold {fold} high tier from: " + "; ".join(f"{mode} {ser_lib.evaluate.high_tier_floors(own) or 'clean floor'}"
                                                              for mode, own in floors.items()), flush=True)
    results = pd.DataFrame(rows)
    # Pooled ECE over all folds' test clips is steadier than per-fold ECE (240 clips, 15 bins).
    print(f"\nrecipe {args.recipe}: {len(originals)} clips ({len(features)} rows with augmented copies) from {args.data}; "
          f"features took {extract_seconds:.0f} s, {extract_seconds / len(features):.3f} s per row wall clock "
          "(cached on disk after the first run)")
    print(results.round(3).to_string(index=False))
    summary = results[["accuracy", "macro_f1", "ece_before", "ece_after", "train_seconds"]].agg(["mean", "std"]).round(3)
    print("\n" + summary.to_string())
    pooled = pd.concat(predictions)
    correct = (pooled["predicted"] == pooled["emotion"]).to_numpy()
    ece = ser_lib.evaluate.expected_calibration_error
    print(f"\npooled over the {len(plan)} folds ({len(pooled)} clips): accuracy {correct.mean():.3f}, "
          f"ECE before {ece(pooled['confidence_uncalibrated'], correct):.3f}, after {ece(pooled['confidence'], correct):.3f}")
    evaluate = ser_lib.evaluate
    if adapted:
        report(f"speaker adaptation ({name})", adapted, run.classes, evaluate.adaptation_table, ["condition"],
               ["n", "repeats", "ece", "ece_perfect_p95"], "plot_adaptation", args.adaptation_predictions, args.adaptation_chart)
    if recordings:
        report(f"recording conditions ({name})", recordings, run.classes, evaluate.recording_table,
               ["recording", "mode"], ["n", "ece", "ece_perfect_p95", "confidence", "uncertain", "high_n", "high_wrong",
                                        "high_wrong_clean_p95", "confident_wrong"],
               "plot_recordings", args.recordings_predictions, args.recordings_chart)
        print("\nthe high tier's share wrong minus clean speech's, and its 95% interval over resampled speakers:")
        print(high_tier_excess(pd.concat(recordings, ignore_index=True)).round(3).to_string(index=False))


def report(title: str, frames: list, classes, table, keys: list, pooled_columns: list, plot: str, csv, chart) -> None:
    """Print a study's table: accuracy and macro-F1 mean and std over folds, ``pooled_columns`` over all folds' predictions.

    ``table(predictions, classes)`` summarises predictions per ``keys``; ``plot`` names the
    ``ser_lib.plots`` function that draws it to ``chart``; ``csv`` gets every prediction.
    """
    predictions = pd.concat(frames, ignore_index=True)
    if csv:
        predictions.to_csv(csv, index=False)
    per_fold = pd.concat([table(group, classes) for _, group in predictions.groupby("fold")])
    spread = per_fold.groupby(keys, sort=False)[["accuracy", "macro_f1"]].agg(["mean", "std"])
    spread.columns = [f"{metric}_{stat}" for metric, stat in spread.columns]
    summary = spread.join(table(predictions, classes).set_index(keys)[pooled_columns]).reset_index()
    print(f"\n{title}; accuracy and macro-F1 mean ± std over folds, the rest pooled:")
    print(summary.round(3).to_string(index=False))
    if chart:
        import matplotlib

        matplotlib.use("Agg")
        from ser_lib import plots

        getattr(plots, plot)(summary).savefig(chart, dpi=110, bbox_inches="tight")
        print(f"chart: {chart}")


if __name__ == "__main__":
    main()
