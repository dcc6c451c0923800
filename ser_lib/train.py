"""Splits (by speaker, random or by corpus), the recipes' trainers, calibration and the test evaluation.

A random split puts clips of the same speakers in train and test, so its accuracy measures
recognising voices the model has heard. The ``speaker`` protocol keeps every speaker on one side
(the model is tested on voices it never heard), which is what a user meets; on real RAVDESS the
original recipe scores about 65% on the first and 36% on the second. After fitting, a softmax
temperature (growing with a clip's atypicality) and an abstention threshold are chosen on held-out
training speakers, never on test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ser_lib import evaluate
from ser_lib.features import feature_matrix
from ser_lib.model import EmotionModel, atypicality, build_mlp, export_layers, forward, import_keras, softmax

PROTOCOLS = ("speaker", "random", "corpus", "none")
# The original notebook's train / validation / test shares.
SPLIT_FRACTIONS = {"train": 0.713, "validation": 0.132, "test": 0.155}
# Share of validation predictions kept confident; the least confident fifth is marked uncertain.
ABSTAIN_COVERAGE = 0.8
# Recipes that choose their settings and calibrate by cross-validation over the training speakers,
# so the validation part is trained on too (train() merges it into the train part).
CROSS_VALIDATED_RECIPES = ("best",)
# The original's training settings.
TRAINING_DEFAULTS = {"epochs": 100, "batch_size": 32, "patience": 15, "lr_patience": 5, "lr_factor": 0.5, "learning_rate": 1e-3}


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
    progress: bool = True,
) -> TrainingRun:
    """Split, fit a recipe's classifier on the train part, calibrate it on validation, test it.

    Parameters
    ----------
    features : pd.DataFrame
        From :func:`ser_lib.extract_many` with the same ``recipe``: the labels (``emotion``,
        ``corpus``, ``speaker``, ...) and the recipe's feature columns.
    recipe : str
        ``"original"``: the 512-256-128-64 MLP on the 195 features; ``"best"``: three logistic
        regressions on the 7,784 rich features, fused (see ``RECIPE_TRAINERS``), which chooses
        its settings and calibrates by speaker-grouped cross-validation and so trains on the
        train and validation parts together. Rows with an ``augmentation`` other than
        ``"none"`` are training copies: the split is made on the original clips, and only copies
        of training clips (same ``path``) are trained on.
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

    Returns
    -------
    run : TrainingRun
        Test probabilities are calibrated: a softmax temperature and its slope on atypicality
        (:func:`ser_lib.evaluate.fit_calibration`) fitted on held-out predictions (never on test)
        make the confidence match the accuracy. Those are the recipe's own when it
        returns ``calibration`` (``best``: speaker-grouped out-of-fold predictions over the train
        and validation speakers), else the validation part's (``original``); the abstention threshold
        comes from the same predictions. ``settings["calibrated_on"]`` says which.
    """
    if recipe not in RECIPE_TRAINERS:
        raise ValueError(f"Unknown recipe {recipe!r}: expected one of {sorted(RECIPE_TRAINERS)}.")
    features, augmented, split = _separate_augmented(features, split)
    missing = {"emotion", "corpus", "speaker"} - set(features.columns)
    if missing:
        raise ValueError(f"Expected the label columns emotion, corpus and speaker; missing {sorted(missing)}.")
    if features["emotion"].nunique() < 2:
        raise ValueError(f"Expected at least two emotions to learn, got {sorted(features['emotion'].unique())}.")
    if split is None:
        split = make_split(features, protocol, seed=seed, test_corpus=test_corpus)
    else:
        protocol = "given"
    parts = {name: (split == name).to_numpy() for name in SPLIT_FRACTIONS}
    required = list(SPLIT_FRACTIONS)
    if recipe in CROSS_VALIDATED_RECIPES:
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
            f"The {protocol} split left {empty} empty: {len(features)} clips from "
            f"{features.groupby('corpus')['speaker'].nunique().to_dict()} speakers are too few."
        )

    classes = sorted(features["emotion"].unique())
    x = feature_matrix(features, recipe=recipe)
    y = features["emotion"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    x_fit, y_fit, parts_fit, groups_fit = _add_augmented_training_rows(
        x, y, parts, features, augmented, recipe=recipe, classes=classes
    )
    # The first len(x) rows are the original clips, the rest augmented copies of training clips.
    is_copy = np.arange(len(x_fit)) >= len(x)
    start = time.perf_counter()
    fitted = RECIPE_TRAINERS[recipe](
        x_fit, y_fit, parts_fit, n_classes=len(classes), seed=seed, epochs=epochs, batch_size=batch_size, patience=patience,
        progress=progress, description=f"Training {recipe} ({protocol} split)", groups=groups_fit, is_copy=is_copy,
    )
    train_seconds = time.perf_counter() - start
    model = EmotionModel(
        classes=classes, layers=fitted["layers"], scaler_mean=fitted["scaler_mean"], scaler_scale=fitted["scaler_scale"],
        recipe=recipe,
    )

    # Calibration and the abstention threshold come from held-out predictions, never from test: the
    # recipe's own (``fitted["calibration"]``, e.g. out-of-fold over the training speakers) when it
    # gives them, else the validation speakers'.
    uncalibrated_test = model.predict_proba(x[parts["test"]])
    calibration = fitted.get("calibration")
    if calibration is None:
        validation = x[parts["validation"]]
        calibration_probabilities, calibration_labels = model.predict_proba(validation), y[parts["validation"]]
        calibration_atypicality = model.atypicality(validation)
        calibrated_on = "validation"
    else:
        calibration_probabilities, calibration_labels, calibration_atypicality = (np.asarray(a) for a in calibration)
        calibrated_on = fitted["settings"].get("calibrated_on", "recipe's held-out predictions")
    fitted_calibration = evaluate.fit_calibration(calibration_probabilities, calibration_labels, calibration_atypicality)
    model.temperature, model.temperature_slope = fitted_calibration["temperature"], fitted_calibration["temperature_slope"]
    calibration_log_p = np.log(np.clip(calibration_probabilities, 1e-12, 1.0))
    calibration_confidence = softmax(calibration_log_p / model.temperature_at(calibration_atypicality)[:, None]).max(axis=1)
    model.metadata["abstain_threshold"] = evaluate.coverage_threshold(calibration_confidence, coverage=coverage)
    model.metadata["abstain_coverage"] = coverage

    test = features.loc[parts["test"]]
    predictions = prediction_table(test, model.predict_proba(x[parts["test"]]), classes)
    predictions.insert(predictions.columns.get_loc("confidence") + 1, "confidence_uncalibrated", uncalibrated_test.max(axis=1))
    correct = (predictions["predicted"] == predictions["emotion"]).to_numpy()
    kept = predictions["confidence"].to_numpy() >= model.metadata["abstain_threshold"]
    calibration_metrics = {**fitted_calibration, "abstain_threshold": model.metadata["abstain_threshold"]}
    metrics = {"n": 0, **calibration_metrics}  # protocol "none" has no test part to score
    if len(predictions):
        metrics = {
            **evaluate.summary_metrics(predictions["emotion"], predictions["predicted"], classes),
            "ece_uncalibrated": evaluate.expected_calibration_error(predictions["confidence_uncalibrated"], correct),
            "ece": evaluate.expected_calibration_error(predictions["confidence"], correct),
            **calibration_metrics,
            "coverage": float(kept.mean()),
            "accuracy_kept": float(correct[kept].mean()) if kept.any() else float("nan"),
        }
    return TrainingRun(
        protocol=protocol if protocol != "corpus" else f"corpus:{test_corpus}", seed=seed, model=model,
        keras_model=fitted["keras_model"], history=fitted["history"], split=split, predictions=predictions,
        metrics=metrics, per_corpus=evaluate.per_group_metrics(predictions, predictions["predicted"], classes),
        train_seconds=train_seconds,
        settings={"recipe": recipe, "augmented_train_rows": int(len(x_fit) - len(x)), "calibrated_on": calibrated_on,
                  "calibration_clips": int(len(calibration_labels)), **fitted["settings"]},
    )


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


def _add_augmented_training_rows(x, y, parts, features, augmented, *, recipe, classes):
    """Append the augmented copies of training clips, and only those, to the training part.

    Also returns the speaker of every returned row (a copy gets its original clip's speaker).

    A copy belongs to the clip with its ``path``: copies of validation and test clips (or of clips
    not in ``features`` at all) are dropped, so no version of a held-out clip reaches training.
    """
    groups = features["speaker"].to_numpy()
    if augmented.empty:
        return x, y, parts, groups
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
    return x_fit, y_fit, parts_fit, groups_fit


def _fit_original(x, y, parts, *, n_classes, seed, epochs, batch_size, patience, progress, description, **_) -> dict:
    """The original recipe: standardise, then the 512-256-128-64 MLP with the original's callbacks."""
    keras = import_keras()
    import tensorflow as tf
    from sklearn.preprocessing import StandardScaler
    from tqdm.keras import TqdmCallback

    scaler = StandardScaler().fit(x[parts["train"]])
    x_scaled = scaler.transform(x).astype(np.float32)
    one_hot = np.eye(n_classes, dtype=np.float32)[y]
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build_mlp(x.shape[1], n_classes, learning_rate=TRAINING_DEFAULTS["learning_rate"])
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=TRAINING_DEFAULTS["lr_factor"], patience=TRAINING_DEFAULTS["lr_patience"], min_lr=1e-6
        ),
    ]
    if progress:
        callbacks.append(TqdmCallback(verbose=0, desc=description))
    fitted = model.fit(
        x_scaled[parts["train"]], one_hot[parts["train"]],
        validation_data=(x_scaled[parts["validation"]], one_hot[parts["validation"]]),
        epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0, callbacks=callbacks,
    )
    history = pd.DataFrame(fitted.history).rename_axis("epoch")
    return {
        "layers": export_layers(model), "keras_model": model, "history": history,
        "scaler_mean": scaler.mean_.astype(np.float32), "scaler_scale": scaler.scale_.astype(np.float32),
        "settings": {"epochs": epochs, "batch_size": batch_size, "patience": patience, "epochs_run": len(history),
                     **{k: v for k, v in TRAINING_DEFAULTS.items() if k not in ("epochs", "batch_size", "patience")}},
    }


# C grids of the best recipe's three members, as searched in the speaker-CV study.
BEST_C_GRIDS = {"frame_egemaps": (0.003, 0.01, 0.03), "compare": (0.001, 0.01, 0.1), "modulation": (0.001, 0.003, 0.01)}
# Speaker-grouped folds over the training speakers whose out-of-fold predictions choose each
# member's C and calibrate the fused model: leave one speaker out up to 12 speakers, so each
# fold's model is trained on nearly as many voices as the final one (with 12 RAVDESS training
# actors: 64.2% against 62.8% with 6 folds of 2, and a better-matched temperature).
BEST_CV_FOLDS = 12


def _fit_member(x, y, fit_rows, columns, c, n_classes):
    """One member: standardise its columns on ``fit_rows``, fit a logistic regression at ``c``.

    Returns the scaler's mean and scale and the logit weights for all ``n_classes``: a class
    missing from the fitted rows gets no weights and a logit far below the others.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    first, last = columns
    scaler = StandardScaler().fit(x[fit_rows, first:last])
    classifier = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x[fit_rows, first:last]), y[fit_rows])
    coef = np.zeros((n_classes, last - first))
    intercept = np.full(n_classes, -30.0)
    coef[classifier.classes_], intercept[classifier.classes_] = classifier.coef_, classifier.intercept_
    return scaler.mean_, scaler.scale_, coef, intercept


def _member_logits(fitted_member, x, columns):
    mean, scale, coef, intercept = fitted_member
    first, last = columns
    return (x[:, first:last] - mean) / scale @ coef.T + intercept


def _fold_logits(x, y, fit_rows, predict_rows, columns, c, n_classes):
    """A member fitted on ``fit_rows`` at ``c``: its logits for ``predict_rows``."""
    return _member_logits(_fit_member(x, y, fit_rows, columns, c, n_classes), x[predict_rows], columns)


def _speaker_folds(groups, fit_rows, is_copy):
    """(rows to fit, original rows to predict) of each speaker-grouped fold over ``fit_rows``.

    A copy has its clip's speaker, so no version of a held-out clip is fitted on.
    """
    from sklearn.model_selection import GroupKFold

    fit_index = np.flatnonzero(fit_rows)
    n_speakers = len(np.unique(groups[fit_index]))
    if n_speakers < 2:
        raise ValueError(f"The best recipe cross-validates over training speakers: expected at least 2, got {n_speakers}.")
    folds = []
    for _, held_index in GroupKFold(n_splits=min(BEST_CV_FOLDS, n_speakers)).split(fit_index, groups=groups[fit_index]):
        held_out = np.isin(groups, np.unique(groups[fit_index[held_index]]))
        folds.append((fit_rows & ~held_out, fit_rows & held_out & ~is_copy))
    return folds


def _fit_best(x, y, parts, *, n_classes, progress, description, groups, is_copy=None, n_jobs=-1, **_) -> dict:
    """The best recipe: late fusion (mean logits) of three multinomial logistic regressions.

    Members (``ser_lib.rich_features.MEMBER_COLUMNS``): ``frame_egemaps`` sees the frame
    statistics and eGeMAPS, ``compare`` the ComParE functionals, ``modulation`` the modulation
    spectrum and contours; each is standardised on the rows it is fitted on. Each member's C is
    the value of its grid (``BEST_C_GRIDS``) with the most accurate out-of-fold predictions over
    speaker-grouped folds of the train part (``BEST_CV_FOLDS``; ties go to the smaller C); the
    members are then refitted on the whole train part. The fused model is one linear layer on the
    concatenated standardised features, kernel ``[coef_a.T; coef_b.T; coef_c.T] / 3``, bias the
    mean of the intercepts, so a bundle stores it as plain arrays.

    The out-of-fold fused predictions at the chosen C's, with each row's atypicality under its
    fold's scaler, are returned as ``calibration``, on which :func:`train` fits the temperature,
    its slope and the abstention threshold. ``groups`` is the speaker of each row; ``is_copy``
    marks augmented rows, which are fitted on but never predicted. The validation part is not
    used (``train`` merges it into the train part for this recipe), nor are ``epochs``,
    ``batch_size``, ``patience`` and ``seed`` (the fits are deterministic). The fits run in
    ``n_jobs`` worker processes (-1: one per core).
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from ser_lib.rich_features import MEMBER_COLUMNS, N_FEATURES

    if x.shape[1] != N_FEATURES:
        raise ValueError(f"The best recipe expects {N_FEATURES} features, got {x.shape[1]}.")
    fit_rows = parts["train"]
    groups = np.asarray(groups)
    is_copy = np.zeros(len(x), dtype=bool) if is_copy is None else np.asarray(is_copy, dtype=bool)
    folds = _speaker_folds(groups, fit_rows, is_copy)
    held = np.zeros(len(x), dtype=bool)
    for _, predict_rows in folds:
        held |= predict_rows
    # Every (member, C, fold) fit, then each member refitted on the whole train part at its chosen C.
    searches = [(member, c, k) for member in MEMBER_COLUMNS for c in BEST_C_GRIDS[member] for k in range(len(folds))]
    runner = Parallel(n_jobs=n_jobs, return_as="generator")
    results = runner(delayed(_fold_logits)(x, y, *folds[k], MEMBER_COLUMNS[member], c, n_classes) for member, c, k in searches)
    logits = {(member, c): np.zeros((len(x), n_classes)) for member, c, _ in searches}
    for (member, c, k), fold_logits in tqdm(zip(searches, results), total=len(searches), desc=description,
                                            unit="fit", disable=not progress):
        logits[member, c][folds[k][1]] = fold_logits
    chosen, out_of_fold = {}, np.zeros((len(x), n_classes))
    for member in MEMBER_COLUMNS:
        accuracy = {c: float((logits[member, c][held].argmax(axis=1) == y[held]).mean()) for c in BEST_C_GRIDS[member]}
        best_c = max(BEST_C_GRIDS[member], key=accuracy.get)  # max keeps the first (smallest) of ties
        out_of_fold += logits[member, best_c] / len(MEMBER_COLUMNS)
        chosen[member] = {"C": best_c, "columns": list(MEMBER_COLUMNS[member]),
                          "cv_accuracy": {str(c): round(acc, 4) for c, acc in accuracy.items()}}
    refits = Parallel(n_jobs=n_jobs)(
        delayed(_fit_member)(x, y, fit_rows, MEMBER_COLUMNS[member], chosen[member]["C"], n_classes) for member in MEMBER_COLUMNS
    )
    members = dict(zip(MEMBER_COLUMNS, refits))
    share = 1 / len(members)
    layer = {"kind": "dense", "kernel": np.concatenate([coef.T * share for _, _, coef, _ in members.values()]).astype(np.float32),
             "bias": np.sum([intercept * share for *_, intercept in members.values()], axis=0).astype(np.float32),
             "activation": "linear"}
    scaler_mean = np.concatenate([mean for mean, *_ in members.values()]).astype(np.float32)
    scaler_scale = np.concatenate([scale for _, scale, *_ in members.values()]).astype(np.float32)
    # One "epoch": the fused model on its training rows, and out of fold ("val_": speakers each fit never saw).
    row = {}
    for prefix, p, labels in (("", forward([layer], (x[fit_rows] - scaler_mean) / scaler_scale), y[fit_rows]),
                              ("val_", softmax(out_of_fold[held]), y[held])):
        row[f"{prefix}loss"] = float(-np.mean(np.log(np.clip(p[np.arange(len(p)), labels], 1e-12, None))))
        row[f"{prefix}accuracy"] = float((p.argmax(axis=1) == labels).mean())
    n_speakers = len(np.unique(groups[fit_rows]))
    settings = {"classifier": "late fusion of three multinomial logistic regressions (mean logits)",
                "members": chosen, "C_grids": {m: list(g) for m, g in BEST_C_GRIDS.items()}, "max_iter": 2000,
                "C_chosen_on": f"out-of-fold accuracy over {len(folds)} speaker-grouped folds of {n_speakers} training speakers",
                "calibrated_on": f"out-of-fold predictions over {len(folds)} speaker-grouped folds of {n_speakers} training speakers"}
    return {"layers": [layer], "keras_model": None, "history": pd.DataFrame([row]).rename_axis("epoch"),
            "scaler_mean": scaler_mean, "scaler_scale": scaler_scale, "settings": settings,
            "calibration": (softmax(out_of_fold[held]), y[held], _out_of_fold_atypicality(x, folds)[held])}


def _out_of_fold_atypicality(x, folds):
    """Each held-out row's atypicality under the scaler of the fold that predicted it (all members' columns)."""
    from sklearn.preprocessing import StandardScaler

    spread = np.zeros(len(x))
    for fit_rows, predict_rows in folds:
        spread[predict_rows] = atypicality(StandardScaler().fit(x[fit_rows]).transform(x[predict_rows]))
    return spread


# Each recipe's classifier: fit(x, y, parts, ..., groups=speaker per row, is_copy=augmented rows) -> layers,
# scaler, history (see _fit_original), and optionally "calibration": held-out (probabilities, labels, atypicality).
RECIPE_TRAINERS = {"original": _fit_original, "best": _fit_best}


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

    Returns
    -------
    table : pd.DataFrame [columns: test_corpus, trained_on, n, accuracy, macro_f1, weighted_f1]
        A corpus whose emotions were never trained (calm outside RAVDESS) can only be missed: that
        is part of what the table shows.
    """
    rows = []
    for corpus in sorted(features["corpus"].unique()):
        run = train(features, recipe=recipe, protocol="corpus", test_corpus=corpus, seed=seed, progress=progress, **options)
        trained_on = " + ".join(sorted(set(features["corpus"]) - {corpus}))
        rows.append({"test_corpus": corpus, "trained_on": trained_on, **{k: run.metrics[k] for k in ("n", "accuracy", "macro_f1", "weighted_f1")}})
    return pd.DataFrame(rows)
