"""Splits (by speaker, random or by corpus), the training every recipe shares, calibration and the test evaluation.

A random split puts clips of the same speakers in train and test, so its accuracy measures
recognising voices the model has heard. The ``speaker`` protocol keeps every speaker on one side
(the model is tested on voices it never heard), which is what a user meets; on real RAVDESS the
two differ by about 20 points (:func:`ser_lib.evaluate.reference_results`). Each recipe fits its
own classifier (``Recipe.fit``); around it, this module splits, adds the training copies of the
training clips only (and extracts those made of other speakers' clips, babble, once the split is
known, from training speakers only), and then tests. After fitting, a softmax
temperature (growing with a clip's atypicality) and an abstention threshold are chosen on held-out
training speakers, never on test.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ser_lib import evaluate, quality
from ser_lib.adapt import CALIBRATION_BATCHES, adapt_rows, dealt, fit_prior, paired, statistics_by_speaker
from ser_lib.conditions import CONDITIONS, NEEDS_TALKERS
from ser_lib.features import extract_many, feature_matrix
from ser_lib.model import CLEAN, EmotionModel, softmax
from ser_lib.recipes import get_recipe
from ser_lib.recipes.original import TRAINING_DEFAULTS

PROTOCOLS = ("speaker", "random", "corpus", "none")
# The original notebook's train / validation / test shares.
SPLIT_FRACTIONS = {"train": 0.713, "validation": 0.132, "test": 0.155}
# Share of validation predictions kept confident; the least confident fifth is marked uncertain.
ABSTAIN_COVERAGE = 0.8
# The recording-condition recogniser: a multinomial logistic regression of this C on the standardised
# features of at most RECOGNISER_ROWS training rows per condition (drawn with the seed), so that it costs
# the same on any corpus (16-35 s on a RAVDESS fold's 4,320 best rows).
RECOGNISER_C, RECOGNISER_ROWS = 0.01, 1000


def split_random(table: pd.DataFrame, *, seed: int = 0) -> pd.Series:
    """Stratified by emotion, 71.3 / 13.2 / 15.5: the original's split (speakers are shared)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(table))
    labels = table["emotion"].to_numpy()
    rest, test = train_test_split(index, test_size=SPLIT_FRACTIONS["test"], stratify=labels, random_state=seed)
    validation_share = SPLIT_FRACTIONS["validation"] / (1 - SPLIT_FRACTIONS["test"])
    train, validation = train_test_split(rest, test_size=validation_share, stratify=labels[rest], random_state=seed)
    split = np.empty(len(table), dtype=object)
    split[train], split[validation], split[test] = "train", "validation", "test"
    return pd.Series(split, index=table.index, name="split")


def split_speakers(table: pd.DataFrame, *, seed: int = 0, fractions: dict = SPLIT_FRACTIONS) -> pd.Series:
    """No speaker in more than one of train / validation / test; every corpus in each where it can be.

    Speakers are split within each corpus (so each corpus, and every emotion it has, reaches each
    part), alternating genders where they are known, in about the random split's shares. A corpus
    with two speakers (TESS) gives one to train and one to test; with one, it stays in train.
    """
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=table.index, name="split", dtype=object)
    for corpus in sorted(table["corpus"].unique()):
        rows = table["corpus"] == corpus
        speakers = table.loc[rows].groupby("speaker")["gender"].first().fillna("unknown")
        by_gender = [list(rng.permutation(sorted(group.index))) for _, group in speakers.groupby(speakers, sort=True)]
        # Round-robin over genders, so the first few speakers (test, then validation) mix them.
        order = [s for batch in _interleave(by_gender) for s in batch]
        n = len(order)
        n_test = max(1, round(fractions["test"] * n)) if n >= 2 and fractions["test"] > 0 else 0
        n_validation = max(1, round(fractions["validation"] * n)) if n - n_test >= 2 and fractions["validation"] > 0 else 0
        test, validation = set(order[:n_test]), set(order[n_test : n_test + n_validation])
        split[rows & table["speaker"].isin(test)] = "test"
        split[rows & table["speaker"].isin(validation)] = "validation"
    return split


def _interleave(groups: list[list]) -> list[list]:
    longest = max((len(g) for g in groups), default=0)
    return [[g[i] for g in groups if i < len(g)] for i in range(longest)]


def split_corpus(table: pd.DataFrame, test_corpus: str, *, seed: int = 0) -> pd.Series:
    """Cross-corpus: test on every clip of ``test_corpus``; train and validate on the other corpora by speaker."""
    if test_corpus not in set(table["corpus"]):
        raise ValueError(f"Cannot test on corpus {test_corpus!r}: the data holds {sorted(table['corpus'].unique())}.")
    others = table["corpus"] != test_corpus
    if not others.any():
        raise ValueError(f"Cross-corpus testing on {test_corpus!r} needs another corpus to train on; the data holds only it.")
    split = pd.Series("test", index=table.index, name="split", dtype=object)
    fractions = {"train": 0.85, "validation": 0.15, "test": 0.0}
    split[others] = split_speakers(table.loc[others], seed=seed, fractions=fractions)
    return split


def make_split(table: pd.DataFrame, protocol: str = "speaker", *, seed: int = 0, test_corpus: str | None = None) -> pd.Series:
    """``train`` / ``validation`` / ``test`` for each row under a protocol.

    ``speaker`` (unseen speakers), ``random`` (the original's), ``corpus`` (test on ``test_corpus``,
    train on the others) or ``none``: no test part, every speaker in train or validation, for a
    model to use once another protocol has measured the recipe.
    """
    if protocol == "speaker":
        return split_speakers(table, seed=seed)
    if protocol == "none":
        shares = SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["validation"]
        fractions = {"train": SPLIT_FRACTIONS["train"] / shares, "validation": SPLIT_FRACTIONS["validation"] / shares, "test": 0.0}
        return split_speakers(table, seed=seed, fractions=fractions)
    if protocol == "random":
        return split_random(table, seed=seed)
    if protocol == "corpus":
        return split_corpus(table, test_corpus, seed=seed)
    raise ValueError(f"Unknown split protocol {protocol!r}: expected one of {PROTOCOLS}.")


@dataclass
class TrainingRun:
    """A trained model, how it was trained, and how it did on its test part."""

    protocol: str
    seed: int
    model: EmotionModel
    keras_model: object
    history: pd.DataFrame
    split: pd.Series
    predictions: pd.DataFrame
    metrics: dict
    per_corpus: pd.DataFrame
    train_seconds: float
    settings: dict = field(default_factory=dict)
    # The adaptive mode's test predictions (each test speaker normalised by its own clips; ``adapted``
    # per row) and metrics, when the recipe has one (ser_lib.adapt).
    adaptive_predictions: pd.DataFrame | None = None
    adaptive_metrics: dict = field(default_factory=dict)

    @property
    def classes(self) -> list:
        return self.model.classes

    @property
    def confusion(self) -> pd.DataFrame:
        return evaluate.confusion_table(self.predictions["emotion"], self.predictions["predicted"], self.classes)

    @property
    def report(self) -> pd.DataFrame:
        return evaluate.classification_report_table(self.predictions["emotion"], self.predictions["predicted"], self.classes)


def train(
    features: pd.DataFrame,
    *,
    recipe: str = "original",
    protocol: str = "speaker",
    test_corpus: str | None = None,
    seed: int = 0,
    epochs: int = TRAINING_DEFAULTS["epochs"],
    batch_size: int = TRAINING_DEFAULTS["batch_size"],
    patience: int = TRAINING_DEFAULTS["patience"],
    coverage: float = ABSTAIN_COVERAGE,
    split: pd.Series | None = None,
    adaptive: bool = True,
    progress: bool = True,
    n_jobs: int = -1,
    scheduler: str | None = None,
) -> TrainingRun:
    """Split, fit a recipe's classifier on the train part, calibrate it on validation, test it.

    Parameters
    ----------
    features : pd.DataFrame
        From :func:`ser_lib.extract_many` with the same ``recipe``: the labels (``emotion``,
        ``corpus``, ``speaker``, ...) and the recipe's feature columns.
    recipe : str
        A name of :func:`ser_lib.recipes.recipe_names`: ``"original"`` (the 512-256-128-64 MLP on
        the 195 features) or ``"functionals_fusion"`` (alias ``"best"``: three fused logistic
        regressions on 7,784 functionals). A recipe that chooses its settings and calibrates by
        speaker-grouped cross-validation (``cross_validated``) trains on the train and validation
        parts together. Rows with an ``augmentation`` other than ``"none"`` are training copies:
        the split is made on the original clips, and only copies of training clips (same
        ``path``) are trained on. A recipe's copies made of other speakers' clips
        (``Recipe.talker_copies``: babble) are extracted here, once the split is known, from the
        training clips' files with other training speakers as the talkers (cached like
        :func:`ser_lib.extract_many`'s); such copies in ``features`` are dropped with a warning,
        as their talkers may be held-out speakers.
    protocol : {'speaker', 'random', 'corpus', 'none'}
        How to split (see the module docstring); ``corpus`` tests on ``test_corpus``; ``none``
        keeps no test part (every speaker trains; the metrics hold only ``n`` = 0, the temperature
        and the abstention threshold).
    seed : int
        One seed for the split, the weights' initialisation, dropout and batch order: a rerun
        gives the same split and the same metrics.
    epochs, batch_size, patience : int
        The original's defaults: up to 100 epochs of batches of 32, early stopping on validation
        loss after 15 flat epochs (restoring the best weights); the learning rate halves after 5.
    coverage : float
        Share of validation predictions kept above the abstention threshold; the rest are
        ``uncertain``.
    split : pd.Series, optional
        ``train`` / ``validation`` / ``test`` per row, to use instead of ``protocol`` (e.g. the
        folds of a cross-validation).
    adaptive : bool
        Also fit the recipe's adaptive mode, when it has one (``Recipe.adaptive``; :mod:`ser_lib.adapt`),
        calibrated on its own and tested with each test speaker normalised by its unlabelled clips
        (``run.adaptive_predictions``, ``run.adaptive_metrics``). It about doubles the training time.
    n_jobs, scheduler
        Where the copies training extracts (``Recipe.talker_copies``) are computed, as in
        :func:`ser_lib.extract_many`: worker processes (-1: every core), or a Dask scheduler's address.

    Returns
    -------
    run : TrainingRun
        Test probabilities are calibrated: a softmax temperature and its slope on atypicality
        (:func:`ser_lib.evaluate.fit_calibration`) fitted on held-out predictions (never on test)
        make the confidence match the accuracy. Those are the recipe's own when it
        returns ``calibration`` (``best``: speaker-grouped out-of-fold predictions over the train
        and validation speakers), else the validation part's (``original``); the abstention threshold
        comes from the same predictions. ``settings["calibrated_on"]`` says which. A model
        trained with copies under recording conditions also recognises each clip's condition
        (``model.recogniser``, fitted on the training rows) and multiplies its temperature by that
        condition's caution factor (:func:`ser_lib.evaluate.fit_caution`, on the same held-out
        predictions), and starts that condition's ``high`` tier where it is as reliable as on clean
        speech (:func:`ser_lib.evaluate.fit_high_tier`).
    """
    recipe = get_recipe(recipe)
    features, augmented, split = _separate_augmented(features, split)
    if split is None:
        split = make_split(_checked_labels(features), protocol, seed=seed, test_corpus=test_corpus)
    else:
        _checked_labels(features)
        protocol = "given"
    parts = training_parts(split, recipe, protocol=protocol, table=features)
    augmented = _with_talker_copies(augmented, features.loc[parts["train"]], recipe, progress=progress, n_jobs=n_jobs,
                                    scheduler=scheduler)

    classes = sorted(features["emotion"].unique())
    x = feature_matrix(features, recipe=recipe)
    y = features["emotion"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    x_fit, y_fit, parts_fit, groups_fit, copies = _add_augmented_training_rows(
        x, y, parts, features, augmented, recipe=recipe, classes=classes
    )
    # The first len(x) rows are the original clips, the rest augmented copies of training clips. A speed
    # copy is a training device, never predicted; a copy under a recording condition is a recording of its
    # own, its speaker through another channel: held out and calibrated on by the recipe, and a voice of its
    # own to the adaptive mode.
    kinds = np.concatenate([np.full(len(x), "none", dtype=object), np.asarray(copies.get("augmentation", []), dtype=object)])
    recorded = np.isin(kinds, list(CONDITIONS))
    recording = np.where(recorded, kinds, CLEAN)  # each row's recording condition
    is_copy = ~recorded & (kinds != "none")
    voices_fit = np.array([f"{speaker} | {kind}" if kind in CONDITIONS else speaker
                           for speaker, kind in zip(groups_fit, kinds)], dtype=object)
    start = time.perf_counter()
    fitted = recipe.fit(
        x_fit, y_fit, parts_fit, n_classes=len(classes), seed=seed, epochs=epochs, batch_size=batch_size, patience=patience,
        progress=progress, description=f"Training {recipe.name} ({protocol} split)", groups=groups_fit, is_copy=is_copy,
        recorded=recorded,
    )
    train_seconds = time.perf_counter() - start
    model = EmotionModel(
        classes=classes, layers=fitted["layers"], scaler_mean=fitted["scaler_mean"], scaler_scale=fitted["scaler_scale"],
        recipe=recipe.name,
    )
    if set(quality.COLUMNS.values()) <= set(features.columns):  # tables from before the measures have none
        trained_on = pd.concat([features.loc[parts["train"]], copies])
        model.metadata["input_limits"] = quality.fit_limits(quality.measure_table(trained_on))
    if recorded[parts_fit["train"]].any() and "calibration_rows" in fitted:  # caution is fitted on the recipe's held-out rows
        model.recogniser, model.conditions = _fit_recogniser(model, x_fit, recording, parts_fit["train"], seed=seed)
    test = features.loc[parts["test"]]
    uncalibrated = model.predict_proba_uncalibrated(x[parts["test"]])
    calibration_metrics = _calibrate(model, fitted, x[parts["validation"]], y[parts["validation"]], coverage, recording)
    predictions = _test_predictions(test, model.predict_proba(x[parts["test"]]), uncalibrated, classes)
    metrics = _test_metrics(predictions, model, calibration_metrics, classes)

    adaptive_predictions, adaptive_metrics = None, {}
    if adaptive and recipe.adaptive:
        start = time.perf_counter()
        adaptive_predictions, adaptive_metrics = _fit_adaptive(
            model, recipe, features, x, y, parts, x_fit, y_fit, parts_fit, groups_fit, voices_fit, is_copy, recording, classes,
            coverage,
            uncalibrated, seed=seed, epochs=epochs, batch_size=batch_size, patience=patience, progress=progress,
            description=f"Training {recipe.name}, adaptive ({protocol} split)",
        )
        train_seconds += time.perf_counter() - start

    return TrainingRun(
        protocol=protocol if protocol != "corpus" else f"corpus:{test_corpus}", seed=seed, model=model,
        keras_model=fitted["keras_model"], history=fitted["history"], split=split, predictions=predictions,
        metrics=metrics, per_corpus=evaluate.per_group_metrics(predictions, predictions["predicted"], classes),
        train_seconds=train_seconds,
        settings={"recipe": recipe.name, "augmented_train_rows": int(len(x_fit) - len(x)),
                  "calibrated_on": metrics.pop("calibrated_on"), "calibration_clips": metrics.pop("calibration_clips"),
                  **fitted["settings"]},
        adaptive_predictions=adaptive_predictions, adaptive_metrics=adaptive_metrics,
    )


def _fit_adaptive(model, recipe, features, x, y, parts, x_fit, y_fit, parts_fit, groups_fit, voices_fit, is_copy, recording,
                  classes, coverage, uncalibrated, *, description, **options):
    """Fit, calibrate and test the adaptive mode (:mod:`ser_lib.adapt`); sets ``model.adaptive`` and ``model.prior``.

    Every voice is normalised by its own clips: a speaker by its original clips (its speed copies
    by them too), a speaker through a recording condition (``voices_fit``) by its clips under it;
    the population statistics come from the training speakers' original clips. A voice the fit
    learns from (train, validation) is normalised with its emotions' shares from its labels; test
    speakers are adapted after fitting, from their unlabelled clips
    (:meth:`EmotionModel.adapt_speakers`). Returns the test predictions and metrics.
    """
    speakers = features["speaker"].to_numpy()
    n_classes = len(classes)
    model.prior = fit_prior(x[parts["train"]], speakers[parts["train"]], y[parts["train"]], n_classes)
    labelled = (parts_fit["train"] | parts_fit["validation"]) & ~is_copy
    statistics = statistics_by_speaker(x_fit[labelled], voices_fit[labelled], y_fit[labelled], n_classes)
    fit_rows = np.isin(voices_fit, list(statistics))
    x_adapted = x_fit.copy()
    x_adapted[fit_rows] = adapt_rows(x_fit[fit_rows], voices_fit[fit_rows], statistics, model.prior)
    fitted = recipe.fit(x_adapted, y_fit, parts_fit, n_classes=n_classes, description=description, groups=groups_fit,
                        is_copy=is_copy, recorded=recording != CLEAN, **options)
    model.adaptive = EmotionModel(classes=classes, layers=fitted["layers"], scaler_mean=fitted["scaler_mean"],
                                  scaler_scale=fitted["scaler_scale"], recipe=recipe.name, conditions=model.conditions)
    if "held_out_models" in fitted:
        held_out = [(EmotionModel(classes=classes, layers=fold["layers"], scaler_mean=fold["scaler_mean"],
                                  scaler_scale=fold["scaler_scale"], recipe=recipe.name), fold["rows"])
                    for fold in fitted["held_out_models"]]
        calibrated_on = fitted["settings"].get("calibrated_on", "the recipe's held-out models")
        if model.conditions:
            model.typical_shares = _choose_shares(model, held_out, x_fit, y_fit, voices_fit, recording, seed=options["seed"])
    else:  # the model is not calibrated yet: it predicts the validation speakers as trained
        held_out, calibrated_on = [(model.adaptive, parts_fit["validation"])], "validation"
    calibration = _calibrate_adaptive(model, held_out, x_fit, y_fit, voices_fit, recording, coverage, seed=options["seed"])
    calibration["calibrated_on"] = (f"{calibrated_on}: held-out speakers adapted as at prediction, with all their clips, "
                                    f"in batches of {', '.join(map(str, CALIBRATION_BATCHES))} and in batches of two emotions")

    test = features.loc[parts["test"]]
    probabilities, adapted, _ = model.predict_speakers(x[parts["test"]], speakers[parts["test"]])
    adapted_test, _, _ = model.adapt_speakers(x[parts["test"]], speakers[parts["test"]])
    uncalibrated = uncalibrated.copy()  # a speaker with one test clip is per clip
    if adapted.any():
        uncalibrated[adapted] = model.adaptive.predict_proba_uncalibrated(adapted_test[adapted])
    predictions = _test_predictions(test, probabilities, uncalibrated, classes).assign(adapted=adapted)
    return predictions, _test_metrics(predictions, model.adaptive, calibration, classes)


def _calibrate(model: EmotionModel, fitted: dict, x_validation, y_validation, coverage: float, recording) -> dict:
    """Set a model's temperature, its slope, caution factors, high-tier floors and abstention threshold from held-out predictions.

    The recipe's own (``fitted["calibration"]`` of the rows ``fitted["calibration_rows"]``, e.g.
    out-of-fold over the training speakers) when it gives them, else the validation speakers' (all
    clean speech: training copies are of training clips). ``recording``: each row's recording
    condition. Returns the calibration metrics, where they came from (``calibrated_on``) and how
    many clips (``calibration_clips``).
    """
    calibration = fitted.get("calibration")
    if calibration is None:
        probabilities, labels = model.predict_proba_uncalibrated(x_validation), y_validation
        spread = model.atypicality(x_validation)
        calibrated_on, conditions = "validation", None
    else:
        probabilities, labels, spread = (np.asarray(a) for a in calibration)
        calibrated_on = fitted["settings"].get("calibrated_on", "recipe's held-out predictions")
        conditions = recording[fitted["calibration_rows"]] if "calibration_rows" in fitted else None
    return {**_fit_calibration(model, probabilities, labels, spread, coverage=coverage, conditions=conditions),
            "calibrated_on": calibrated_on, "calibration_clips": int(len(labels))}


def _fit_calibration(model: EmotionModel, probabilities, labels, spread, *, coverage: float, n_clips=None,
                     threshold_rows=None, conditions=None, batchings=None) -> dict:
    """Fit and set a model's temperature (its slope, its clip term with ``n_clips``), caution, high tier and abstention threshold.

    The caution factors (:func:`ser_lib.evaluate.fit_caution`) and the high tier's floors
    (:func:`ser_lib.evaluate.fit_high_tier`) are fitted when the model has ``conditions`` to
    recognise and ``conditions`` gives each row's (the floors hold for each of ``batchings``, each
    row's way of being adapted, when given). The threshold keeps ``coverage`` of the
    calibrated predictions (of ``threshold_rows``, default all). Returns the fitted values with the
    threshold.
    """
    fitted = evaluate.fit_calibration(probabilities, labels, spread, n_clips)
    model.temperature, model.temperature_slope = fitted["temperature"], fitted["temperature_slope"]
    model.temperature_per_clip = fitted.get("temperature_per_clip", 0.0)
    caution = None
    if model.conditions and conditions is not None:
        model.caution = evaluate.fit_caution(probabilities, labels, model.temperature_at(spread, n_clips), conditions)
        caution = np.array([model.caution[condition] for condition in conditions])
        fitted["caution"] = model.caution
    log_p = np.log(np.clip(probabilities, 1e-12, 1.0))
    calibrated = softmax(log_p / model.temperature_at(spread, n_clips, caution)[:, None])
    confidence = calibrated.max(axis=1)
    if caution is not None:
        model.high_from = evaluate.fit_high_tier(confidence, calibrated.argmax(axis=1) == labels, conditions,
                                                 batchings=batchings)
        fitted["high_from"] = model.high_from
    rows = slice(None) if threshold_rows is None else threshold_rows
    model.metadata["abstain_threshold"] = evaluate.coverage_threshold(confidence[rows], coverage=coverage)
    model.metadata["abstain_coverage"] = coverage
    return {**fitted, "abstain_threshold": model.metadata["abstain_threshold"]}


def _choose_shares(model: EmotionModel, held_out: list, x, y, voices, recording, *, seed: int) -> tuple:
    """The recording conditions whose voices adapt better with the typical emotion shares than with estimated ones.

    Measured on held-out voices (``held_out``: (uncalibrated adaptive model, rows of speakers it did
    not learn from) pairs; ``voices``: each row's voice; ``recording``: its condition), adapted as a
    user's are (:meth:`EmotionModel.adapt_speakers`) both ways: with all their clips and in random
    batches of ``CALIBRATION_BATCHES`` (balanced), and in batches of two emotions each
    (:func:`~ser_lib.adapt.paired`: a voice heard in few moods). A condition keeps typical shares
    when their accuracy, balanced and two-emotion batches counted alike, beats the estimate's:
    under heavy noise the adaptive model's probabilities lean toward a few emotions, and the
    estimated shares correct the voice's mean by emotions it does not hold.
    """
    rng = np.random.default_rng(seed)
    correct = {}  # (condition, batches, typical) -> list of per-row correctness arrays
    for fold_model, rows in held_out:
        rows = np.flatnonzero(rows)
        batchings = [("balanced", voices[rows])] + [("balanced", dealt(voices[rows], size, rng)) for size in CALIBRATION_BATCHES]
        batchings.append(("two emotions", paired(voices[rows], y[rows], rng)))
        for typical in (False, True):
            as_user = replace(model, adaptive=fold_model, typical_shares=model.conditions if typical else ())
            for batches, ids in batchings:
                adapted_x, adapted, _ = as_user.adapt_speakers(x[rows], ids)
                right = fold_model.predict_proba_uncalibrated(adapted_x[adapted]).argmax(axis=1) == y[rows][adapted]
                for condition in np.unique(recording[rows][adapted]):
                    correct.setdefault((condition, batches, typical), []).append(right[recording[rows][adapted] == condition])

    def accuracy(condition, typical):
        return np.mean([np.concatenate(correct[condition, batches, typical]).mean() for batches in ("balanced", "two emotions")
                        if (condition, batches, typical) in correct])

    conditions = {condition for condition, _, _ in correct}
    return tuple(sorted(c for c in conditions if accuracy(c, True) > accuracy(c, False)))


def _calibrate_adaptive(model: EmotionModel, held_out: list, x, y, speakers, recording, coverage: float, *, seed: int) -> dict:
    """Calibrate ``model.adaptive`` on held-out speakers adapted exactly as a user's are (see :func:`_calibrate`).

    ``held_out``: (uncalibrated adaptive model, rows of speakers it did not learn from) pairs;
    ``speakers``: each row's voice (a speaker, or a speaker through a recording condition),
    ``recording`` its recording condition (for the caution factors). Each voice's rows are adapted
    as :meth:`EmotionModel.adapt_speakers` does (emotions' shares estimated by that model, or
    typical under ``model.typical_shares``), with all of them, dealt into batches of each of
    ``CALIBRATION_BATCHES`` (so the temperature's clip term learns how much rougher few clips
    are) and in batches of two emotions (:func:`~ser_lib.adapt.paired`: a voice heard in few
    moods, whose estimated emotion shares are off); the abstention threshold keeps ``coverage`` of
    the predictions with all of a speaker's clips, and each condition's high tier holds for each of
    these ways against clean speech adapted the same way.
    """
    rng = np.random.default_rng(seed)
    versions = []
    for fold_model, rows in held_out:
        as_user = replace(model, adaptive=fold_model)
        rows = np.flatnonzero(rows)
        batchings = ([speakers[rows]] + [dealt(speakers[rows], size, rng) for size in CALIBRATION_BATCHES]
                     + [paired(speakers[rows], y[rows], rng)])
        for k, ids in enumerate(batchings):
            adapted_x, adapted, n_clips = as_user.adapt_speakers(x[rows], ids)
            kept = adapted_x[adapted]  # a batch of one clip is predicted per clip
            versions.append((fold_model.predict_proba_uncalibrated(kept), y[rows][adapted], fold_model.atypicality(kept),
                             n_clips[adapted], np.full(adapted.sum(), k), recording[rows][adapted]))
    probabilities, labels, spread, n_clips, batchings, conditions = (np.concatenate(column) for column in zip(*versions))
    full = batchings == 0  # each voice with all its clips
    return {**_fit_calibration(model.adaptive, probabilities, labels, spread, coverage=coverage, n_clips=n_clips,
                               threshold_rows=full, conditions=conditions, batchings=batchings),
            "calibration_clips": int(full.sum())}


def _fit_recogniser(model: EmotionModel, x, recording, rows, *, seed: int) -> tuple[list, tuple]:
    """A recogniser of each row's recording condition from its standardised features, fitted on ``rows``.

    A multinomial logistic regression (``RECOGNISER_C``) on at most ``RECOGNISER_ROWS`` rows of each
    condition; returned as one softmax layer for :func:`ser_lib.model.forward`, with the conditions
    in its output order (ENHANCEMENTS.md: how often it names the condition of test speakers' recordings).
    """
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.permutation(np.flatnonzero(rows & (recording == condition)))[:RECOGNISER_ROWS]
                             for condition in np.unique(recording[rows])])
    standardised = (x[chosen] - model.scaler_mean) / model.scaler_scale
    fitted = LogisticRegression(C=RECOGNISER_C, max_iter=300).fit(standardised, recording[chosen])
    kernel, bias = fitted.coef_.T, fitted.intercept_
    if len(fitted.classes_) == 2:  # a binary fit has one column: the second class's logit against the first's 0
        kernel, bias = np.hstack([np.zeros_like(kernel), kernel]), np.concatenate([[0.0], bias])
    layer = {"kind": "dense", "activation": "softmax", "kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    return [layer], tuple(str(name) for name in fitted.classes_)


def _test_predictions(test: pd.DataFrame, probabilities: np.ndarray, uncalibrated: np.ndarray, classes: list) -> pd.DataFrame:
    """The test clips' prediction table, the confidence before calibration beside the calibrated one."""
    predictions = prediction_table(test, probabilities, classes)
    predictions.insert(predictions.columns.get_loc("confidence") + 1, "confidence_uncalibrated", uncalibrated.max(axis=1))
    return predictions


def _test_metrics(predictions: pd.DataFrame, model: EmotionModel, calibration_metrics: dict, classes: list) -> dict:
    """Accuracy, F1, ECE before and after calibration, and abstention of a test table (only calibration without test)."""
    if not len(predictions):  # protocol "none" has no test part to score
        return {"n": 0, **calibration_metrics}
    correct = (predictions["predicted"] == predictions["emotion"]).to_numpy()
    kept = predictions["confidence"].to_numpy() >= model.metadata["abstain_threshold"]
    return {
        **evaluate.summary_metrics(predictions["emotion"], predictions["predicted"], classes),
        "ece_uncalibrated": evaluate.expected_calibration_error(predictions["confidence_uncalibrated"], correct),
        "ece": evaluate.expected_calibration_error(predictions["confidence"], correct),
        **calibration_metrics,
        "coverage": float(kept.mean()),
        "accuracy_kept": float(correct[kept].mean()) if kept.any() else float("nan"),
    }


def _checked_labels(table: pd.DataFrame) -> pd.DataFrame:
    missing = {"emotion", "corpus", "speaker"} - set(table.columns)
    if missing:
        raise ValueError(f"Expected the label columns emotion, corpus and speaker; missing {sorted(missing)}.")
    if table["emotion"].nunique() < 2:
        raise ValueError(f"Expected at least two emotions to learn, got {sorted(table['emotion'].unique())}.")
    return table


def training_parts(split: pd.Series, recipe="original", *, protocol: str, table: pd.DataFrame) -> dict:
    """The train / validation / test rows (boolean arrays) a recipe uses from a split, checked not to be empty.

    A recipe that cross-validates over its training speakers (``cross_validated``) trains on the
    validation speakers too. :func:`check_split` runs this on the labels alone, so that a split
    that cannot train fails before any feature is extracted.

    Raises
    ------
    ValueError
        A part the recipe needs is empty (too few speakers for the protocol): the message says what would do.
    """
    recipe = get_recipe(recipe)
    parts = {name: (split == name).to_numpy() for name in SPLIT_FRACTIONS}
    required = list(SPLIT_FRACTIONS)
    if recipe.cross_validated:
        # Its settings and calibration come from cross-validation over the training speakers:
        # validation speakers are more training speakers.
        parts = {"train": parts["train"] | parts["validation"], "validation": np.zeros(len(split), dtype=bool),
                 "test": parts["test"]}
        required = ["train", "test"]
    if protocol == "none":
        required.remove("test")
    empty = [name for name in required if not parts[name].any()]
    if empty:
        raise ValueError(
            f"The {protocol} split left {empty} empty: {len(table)} clips from "
            f"{table.groupby('corpus')['speaker'].nunique().to_dict()} speakers are too few. Add corpora with more "
            "speakers, or split at random (protocol='random', `ser train --split random`), which shares speakers "
            "between the parts."
        )
    return parts


def check_split(table: pd.DataFrame, *, recipe="original", protocol: str = "speaker", test_corpus: str | None = None,
                seed: int = 0) -> None:
    """Raise the error :func:`train` would raise for this split, from the labels alone (before extracting features)."""
    training_parts(make_split(_checked_labels(table), protocol, seed=seed, test_corpus=test_corpus), recipe,
                   protocol=protocol, table=table)


def _separate_augmented(features: pd.DataFrame, split: pd.Series | None):
    """The original clips, the augmented copies, and a given split restricted to the originals."""
    if "augmentation" not in features.columns:
        return features, features.iloc[:0], split
    is_original = (features["augmentation"] == "none").to_numpy()
    if split is not None:
        if len(split) == len(features):
            split = pd.Series(np.asarray(split)[is_original], index=features.index[is_original], name="split")
        elif len(split) != is_original.sum():
            raise ValueError(
                f"Expected a split with one entry per row ({len(features)}) or per original clip ({is_original.sum()}), "
                f"got {len(split)}."
            )
    return features.loc[is_original], features.loc[~is_original], split


def _with_talker_copies(augmented: pd.DataFrame, training: pd.DataFrame, recipe, **options) -> pd.DataFrame:
    """The training copies with the recipe's copies made of other speakers (babble) of the ``training`` clips' speakers only.

    Given copies made of other speakers are dropped (their talkers may be held-out speakers); a
    training clip that gives no such copy (too few other training speakers, an unreadable file)
    trains without it, and a warning says how many and why. ``options``: :func:`ser_lib.extract_many`'s
    ``progress``, ``n_jobs`` and ``scheduler``.
    """
    given = augmented["augmentation"].isin(list(NEEDS_TALKERS)) if len(augmented) else np.zeros(0, dtype=bool)
    if given.any():
        warnings.warn(f"Dropped {int(given.sum())} given training copies made of other speakers' clips "
                      f"({', '.join(sorted(set(augmented.loc[given, 'augmentation'])))}): their talkers may be held-out "
                      "speakers; training makes its own of the training speakers.", stacklevel=3)
        augmented = augmented.loc[~given]
    if not recipe.talker_copies or not len(training):
        return augmented
    copies, skipped = extract_many(training, recipe=recipe.name, augmentations=recipe.talker_copies, originals=False,
                                   return_skipped=True, warn=False, **options)
    if len(skipped):
        warnings.warn(f"{len(skipped)} of {len(training)} training clips gave no {' / '.join(recipe.talker_copies)} copy "
                      f"and train without one, e.g. {skipped['reason'].iloc[0]}", stacklevel=3)
    return pd.concat([augmented, copies], ignore_index=True)


def _add_augmented_training_rows(x, y, parts, features, augmented, *, recipe, classes):
    """Append the augmented copies of training clips, and only those, to the training part.

    Also returns the speaker of every returned row (a copy gets its original clip's speaker), and
    the copies kept (their rows of ``augmented``).

    A copy belongs to the clip with its ``path``: copies of validation and test clips (or of clips
    not in ``features`` at all) are dropped, so no version of a held-out clip reaches training.
    """
    groups = features["speaker"].to_numpy()
    if augmented.empty:
        return x, y, parts, groups, augmented
    train_paths = set(features.loc[parts["train"], "path"])
    held_out = set(features.loc[~parts["train"], "path"])
    keep = augmented["path"].isin(train_paths - held_out).to_numpy()
    kept = augmented.loc[keep]
    unknown = sorted(set(kept["emotion"]) - set(classes))
    if unknown:
        raise ValueError(f"Augmented rows have emotions {unknown} that no original clip has.")
    x_fit = np.concatenate([x, feature_matrix(kept, recipe=recipe)])
    y_fit = np.concatenate([y, kept["emotion"].map({c: i for i, c in enumerate(classes)}).to_numpy()])
    parts_fit = {name: np.concatenate([rows, np.full(len(kept), name == "train")]) for name, rows in parts.items()}
    # A copy's speaker is its clip's (by path), so grouping by speaker keeps a clip and its copies together.
    speaker_of = dict(zip(features["path"], features["speaker"]))
    groups_fit = np.concatenate([groups, kept["path"].map(speaker_of).to_numpy()])
    return x_fit, y_fit, parts_fit, groups_fit, kept


def prediction_table(table: pd.DataFrame, probabilities: np.ndarray, classes: list) -> pd.DataFrame:
    """The labels of each clip with its predicted emotion, confidence and class probabilities."""
    labels = [c for c in ("path", "corpus", "speaker", "gender", "emotion") if c in table.columns]
    result = table[labels].reset_index(drop=True)
    result["predicted"] = np.asarray(classes)[probabilities.argmax(axis=1)]
    result["confidence"] = probabilities.max(axis=1)
    return pd.concat([result, pd.DataFrame(probabilities, columns=[f"p_{c}" for c in classes])], axis=1)


def protocol_comparison(runs: list[TrainingRun]) -> pd.DataFrame:
    """Accuracy and macro-F1 of each run, overall and per corpus, one row per protocol and corpus."""
    frames = [run.per_corpus.assign(protocol=run.protocol) for run in runs]
    table = pd.concat(frames, ignore_index=True)
    return table[["protocol", "corpus", "n", "accuracy", "macro_f1", "weighted_f1"]]


def cross_corpus(features: pd.DataFrame, *, recipe: str = "original", seed: int = 0, progress: bool = True, **options) -> pd.DataFrame:
    """Train on all corpora but one and test on that one, for each corpus: how far a model travels.

    Per clip: the models are trained without their adaptive mode, which the table does not score.

    Returns
    -------
    table : pd.DataFrame [columns: test_corpus, trained_on, n, accuracy, macro_f1, weighted_f1]
        A corpus whose emotions were never trained (calm outside RAVDESS) can only be missed: that
        is part of what the table shows.
    """
    rows = []
    for corpus in sorted(features["corpus"].unique()):
        run = train(features, recipe=recipe, protocol="corpus", test_corpus=corpus, seed=seed, progress=progress,
                    **{"adaptive": False, **options})
        trained_on = " + ".join(sorted(set(features["corpus"]) - {corpus}))
        rows.append({"test_corpus": corpus, "trained_on": trained_on, **{k: run.metrics[k] for k in ("n", "accuracy", "macro_f1", "weighted_f1")}})
    return pd.DataFrame(rows)
