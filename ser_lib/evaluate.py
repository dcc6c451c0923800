"""Metrics tables: the classification report, confusion matrix, per-class and per-corpus scores, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ser_lib import quality
from ser_lib.adapt import dealt, paired
from ser_lib.model import CLEAN, HIGH_FROM, calibration_temperature


def _labels(y_true, y_pred, classes):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"Expected as many predictions as labels, got {y_pred.shape} and {y_true.shape}.")
    unknown = sorted(set(y_true) - set(classes))
    if unknown:
        raise ValueError(f"Labels {unknown} are not among the classes {list(classes)}.")
    return y_true, y_pred


def summary_metrics(y_true, y_pred, classes) -> dict:
    """Accuracy, macro-F1 and weighted F1 over the given classes, and the number of clips."""
    from sklearn.metrics import accuracy_score, f1_score

    y_true, y_pred = _labels(y_true, y_pred, classes)
    present = [c for c in classes if c in set(y_true)]
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
        # Macro-F1 over the classes this test set holds: a corpus without 'calm' is not scored on it.
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)) if len(y_true) else float("nan"),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)) if len(y_true) else float("nan"),
    }


def classification_report_table(y_true, y_pred, classes) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, then the accuracy, macro and weighted rows."""
    from sklearn.metrics import classification_report

    y_true, y_pred = _labels(y_true, y_pred, classes)
    report = classification_report(y_true, y_pred, labels=list(classes), output_dict=True, zero_division=0)
    return pd.DataFrame(report).T.rename_axis("class")


def confusion_table(y_true, y_pred, classes) -> pd.DataFrame:
    """Counts, rows = true emotion, columns = predicted emotion, in class order."""
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = _labels(y_true, y_pred, classes)
    counts = confusion_matrix(y_true, y_pred, labels=list(classes))
    return pd.DataFrame(counts, index=pd.Index(classes, name="true"), columns=pd.Index(classes, name="predicted"))


def per_class_accuracy(confusion: pd.DataFrame) -> pd.DataFrame:
    """Recall of each class (the share of its clips predicted right) with its support."""
    support = confusion.sum(axis=1)
    correct = pd.Series(np.diag(confusion.to_numpy()), index=confusion.index)
    return pd.DataFrame({"accuracy": (correct / support.replace(0, np.nan)), "correct": correct, "support": support})


def per_group_metrics(table: pd.DataFrame, y_pred, classes, *, by: str = "corpus") -> pd.DataFrame:
    """Summary metrics for each value of a column of the test table (corpus, gender, ...), and for all."""
    y_pred = np.asarray(y_pred)
    rows = [{by: "all", **summary_metrics(table["emotion"], y_pred, classes)}]
    for value, index in table.groupby(by, sort=True).indices.items():
        rows.append({by: value, **summary_metrics(table["emotion"].to_numpy()[index], y_pred[index], classes)})
    return pd.DataFrame(rows)


def expected_calibration_error(confidence, correct, *, n_bins: int = 15) -> float:
    """Expected calibration error: the clip-weighted gap between confidence and accuracy.

    Parameters
    ----------
    confidence : np.ndarray [shape=(n,)]
        Top-class probability of each prediction, in [0, 1].
    correct : np.ndarray [shape=(n,), dtype=bool]
        Whether each prediction was right.
    n_bins : int
        Equal-width confidence bins over [0, 1].
    """
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(f"Expected confidence and correct of one equal length, got shapes {confidence.shape} and {correct.shape}.")
    if len(confidence) == 0:
        return float("nan")
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        members = bins == b
        error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def perfect_calibration_ece(confidence, *, n_bins: int = 15, draws: int = 2000, seed: int = 0) -> dict:
    """The ECE a perfectly calibrated model would score with these confidences: the noise floor of the metric.

    Each draw makes every prediction right with probability equal to its confidence (what perfect
    calibration means) and measures :func:`expected_calibration_error` in the same bins. On a few
    hundred clips this is far from 0 (400 clips at confidence 0.5: 0.020), so an ECE is read against it.

    Returns
    -------
    band : dict
        ``mean`` and ``p95`` (95th percentile) of the ECE over ``draws`` draws.
    """
    confidence = np.asarray(confidence, dtype=float)
    if confidence.ndim != 1 or len(confidence) == 0:
        raise ValueError(f"Expected a non-empty 1-D array of confidences, got shape {confidence.shape}.")
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    members = np.zeros((len(confidence), n_bins))
    members[np.arange(len(confidence)), bins] = 1.0
    confidence_sums = confidence @ members
    correct = np.random.default_rng(seed).random((draws, len(confidence))) < confidence
    gaps = np.abs(correct @ members - confidence_sums)  # per draw and bin: |correct - confidence| summed
    ece = gaps.sum(axis=1) / len(confidence)
    return {"mean": float(ece.mean()), "p95": float(np.quantile(ece, 0.95))}


def data_tables(table: pd.DataFrame) -> dict:
    """The original's distribution tables: clips per emotion, and per corpus with speakers."""
    emotions = table["emotion"].value_counts().rename_axis("emotion").reset_index(name="count")
    emotions["percent"] = 100 * emotions["count"] / emotions["count"].sum()
    corpora = table.groupby("corpus").agg(count=("path", "size"), speakers=("speaker", "nunique")).reset_index()
    corpora["percent"] = 100 * corpora["count"] / corpora["count"].sum()
    return {"emotion_distribution": emotions, "dataset_distribution": corpora}


def write_data_tables(table: pd.DataFrame, skipped: pd.DataFrame, directory) -> list[Path]:
    """Write emotion_distribution.csv, dataset_distribution.csv and skipped_files.csv."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in {**data_tables(table), "skipped_files": skipped}.items():
        frame.to_csv(directory / f"{name}.csv", index=False)
        written.append(directory / f"{name}.csv")
    return written


# The tables of a run's test part (write_run_tables).
TEST_TABLES = ("classification_report", "confusion_matrix", "per_class_accuracy", "per_corpus_metrics", "test_predictions",
               "test_predictions_adapted")


def write_run_tables(run, directory, *, suffix: str = "") -> list[Path]:
    """Write a training run's results under the original's names (with ``suffix`` before the extension).

    classification_report, confusion_matrix, per_class_accuracy, training_history, per_corpus_metrics
    and test_predictions as CSV (and test_predictions_adapted: the adaptive mode's, each test
    speaker normalised by its own clips), and test_results.json. A run without a test part (protocol
    ``none``) has only its training history and test_results.json; test tables of an earlier run
    under the same names are removed, so none is mistaken for this run's.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tables = {"training_history": run.history}
    if len(run.predictions):
        confusion = run.confusion
        tables = {
            "classification_report": run.report,
            "confusion_matrix": confusion,
            "per_class_accuracy": per_class_accuracy(confusion),
            **tables,
            "per_corpus_metrics": run.per_corpus.set_index("corpus"),
            "test_predictions": run.predictions.set_index("path"),
        }
        if run.adaptive_predictions is not None:
            tables["test_predictions_adapted"] = run.adaptive_predictions.set_index("path")
    else:
        for name in TEST_TABLES:
            (directory / f"{name}{suffix}.csv").unlink(missing_ok=True)
    written = []
    for name, frame in tables.items():
        path = directory / f"{name}{suffix}.csv"
        frame.to_csv(path)
        written.append(path)
    results = {
        "protocol": run.protocol,
        "recipe": run.model.recipe,
        "seed": run.seed,
        "classes": list(run.classes),
        **run.metrics,
        "per_corpus": run.per_corpus.to_dict(orient="records"),
        "adaptive": run.adaptive_metrics or None,
        "epochs_run": int(len(run.history)),
        "train_seconds": round(run.train_seconds, 1),
        "split_sizes": run.split.value_counts().to_dict(),
        "test_speakers": sorted(map(str, run.predictions["speaker"].unique())),
    }
    path = directory / f"test_results{suffix}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return [*written, path]


def write_file_summary(directories, path) -> Path:
    """A text index of every file a run wrote, with sizes: the original's file_summary.txt."""
    lines = []
    for directory in map(Path, directories):
        lines.append(f"{directory}/")
        for file in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != "README.md"):
            lines.append(f"  {file.relative_to(directory)}  ({file.stat().st_size:,} bytes)")
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def data_summary(features: pd.DataFrame, skipped: pd.DataFrame, *, source) -> dict:
    """What a model was trained on, for its metadata."""
    return {
        "source": str(source),
        "root": features.attrs.get("root"),
        "clips": int(len(features)),
        "skipped": int(len(skipped)),
        "speakers": int(features.groupby(["corpus", "speaker"]).ngroups),
        "clips_per_corpus": features["corpus"].value_counts().sort_index().to_dict(),
        "clips_per_emotion": features["emotion"].value_counts().sort_index().to_dict(),
    }


def describe_data(table: pd.DataFrame, skipped: pd.DataFrame) -> str:
    """A Markdown paragraph about a corpus table, from its numbers."""
    corpora = table.groupby("corpus").agg(clips=("path", "size"), speakers=("speaker", "nunique"))
    parts = ", ".join(f"{name} {row.clips:,} clips / {row.speakers} speakers" for name, row in corpora.iterrows())
    counts = table["emotion"].value_counts()
    text = (
        f"**{len(table):,} clips** of {table['emotion'].nunique()} emotions from {len(corpora)} corpora ({parts}). "
        f"The largest class is *{counts.index[0]}* ({counts.iloc[0]:,}), the smallest *{counts.index[-1]}* "
        f"({counts.iloc[-1]:,}): always predicting *{counts.index[0]}* would score {counts.iloc[0] / len(table):.1%}."
    )
    if "calm" in counts.index:
        text += " *Calm* exists only in RAVDESS, so the model can learn the corpus instead of the emotion there."
    if len(skipped):
        text += f" {len(skipped)} files could not be read as labelled clips (see `skipped_files.csv`)."
    return text


def describe_run(run) -> str:
    """A Markdown paragraph about a run's test results, from its numbers."""
    m = run.metrics
    per_class = per_class_accuracy(run.confusion)["accuracy"].dropna().sort_values()
    confusion = run.confusion.to_numpy().copy()
    np.fill_diagonal(confusion, 0)
    true_index, predicted_index = np.unravel_index(confusion.argmax(), confusion.shape)
    heard = "never heard" if run.protocol == "speaker" else "also heard in training"
    return (
        f"On {m['n']:,} test clips from speakers the model {heard}, accuracy is **{m['accuracy']:.1%}** and macro-F1 "
        f"**{m['macro_f1']:.1%}** (chance: {1 / len(run.classes):.1%} for {len(run.classes)} classes). Best recognised: "
        f"*{per_class.index[-1]}* ({per_class.iloc[-1]:.0%}); worst: *{per_class.index[0]}* ({per_class.iloc[0]:.0%}). "
        f"The most frequent confusion is *{run.classes[true_index]}* taken for *{run.classes[predicted_index]}* "
        f"({confusion.max()} clips). {_training_note(run)}"
    )


def _training_note(run) -> str:
    if "epochs_run" in run.settings:  # a network trained in epochs with early stopping
        return f"Training stopped after {run.settings['epochs_run']} epochs ({run.train_seconds:.0f} s)."
    return f"Training took {run.train_seconds:.0f} s."


def describe_comparison(comparison: pd.DataFrame) -> str:
    """A Markdown paragraph comparing split protocols, from a :func:`ser_lib.protocol_comparison` table."""
    overall = comparison[comparison["corpus"] == "all"].set_index("protocol")
    if not {"random", "speaker"} <= set(overall.index):
        return "Only one split protocol was trained (`COMPARE_SPLITS = False`)."
    random_, speaker = overall.loc["random"], overall.loc["speaker"]
    gap = random_["accuracy"] - speaker["accuracy"]
    text = (
        f"The same recipe scores **{random_['accuracy']:.1%}** on a random split and **{speaker['accuracy']:.1%}** "
        f"on unseen speakers ({gap * 100:+.1f} points between them; macro-F1 {random_['macro_f1']:.1%} vs "
        f"{speaker['macro_f1']:.1%}). "
    )
    if gap > 0.02:
        text += (
            "A random split lets the model recognise voices it has already heard; the speaker split is what a new "
            "user's voice will meet, so it is the number to quote."
        )
    else:
        text += "Here the two protocols are close: with few clips per speaker the difference is within noise."
    per_corpus = comparison[(comparison["corpus"] != "all") & (comparison["protocol"] == "speaker")]
    if len(per_corpus) > 1:
        best, worst = per_corpus.loc[per_corpus["accuracy"].idxmax()], per_corpus.loc[per_corpus["accuracy"].idxmin()]
        text += (
            f" On unseen speakers, {best['corpus']} is recognised best ({best['accuracy']:.1%}) and "
            f"{worst['corpus']} worst ({worst['accuracy']:.1%})."
        )
    return text


# The calibration temperature may grow with a clip's atypicality, never shrink: a clip unlike any
# training clip is not made more confident.
TEMPERATURE_BOUNDS, SLOPE_BOUNDS = (0.05, 20.0), (0.0, 5.0)
# Likewise statistics of fewer clips never make a prediction more confident.
PER_CLIP_BOUNDS = (0.0, 50.0)


def fit_calibration(probabilities: np.ndarray, labels: np.ndarray, atypicality: np.ndarray | None = None,
                    n_clips: np.ndarray | None = None) -> dict:
    """The temperature (and its slope on atypicality) that minimise the NLL of held-out predictions.

    Each clip's logits are divided by ``temperature * exp(slope * atypicality)``: a single
    temperature when ``atypicality`` is None (slope 0), else one that also lets clips far from
    the training clips (:func:`ser_lib.model.atypicality`) be softer. On RAVDESS the slope is
    positive in every speaker fold: atypical clips are misclassified more often than their
    confidence says.

    Parameters
    ----------
    probabilities : np.ndarray [shape=(n, n_classes)]
        Uncalibrated class probabilities of clips the model was not trained on (validation speakers).
    labels : np.ndarray [shape=(n,), dtype=int]
        Their true class indices.
    atypicality : np.ndarray [shape=(n,)], optional
        Each clip's atypicality under the scaler of the model that predicted it.
    n_clips : np.ndarray [shape=(n,)], optional
        For the adaptive mode: the clips each prediction's speaker statistics came from; then
        ``temperature_per_clip`` is fitted too (:func:`ser_lib.model.calibration_temperature`).

    Returns
    -------
    calibration : dict
        ``temperature`` (``> 1`` softens over-confident predictions) and ``temperature_slope`` (and
        ``temperature_per_clip`` with ``n_clips``).
        Since ``softmax(log p / T) = softmax(logits / T)``, log-probabilities stand in for logits.
    """
    from scipy.optimize import minimize

    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels)
    if len(probabilities) == 0 or probabilities.shape[0] != labels.shape[0]:
        raise ValueError(f"Expected probabilities and labels for the same clips, got {probabilities.shape} and {labels.shape}.")
    log_p = np.log(np.clip(probabilities, 1e-12, 1.0))
    spread = np.zeros(len(labels)) if atypicality is None else np.asarray(atypicality, dtype=np.float64)
    if spread.shape != labels.shape:
        raise ValueError(f"Expected one atypicality per clip ({labels.shape[0]}), got shape {spread.shape}.")

    def nll(parameters):
        log_temperature, slope, per_clip = parameters
        scaled = log_p / calibration_temperature(np.exp(log_temperature), slope, spread, per_clip, n_clips)[:, None]
        scaled -= scaled.max(axis=1, keepdims=True)
        log_softmax = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return -log_softmax[np.arange(len(labels)), labels].mean()

    slope_bounds = (0.0, 0.0) if atypicality is None else SLOPE_BOUNDS
    per_clip_bounds = (0.0, 0.0) if n_clips is None else PER_CLIP_BOUNDS
    result = minimize(nll, np.zeros(3), method="L-BFGS-B", bounds=[np.log(TEMPERATURE_BOUNDS), slope_bounds, per_clip_bounds])
    fitted = {"temperature": float(np.exp(result.x[0])), "temperature_slope": float(result.x[1])}
    return fitted if n_clips is None else {**fitted, "temperature_per_clip": float(result.x[2])}


# The caution factors searched (below 1 sharpens a condition the calibration leaves under-confident), and the
# fewest held-out clips of a condition that get a factor (and a high tier) of their own (fewer keep clean speech's).
CAUTION_FACTORS = np.exp(np.linspace(np.log(0.5), np.log(3.0), 60))
MIN_CAUTION_CLIPS = 30


def fit_caution(probabilities: np.ndarray, labels: np.ndarray, temperatures: np.ndarray, conditions,
                *, reference: str = CLEAN) -> dict:
    """Each recording condition's factor on the calibrated temperature: the one that calibrates its clips best.

    For each condition of ``conditions`` but ``reference``: of ``CAUTION_FACTORS``, the one whose
    temperatures (``temperatures * factor``) give its clips the least NLL. One temperature fits all
    conditions on average, but a condition that degrades the model (babble, a room) is then
    over-confident, and white noise, which the model meets unsure, under-confident. A condition
    with fewer than ``MIN_CAUTION_CLIPS`` clips, and the reference, keep 1.

    Parameters
    ----------
    probabilities : np.ndarray [shape=(n, n_classes)]
        Uncalibrated probabilities of held-out clips.
    labels : np.ndarray [shape=(n,), dtype=int]
    temperatures : np.ndarray [shape=(n,)]
        Each clip's calibrated temperature without caution (:func:`ser_lib.model.calibration_temperature`).
    conditions : sequence [length n]
        Each clip's recording condition (``reference`` for clean speech).

    Returns
    -------
    caution : dict
        Condition -> factor, for every condition in ``conditions``.
    """
    from ser_lib.model import softmax

    log_p = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0))
    labels, conditions = np.asarray(labels), np.asarray(conditions, dtype=object)
    temperatures = np.asarray(temperatures, dtype=np.float64)
    caution = {}
    for condition in dict.fromkeys(conditions):
        rows = conditions == condition
        if condition == reference or rows.sum() < MIN_CAUTION_CLIPS:
            caution[condition] = 1.0
            continue
        nll = [-np.log(softmax(log_p[rows] / (temperatures[rows] * f)[:, None])[np.arange(rows.sum()), labels[rows]]).mean()
               for f in CAUTION_FACTORS]
        caution[condition] = float(CAUTION_FACTORS[int(np.argmin(nll))])
    return caution


# The floors searched for a condition's high tier (from the clean floor, ser_lib.model.HIGH_FROM, up).
HIGH_FLOORS = np.round(np.arange(HIGH_FROM, 0.995, 0.01), 2)


def fit_high_tier(confidence: np.ndarray, correct: np.ndarray, conditions, *, batchings=None,
                  reference: str = CLEAN) -> dict:
    """Each recording condition's lowest confidence of the ``high`` tier: where its answers are as reliable as clean speech's.

    Calibrated confidences keep their meaning under every condition (70% is right about 70% of the
    time), but a condition that degrades the model has fewer answers far above 70%, so its answers
    from 70% up are wrong more often than clean speech's. Its floor is the lowest of
    ``HIGH_FLOORS`` at which the share of wrong answers among its clips at or above it is no larger
    than the ``reference`` clips' above the clean floor (:data:`ser_lib.model.HIGH_FROM`). A condition
    with fewer than ``MIN_CAUTION_CLIPS`` clips, and the reference, keep the clean floor.

    ``batchings`` (one label per clip) compares like with like: held-out voices adapted with all
    their clips, in batches of a few, or heard in two emotions are each compared with clean speech
    adapted the same way, and a condition's floor is the highest they need. Pooled, clean speech's
    high tier would be judged by its small batches' errors, and a condition that adaptation helps
    little (babble) would pass at a floor where, with all of a voice's clips, it is wrong more often.

    Parameters
    ----------
    confidence : np.ndarray [shape=(n,)]
        Calibrated top probabilities (0-1) of held-out clips.
    correct : np.ndarray [shape=(n,), dtype=bool]
    conditions : sequence [length n]
        Each clip's recording condition.
    batchings : sequence [length n], optional
        How each clip was adapted; None: all alike.

    Returns
    -------
    high_from : dict
        Condition -> floor (0-1), for every condition in ``conditions``.
    """
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=bool)
    conditions = np.asarray(conditions, dtype=object)
    batchings = np.zeros(len(conditions), dtype=int) if batchings is None else np.asarray(batchings)

    def wrong_share(rows, floor):
        high = rows & (confidence >= floor)
        return float((~correct[high]).mean()) if high.any() else 0.0

    def lowest_floor(rows, allowed):
        return float(next((f for f in HIGH_FLOORS if wrong_share(rows, f) <= allowed), HIGH_FLOORS[-1]))

    high_from = {}
    for condition in dict.fromkeys(conditions):
        floors = [HIGH_FROM]
        for batching in np.unique(batchings) if condition != reference else ():
            rows, clean = (conditions == condition) & (batchings == batching), (conditions == reference) & (batchings == batching)
            if rows.sum() >= MIN_CAUTION_CLIPS:
                floors.append(lowest_floor(rows, wrong_share(clean, HIGH_FROM) if clean.any() else 1.0))
        high_from[condition] = max(floors)
    return high_from


def coverage_threshold(confidence: np.ndarray, *, coverage: float) -> float:
    """The confidence below which a prediction is marked uncertain, so that ``coverage`` of them are kept."""
    if not 0 < coverage <= 1:
        raise ValueError(f"Expected a coverage in (0, 1], got {coverage}.")
    return float(np.quantile(np.asarray(confidence, dtype=float), 1 - coverage)) if coverage < 1 else 0.0


def reliability_curves(run) -> dict:
    """Test confidence and correctness before and after calibration, for a reliability diagram."""
    predictions = run.predictions
    correct = (predictions["predicted"] == predictions["emotion"]).to_numpy()
    return {
        "before calibration": (predictions["confidence_uncalibrated"].to_numpy(), correct),
        f"after calibration ({describe_temperature(run.model.temperature, run.model.temperature_slope)})":
            (predictions["confidence"].to_numpy(), correct),
    }


def describe_temperature(temperature: float, slope: float) -> str:
    """``T = 0.85``, or ``T = 0.85 x d^0.30`` when it grows with the clip's mean squared standardised feature d."""
    return f"T = {temperature:.2f}" + (f" x d^{slope:.2f}" if slope else "")


def describe_calibration(run) -> str:
    """A Markdown paragraph about a run's calibration and abstention, from its numbers."""
    m = run.metrics
    direction = "over-confident" if m["temperature"] > 1 else "under-confident"
    source = run.settings.get("calibrated_on", "validation")
    source = "validation speakers" if source == "validation" else source
    if not len(run.predictions):
        return (f"No test part (split {run.protocol}): the temperature fitted on {source} is "
                f"{describe_temperature(m['temperature'], m['temperature_slope'])}, the abstention threshold "
                f"{m['abstain_threshold']:.0%}.")
    floor = perfect_calibration_ece(run.predictions["confidence"].to_numpy())
    return (
        f"Before calibration the model is {direction}: expected calibration error **{m['ece_uncalibrated']:.3f}** on the "
        f"test speakers. The temperature fitted on {source} "
        f"({describe_temperature(m['temperature'], m['temperature_slope'])}"
        f"{', d: the mean squared standardised feature of a clip' if m['temperature_slope'] else ''}) brings it to "
        f"**{m['ece']:.3f}**; on {m['n']} clips a perfectly calibrated model with these confidences would score "
        f"{floor['mean']:.3f} on average and up to {floor['p95']:.3f} in 95% of draws, so a value below that is "
        f"as good as this test set can show. Marking predictions below {m['abstain_threshold']:.0%} confidence as "
        f"uncertain keeps {m['coverage']:.0%} of the test clips, at {m['accuracy_kept']:.1%} accuracy (all clips: "
        f"{m['accuracy']:.1%}).{describe_caution(m.get('caution'), m.get('high_from'))}"
    )


def describe_caution(caution: dict | None, high_from: dict | None = None) -> str:
    """Sentences about the caution factors (:func:`fit_caution`) and high-tier floors (:func:`fit_high_tier`); "" without."""
    factors, floors = caution_factors(caution), high_tier_floors(high_from)
    text = (" A clip recognised as recorded under a condition has its temperature multiplied by that condition's "
            f"caution factor, which calibrates that condition's clips best: {factors}.") if factors else ""
    return text + (f" Its high tier starts where that condition's answers are as reliable as clean speech's from "
                   f"{HIGH_FROM:.0%}: {floors}.") if floors else text


def caution_factors(caution: dict | None) -> str:
    """``"babble 10 dB x1.21, white noise 15 dB x0.84"``: the factors other than 1 (see :func:`fit_caution`)."""
    return ", ".join(f"{name} x{factor:.2f}" for name, factor in (caution or {}).items() if factor != 1.0)


def high_tier_floors(high_from: dict | None) -> str:
    """``"babble 10 dB from 78%, room 0.7 s from 81%"``: the high tier's floors above the clean one (see :func:`fit_high_tier`)."""
    return ", ".join(f"{name} from {floor:.0%}" for name, floor in (high_from or {}).items() if floor > HIGH_FROM)


def recipe_comparison(runs) -> pd.DataFrame:
    """Test metrics of runs of different recipes (or protocols) side by side, one row per run."""
    rows = []
    for run in runs:
        m = run.metrics
        rows.append({
            "recipe": run.model.recipe, "protocol": run.protocol, "n": m["n"], "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"], "ece_uncalibrated": m["ece_uncalibrated"], "ece": m["ece"],
            "coverage": m["coverage"], "accuracy_kept": m["accuracy_kept"], "train_seconds": round(run.train_seconds, 1),
        })
    return pd.DataFrame(rows)


# What each recipe scores on real speech, measured by the benchmark in each row's command: the
# notebook shows it, the README holds it as Markdown (tests/test_notebook.py checks they agree).
REFERENCE_RESULTS = Path(__file__).with_name("reference_results.csv")


def reference_results() -> pd.DataFrame:
    """Accuracy, macro-F1 and calibration of each recipe on real RAVDESS speech (actors 01-16, 960 clips).

    Means and standard deviations over the folds or seeds of the benchmark named in ``command``;
    ECE pooled over all folds' test clips, before and after calibration. Only measured numbers:
    other corpora need the Kaggle bundle, which this project's machines cannot download.
    """
    return pd.read_csv(REFERENCE_RESULTS)


def reference_results_markdown() -> str:
    """:func:`reference_results` as the README's Markdown table."""
    lines = ["| recipe | evaluation | accuracy | macro-F1 | ECE before / after calibration | command |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in reference_results().itertuples(index=False):
        before = f"{row.ece_before:.3f}" if pd.notna(row.ece_before) else "-"
        ece = f"{before} / {row.ece_after:.3f}" if pd.notna(row.ece_after) else ""
        lines.append(f"| {row.recipe} | {row.evaluation} | {row.accuracy:.1%} ± {100 * row.accuracy_sd:.1f} | "
                     f"{row.macro_f1:.1%} ± {100 * row.macro_f1_sd:.1f} | {ece} | `{row.command}` |")
    return "\n".join(lines) + "\n"


# Clips per speaker the adaptation study draws (a speaker's clips arriving in batches of k).
ADAPTATION_K = (5, 10, 20)
# Emotions a user would enrol with: a calm, neutral voice.
ENROLMENT_EMOTIONS = ("neutral", "calm")


def adaptation_predictions(run, features: pd.DataFrame, *, seed: int = 0, repeats: int = 3) -> pd.DataFrame:
    """The run's test clips predicted under each condition of what is known of their speaker's voice.

    Every condition predicts every test clip once per repeat; a speaker's statistics come only
    from its unlabelled clips (labels choose the clips of the skewed and enrolment conditions, as a
    user's situation would):

    - ``per clip``: the per-clip model (the headline protocol);
    - ``all clips``: each speaker normalised by all of its test clips;
    - ``k clips`` (``ADAPTATION_K``): each speaker's clips dealt at random into batches of k,
      each batch normalised by itself (``repeats`` deals);
    - ``skewed (2 emotions)``: each speaker's emotions paired at random, each batch holding the
      clips of two emotions only (``repeats`` pairings);
    - ``neutral enrolment``: every clip normalised by the speaker's neutral and calm clips only.

    Returns
    -------
    predictions : pd.DataFrame [columns: condition, repeat, batch, path, speaker, emotion, predicted, confidence, adapted]
        ``batch``: the clips normalised together (None: per clip). Summarised by :func:`adaptation_table`.
    """
    from ser_lib.features import feature_matrix

    model = run.model
    if model.adaptive is None:
        raise ValueError("This run has no adaptive mode: train a recipe that has one with adaptive=True.")
    test = run.predictions[["path", "speaker", "emotion"]].reset_index(drop=True)
    if "augmentation" in features.columns:
        features = features[features["augmentation"] == "none"]
    x = feature_matrix(features.set_index("path").loc[test["path"]].reset_index(), recipe=model.recipe)
    speakers, emotions = test["speaker"].to_numpy(), test["emotion"].to_numpy()
    rng = np.random.default_rng(seed)

    def predicted(condition, batches, statistics=None):
        """``batches``: per repeat, a batch id per clip (clips of one batch are adapted to each other)."""
        frames = []
        for repeat, ids in enumerate(batches):
            probabilities, adapted, _ = model.predict_speakers(x, list(ids), statistics)
            frames.append(test.assign(condition=condition, repeat=repeat, batch=ids,
                                      predicted=np.asarray(model.classes)[probabilities.argmax(axis=1)],
                                      confidence=probabilities.max(axis=1), adapted=adapted))
        return frames

    frames = predicted("per clip", [np.full(len(test), None)]) + predicted("all clips", [speakers])
    for k in ADAPTATION_K:
        frames += predicted(f"{k} clips", [dealt(speakers, k, rng) for _ in range(repeats)])
    frames += predicted("skewed (2 emotions)", [paired(speakers, emotions, rng) for _ in range(repeats)])
    enrolment = np.isin(emotions, ENROLMENT_EMOTIONS)
    enrolled = {s: model.speaker_statistics(x[(speakers == s) & enrolment]) for s in np.unique(speakers[enrolment])}
    if enrolled:
        frames += predicted("neutral enrolment", [np.where(np.isin(speakers, list(enrolled)), speakers, None)], enrolled)
    columns = ["condition", "repeat", "batch", "path", "speaker", "emotion", "predicted", "confidence", "adapted"]
    return pd.concat(frames, ignore_index=True)[columns]


def adaptation_table(predictions: pd.DataFrame, classes) -> pd.DataFrame:
    """Accuracy, macro-F1 and ECE (with its noise floor) per condition of :func:`adaptation_predictions`.

    Returns
    -------
    table : pd.DataFrame [columns: condition, n, repeats, accuracy, macro_f1, ece, ece_perfect_p95]
        In the conditions' order. ``n``: clips (each predicted once per repeat); accuracy and
        macro-F1 over every repeat's predictions; ``ece`` the mean over repeats of each repeat's ECE
        on its ``n`` clips (the repeats predict the same clips, so pooling them would hide how noisy
        an ECE on ``n`` clips is), beside ``ece_perfect_p95``, what 95% of perfectly calibrated models
        with the same confidences stay under, likewise per repeat.
    """
    rows = []
    for condition, group in predictions.groupby("condition", sort=False):
        repeats = [part for _, part in group.groupby("repeat")]
        eces = [expected_calibration_error(part["confidence"], (part["predicted"] == part["emotion"]).to_numpy())
                for part in repeats]
        floors = [perfect_calibration_ece(part["confidence"].to_numpy())["p95"] for part in repeats]
        rows.append({"condition": condition, **summary_metrics(group["emotion"], group["predicted"], classes),
                     "n": len(repeats[0]), "repeats": len(repeats), "ece": float(np.mean(eces)),
                     "ece_perfect_p95": float(np.mean(floors))})
    return pd.DataFrame(rows)[["condition", "n", "repeats", "accuracy", "macro_f1", "ece", "ece_perfect_p95"]]


def describe_adaptation(table: pd.DataFrame) -> str:
    """A paragraph on :func:`adaptation_table`: what adapting to the speaker changes, and on what protocol."""
    rows = table.set_index("condition")
    per_clip = rows.loc["per clip"]
    parts = [f"Per clip (the headline protocol) {per_clip['accuracy']:.1%} accuracy on {int(per_clip['n'])} test clips."]
    if "all clips" in rows.index:
        adapted = rows.loc["all clips"]
        parts.append(
            f"Normalised by all of its speaker's unlabelled test clips: {adapted['accuracy']:.1%} "
            f"({adapted['accuracy'] - per_clip['accuracy']:+.1%}), macro-F1 {adapted['macro_f1']:.1%}, ECE {adapted['ece']:.3f} "
            f"(95% of perfectly calibrated models would stay under {adapted['ece_perfect_p95']:.3f})."
        )
    batches = [f"{c} {rows.loc[c, 'accuracy']:.1%}" for c in rows.index if c.endswith(" clips") and c != "all clips"]
    if batches:
        parts.append(f"In batches of a speaker's clips: {', '.join(batches)}.")
    for condition, what in (("skewed (2 emotions)", "batches holding two emotions only"),
                            ("neutral enrolment", "statistics from the neutral and calm clips only")):
        if condition in rows.index:
            parts.append(f"With {what}: {rows.loc[condition, 'accuracy']:.1%}.")
    parts.append("Adaptation uses other clips of the test speaker (never their labels): a different protocol from the "
                 "per-clip figures, for when a user has several clips of a voice.")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Recording conditions (ser_lib.conditions): telephone, codecs, noise, rooms, levels
# ---------------------------------------------------------------------------------------------

def recording_predictions(run, features: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """The run's test clips under each recording condition ``features`` holds, per clip and adapted.

    ``features``: :func:`ser_lib.extract_many` rows with an ``augmentation`` column, e.g. with
    ``augmentations=tuple(ser_lib.conditions.CONDITIONS)``; the test clips' rows of each condition
    are predicted (``"none"`` is ``clean``; speed copies are not recordings and are left out).
    When the model has an adaptive mode: ``adapted``, each speaker's clips of one condition
    normalised together (one voice through one channel), and ``adapted, 2 emotions``, in batches
    of two of its emotions each (a voice heard in few moods; the pairs drawn with ``seed``, the
    same under every condition). A speaker's statistics come from its unlabelled clips only.

    Returns
    -------
    predictions : pd.DataFrame [columns: recording, mode, path, speaker, emotion, predicted, confidence, tier, uncertain, note]
        ``tier``, ``uncertain`` and ``note`` as a prediction's (:meth:`ser_lib.model.EmotionModel.tiers`,
        :meth:`~ser_lib.model.EmotionModel.uncertain`, from the ``input_*`` measures of ``features``).
    """
    from ser_lib.conditions import CONDITIONS
    from ser_lib.features import feature_matrix

    model = run.model
    rows = features[features["path"].isin(set(run.predictions["path"]))]
    kinds = rows["augmentation"] if "augmentation" in rows.columns else pd.Series("none", index=rows.index)
    classes = np.asarray(model.classes)
    frames = []
    for kind in ["none", *CONDITIONS]:
        group = rows[kinds == kind]
        if not len(group):
            continue
        x = feature_matrix(group, recipe=model.recipe)
        measures = quality.measure_table(group) if set(quality.COLUMNS.values()) <= set(group.columns) else None
        recognised = model.recognise(x)
        notes = [model.input_note(None if measures is None else measures[k], None if recognised is None else recognised[k])
                 for k in range(len(group))]
        modes = [("per clip", model.predict_proba(x), np.zeros(len(x), dtype=bool))]
        if model.adaptive is not None:
            speakers = group["speaker"].to_numpy()
            modes.append(("adapted", *model.predict_speakers(x, speakers)[:2]))
            pairs = paired(speakers, group["emotion"].to_numpy(), np.random.default_rng(seed))
            modes.append(("adapted, 2 emotions", *model.predict_speakers(x, pairs)[:2]))
        for mode, probabilities, adapted in modes:
            confidence = probabilities.max(axis=1)
            frames.append(group[["path", "speaker", "emotion"]].assign(
                recording=CLEAN if kind == "none" else kind, mode=mode, predicted=classes[probabilities.argmax(axis=1)],
                confidence=confidence, tier=model.tiers(confidence, adapted, recognised),
                uncertain=model.uncertain(confidence, adapted, measures), note=notes))
    columns = ["recording", "mode", "path", "speaker", "emotion", "predicted", "confidence", "tier", "uncertain", "note"]
    return pd.concat(frames, ignore_index=True)[columns]


def recording_table(predictions: pd.DataFrame, classes) -> pd.DataFrame:
    """Per recording condition and mode: accuracy, macro-F1, ECE with its noise floor, and how confidently it errs.

    Returns
    -------
    table : pd.DataFrame [columns: recording, mode, n, accuracy, macro_f1, ece, ece_perfect_p95,
                          confidence, uncertain, high_n, high_wrong, high_wrong_clean_p95, confident_wrong]
        ``confidence``: the mean; ``uncertain``: the share marked uncertain; ``high_wrong``: the
        share of wrong answers among the ``high_n`` ``high``-tier ones (the ``tier`` column, else
        confidence >= 70%); ``high_wrong_clean_p95``: the share 95% of draws of ``high_n`` answers
        stay under when each is wrong as often as clean speech's high tier in that mode (a
        condition above it is less reliable than clean speech beyond what its few answers can
        explain; NaN without a clean row); ``confident_wrong``: among those not marked uncertain
        (what a user is told to trust).
    """
    from scipy.stats import binom

    rows = []
    for (recording, mode), group in predictions.groupby(["recording", "mode"], sort=False):
        correct = (group["predicted"] == group["emotion"]).to_numpy()
        confidence = group["confidence"].to_numpy()
        high = (group["tier"] == "high").to_numpy() if "tier" in group else confidence >= HIGH_FROM
        trusted = high & ~group["uncertain"].to_numpy(dtype=bool)
        rows.append({"recording": recording, "mode": mode, **summary_metrics(group["emotion"], group["predicted"], classes),
                     "ece": expected_calibration_error(confidence, correct),
                     "ece_perfect_p95": perfect_calibration_ece(confidence)["p95"], "confidence": float(confidence.mean()),
                     "uncertain": float(group["uncertain"].mean()), "high_n": int(high.sum()),
                     "high_wrong": float((~correct[high]).mean()) if high.any() else float("nan"),
                     "confident_wrong": float((~correct[trusted]).mean()) if trusted.any() else float("nan")})
    table = pd.DataFrame(rows)
    clean = table[table["recording"] == CLEAN].set_index("mode")["high_wrong"]
    share = table["mode"].map(clean).to_numpy(dtype=float)
    n = table["high_n"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        table["high_wrong_clean_p95"] = np.where(n > 0, binom.ppf(0.95, n, share) / n, np.nan)
    columns = ["recording", "mode", "n", "accuracy", "macro_f1", "ece", "ece_perfect_p95", "confidence", "uncertain",
               "high_n", "high_wrong", "high_wrong_clean_p95", "confident_wrong"]
    return table[columns]


def describe_recordings(table: pd.DataFrame) -> str:
    """A paragraph on :func:`recording_table`: how far each recording condition takes accuracy, and how confidently it errs."""
    rows = table.set_index(["recording", "mode"])
    clean = rows.loc[(CLEAN, "per clip")]
    parts = [f"Clean, per clip: {clean['accuracy']:.1%} accuracy, {clean['high_wrong']:.0%} of the high-tier answers wrong."]
    worst = table[(table["mode"] == "per clip") & (table["recording"] != CLEAN)].sort_values("accuracy")
    if len(worst):
        listed = ", ".join(f"{r.recording} {r.accuracy:.1%} ({r.uncertain:.0%} marked uncertain)" for r in worst.itertuples())
        parts.append(f"Per clip under each condition, worst first: {listed}.")
    adapted = table[(table["mode"] == "adapted") & (table["recording"] != CLEAN)]
    if len(adapted):
        gains = adapted.set_index("recording")["accuracy"] - worst.set_index("recording")["accuracy"]
        parts.append(f"Adapted to each speaker's clips through the same channel, the conditions gain {gains.min():+.1%} to "
                     f"{gains.max():+.1%} (a different protocol: it reads unlabelled clips of the test speaker).")
    few_moods = table[(table["mode"] == "adapted, 2 emotions") & (table["recording"] != CLEAN)]
    if len(few_moods):
        gains = few_moods.set_index("recording")["accuracy"] - worst.set_index("recording")["accuracy"]
        parts.append(f"A voice heard in two emotions at a time gains {gains.min():+.1%} to {gains.max():+.1%}.")
    if "high_wrong_clean_p95" in table.columns:
        beyond = table[(table["recording"] != CLEAN) & (table["high_wrong"] > table["high_wrong_clean_p95"])]
        parts.append("High-tier answers wrong more often than clean speech's, beyond what their number explains: "
                     + (", ".join(f"{r.recording} ({r.mode}, {r.high_wrong:.0%} of {r.high_n})" for r in beyond.itertuples())
                        if len(beyond) else "none") + ".")
    return " ".join(parts)
