"""Save and load the model bundle: the weights as plain arrays, and metadata that says what they need.

A bundle folder holds:

- ``model_weights.npz`` and ``model_metadata.json``: all that :func:`load_bundle` reads. Arrays and
  JSON only, because unpickling a stranger's file runs their code.
- ``best_ser_model.keras``, ``scaler.pkl``, ``label_encoder.pkl``: the same model for Keras and the
  original usage snippet (``load_model`` + ``pickle.load``), for those who trust the file.
"""

from __future__ import annotations

import datetime
import json
import pickle
import platform
from pathlib import Path

import numpy as np

from ser_lib.adapt import SpeakerPrior
from ser_lib.model import EmotionModel
from ser_lib.recipes import get_recipe, recipe_names

BUNDLE_FORMAT = "ser_lib-bundle/1"
METADATA_FILE = "model_metadata.json"
WEIGHTS_FILE = "model_weights.npz"
KERAS_FILE = "best_ser_model.keras"
SCALER_FILE = "scaler.pkl"
ENCODER_FILE = "label_encoder.pkl"
BUNDLE_FILES = (METADATA_FILE, WEIGHTS_FILE, KERAS_FILE, SCALER_FILE, ENCODER_FILE)
# The adaptive model's arrays in model_weights.npz (its layers and scaler) start with ADAPTIVE_PREFIX,
# the recording-condition recogniser's with RECOGNISER_PREFIX.
ADAPTIVE_PREFIX = "adaptive_"
RECOGNISER_PREFIX = "recogniser_"
_LAYER_ARRAYS = {"dense": ("kernel", "bias"), "batchnorm": ("gamma", "beta", "mean", "variance", "epsilon")}


def library_versions() -> dict:
    """Versions of what produced a result, for metadata."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("ser_lib", "numpy", "librosa", "scikit-learn", "tensorflow", "keras", "pandas"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def save_bundle(run, directory, *, data_summary: dict | None = None, overwrite: bool = False) -> Path:
    """Write a trained run's model bundle.

    Parameters
    ----------
    run : TrainingRun
        From :func:`ser_lib.train`.
    directory : str or Path
        Created if missing.
    data_summary : dict, optional
        What the model was trained on (source, clips per corpus and emotion), stored in the metadata.
    overwrite : bool
        Replace a bundle already in ``directory`` (all its files: a ``best`` bundle, which has no
        Keras network, removes the replaced bundle's). Without it an existing bundle is an error,
        so a trained model is never replaced by accident.

    Returns
    -------
    directory : Path
    """
    from sklearn.preprocessing import LabelEncoder, StandardScaler

    directory = Path(directory)
    existing = [name for name in BUNDLE_FILES if (directory / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"'{directory}' already holds a model bundle ({', '.join(existing)}): choose another folder, "
            "or pass overwrite=True (`ser train --force`) to replace it."
        )
    directory.mkdir(parents=True, exist_ok=True)
    model = run.model
    arrays, layer_specs = _layer_arrays(model, "")
    if model.adaptive is not None:
        adaptive_arrays, adaptive_specs = _layer_arrays(model.adaptive, ADAPTIVE_PREFIX)
        arrays.update(adaptive_arrays, **model.prior.arrays())
    recogniser_arrays, recogniser_specs = _arrays_of(model.recogniser or [], RECOGNISER_PREFIX)
    arrays.update(recogniser_arrays)
    np.savez(directory / WEIGHTS_FILE, **arrays)

    recipe = get_recipe(model.recipe)
    metadata = {
        "format": BUNDLE_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "recipe": recipe.name,
        "classes": list(model.classes),
        "n_features": model.n_features,
        "feature_settings": recipe.settings,
        "feature_names": list(recipe.feature_names),
        "scaler": {"mean": model.scaler_mean.tolist(), "scale": model.scaler_scale.tolist()},
        "layers": layer_specs,
        "temperature": float(model.temperature),
        "temperature_slope": float(model.temperature_slope),
        # The recording-condition recogniser (None without one) and each condition's factor on the temperature.
        "recogniser": None if model.recogniser is None else {"layers": recogniser_specs, "conditions": list(model.conditions)},
        "caution": model.caution,
        # Each condition's lowest confidence (0-1) of the high tier (EmotionModel.high_from); {} before them.
        "high_from": model.high_from,
        "abstain_threshold": model.metadata.get("abstain_threshold"),
        "abstain_coverage": model.metadata.get("abstain_coverage"),
        # The range of the input measures over the clips it trained on (ser_lib.quality); None before them.
        "input_limits": model.metadata.get("input_limits"),
        "adaptive": None if model.adaptive is None else {
            "layers": adaptive_specs, "temperature": float(model.adaptive.temperature),
            "temperature_slope": float(model.adaptive.temperature_slope),
            "temperature_per_clip": float(model.adaptive.temperature_per_clip),
            "caution": model.adaptive.caution,
            "high_from": model.adaptive.high_from,
            # Recording conditions whose voices are adapted with typical emotion shares (EmotionModel.typical_shares).
            "typical_shares": list(model.typical_shares),
            "abstain_threshold": model.adaptive.metadata.get("abstain_threshold"),
            "abstain_coverage": model.adaptive.metadata.get("abstain_coverage"),
            "test_metrics": run.adaptive_metrics,
        },
        "seed": run.seed,
        "split": run.protocol,
        "training": {**run.settings, "train_seconds": round(run.train_seconds, 1)},
        "data": data_summary or {},
        "test_metrics": run.metrics,
        "test_metrics_per_corpus": run.per_corpus.to_dict(orient="records"),
        "versions": library_versions(),
    }
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=_json_default))

    if run.keras_model is not None:
        run.keras_model.save(directory / KERAS_FILE)
    else:  # a replaced bundle's Keras network would otherwise sit beside a model it is not
        (directory / KERAS_FILE).unlink(missing_ok=True)
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_ = model.scaler_mean.astype(np.float64), model.scaler_scale.astype(np.float64)
    scaler.var_, scaler.n_features_in_ = scaler.scale_**2, model.n_features
    scaler.n_samples_seen_ = int(run.split.eq("train").sum())
    encoder = LabelEncoder().fit(model.classes)
    for name, obj in ((SCALER_FILE, scaler), (ENCODER_FILE, encoder)):
        with open(directory / name, "wb") as handle:
            pickle.dump(obj, handle)
    return directory


def _layer_arrays(model: EmotionModel, prefix: str) -> tuple[dict, list]:
    """A model's layers and scaler as named float32 arrays, and the layers' specs for the metadata."""
    arrays, specs = _arrays_of(model.layers, prefix)
    arrays[f"{prefix}scaler_mean"], arrays[f"{prefix}scaler_scale"] = model.scaler_mean, model.scaler_scale
    return arrays, specs


def _arrays_of(layers: list, prefix: str) -> tuple[dict, list]:
    """Layers as named float32 arrays, and their specs for the metadata."""
    arrays, specs = {}, []
    for index, layer in enumerate(layers):
        spec = {"kind": layer["kind"]}
        if layer["kind"] == "dense":
            spec["activation"] = layer["activation"]
        for name in _LAYER_ARRAYS[layer["kind"]]:
            arrays[f"{prefix}layer{index:02d}_{name}"] = np.asarray(layer[name], dtype=np.float32)
        specs.append(spec)
    return arrays, specs


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot store {type(value).__name__} in model metadata.")


def load_bundle(directory="artifacts") -> EmotionModel:
    """Load a bundle's model without TensorFlow and without unpickling, after checking it fits.

    Raises
    ------
    FileNotFoundError
        The folder or one of ``model_metadata.json`` / ``model_weights.npz`` is missing.
    ValueError
        The bundle was made for other features (settings differ from this ``ser_lib``'s) or its
        parts disagree (class count, feature count).
    """
    directory = Path(directory)
    metadata = _read_metadata(directory)
    if not (directory / WEIGHTS_FILE).is_file():
        found = sorted(p.name for p in directory.iterdir())
        raise FileNotFoundError(
            f"The model bundle in '{directory}' is incomplete: missing {WEIGHTS_FILE} (found {found}). "
            "Train again with `ser train` or copy the whole artifacts folder."
        )
    try:
        # Bundles from before the recipes had their own names say "best": an alias of its recipe.
        recipe = get_recipe(metadata.get("recipe", "original"))
    except ValueError as error:
        raise ValueError(
            f"The model in '{directory}' uses recipe {metadata.get('recipe')!r}: this ser_lib knows {recipe_names()}."
        ) from error
    _check_feature_settings(metadata.get("feature_settings", {}), recipe.settings, directory, recipe.name)

    with np.load(directory / WEIGHTS_FILE, allow_pickle=False) as weights:
        arrays = dict(weights)
    layers = _layers(metadata["layers"], arrays, "")
    classes = list(metadata["classes"])
    n_outputs = layers[-1]["bias"].shape[0]
    if n_outputs != len(classes):
        raise ValueError(f"The model in '{directory}' has {n_outputs} outputs, but its metadata lists {len(classes)} classes {classes}.")
    n_inputs = layers[0]["kernel"].shape[0]
    if not n_inputs == arrays["scaler_mean"].shape[0] == metadata["n_features"] == recipe.n_features:
        raise ValueError(
            f"The model in '{directory}' takes {n_inputs} features and its scaler {arrays['scaler_mean'].shape[0]}, "
            f"but ser_lib computes {recipe.n_features} for recipe {recipe.name!r}."
        )
    model = EmotionModel(
        classes=classes, layers=layers, scaler_mean=arrays["scaler_mean"], scaler_scale=arrays["scaler_scale"],
        temperature=float(metadata.get("temperature", 1.0)),
        temperature_slope=float(metadata.get("temperature_slope", 0.0)),  # bundles before the slope had none
        recipe=recipe.name, metadata=metadata,
    )
    recogniser = metadata.get("recogniser")  # bundles before the recogniser have none: no caution factors
    if recogniser:
        model.recogniser = _layers(recogniser["layers"], arrays, RECOGNISER_PREFIX)
        model.conditions, model.caution = tuple(recogniser["conditions"]), dict(metadata.get("caution") or {})
        model.high_from = dict(metadata.get("high_from") or {})
    adaptive = metadata.get("adaptive")  # bundles before the adaptive mode have none: they predict per clip
    if adaptive:
        model.adaptive = EmotionModel(
            classes=classes, layers=_layers(adaptive["layers"], arrays, ADAPTIVE_PREFIX),
            scaler_mean=arrays[f"{ADAPTIVE_PREFIX}scaler_mean"], scaler_scale=arrays[f"{ADAPTIVE_PREFIX}scaler_scale"],
            temperature=float(adaptive["temperature"]), temperature_slope=float(adaptive["temperature_slope"]),
            temperature_per_clip=float(adaptive["temperature_per_clip"]), recipe=recipe.name, metadata=adaptive,
            caution=dict(adaptive.get("caution") or {}) if recogniser else {}, conditions=model.conditions,
            high_from=dict(adaptive.get("high_from") or {}) if recogniser else {},
        )
        model.prior = SpeakerPrior.from_arrays(arrays)
        model.typical_shares = tuple(adaptive.get("typical_shares") or ()) if recogniser else ()
    return model


def _layers(specs: list, arrays: dict, prefix: str) -> list:
    layers = []
    for index, spec in enumerate(specs):
        layer = dict(spec)
        for name in _LAYER_ARRAYS[spec["kind"]]:
            layer[name] = arrays[f"{prefix}layer{index:02d}_{name}"]
        layers.append(layer)
    return layers


def _read_metadata(directory: Path) -> dict:
    if not directory.is_dir():
        raise FileNotFoundError(f"No model bundle folder at '{directory}': expected the folder `ser train --out` wrote.")
    if not (directory / METADATA_FILE).is_file():
        found = sorted(p.name for p in directory.iterdir())
        missing = [name for name in (METADATA_FILE, WEIGHTS_FILE) if not (directory / name).is_file()]
        raise FileNotFoundError(
            f"The model bundle in '{directory}' is incomplete: missing {', '.join(missing)} (found {found or 'nothing'}). "
            "Train again with `ser train` or copy the whole artifacts folder."
        )
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"'{directory / METADATA_FILE}' is not valid JSON ({error}): expected the metadata ser_lib wrote.") from error
    if metadata.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"'{directory}' holds bundle format {metadata.get('format')!r}: expected {BUNDLE_FORMAT!r}.")
    return metadata


def _check_feature_settings(theirs: dict, ours: dict, directory: Path, recipe: str) -> None:
    ours = json.loads(json.dumps(ours))
    differing = {key: (theirs.get(key), ours.get(key)) for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)}
    if set(differing) == {"opensmile"}:
        needed, installed = (settings.get("version") for settings in differing["opensmile"])
        same_otherwise = {**differing["opensmile"][0], "version": None} == {**differing["opensmile"][1], "version": None}
        if same_otherwise and installed is None:
            raise ModuleNotFoundError(
                f"The model in '{directory}' (recipe {recipe}) needs openSMILE {needed} for its features, and it is not "
                f"installed: pip install 'ser_lib[best]' (or pip install opensmile=={needed}).", name="opensmile"
            )
        if same_otherwise:
            raise ValueError(
                f"The model in '{directory}' (recipe {recipe}) was trained with openSMILE {needed}, this environment has "
                f"{installed}, whose functionals may differ: pip install opensmile=={needed}, or retrain the model here."
            )
    if differing:
        details = "; ".join(f"{key}: bundle {a!r}, ser_lib {b!r}" for key, (a, b) in differing.items())
        raise ValueError(
            f"The model in '{directory}' was trained on other features than this ser_lib computes ({details}). "
            "Retrain it with this version, or use the ser_lib version that trained it."
        )


def bundle_info(directory) -> dict:
    """What a bundle is, from its metadata alone (it need not fit this ser_lib): for ``ser info``.

    Returns
    -------
    info : dict
        recipe, classes, features (sample rate, seconds read, count), trained_on (clips, speakers,
        corpora, source), split and seed, test (n, accuracy, macro-F1, ECE), calibration (the
        temperature formula, the caution factors and high-tier floors of recording conditions,
        abstain threshold),
        adaptive (whether the bundle has the adaptive mode and its test metrics, each test speaker
        normalised by its own clips), created, versions (of the libraries that trained it).
    """
    metadata = _read_metadata(Path(directory))
    settings, data, metrics = metadata.get("feature_settings", {}), metadata.get("data", {}), metadata.get("test_metrics", {})
    from ser_lib.evaluate import caution_factors, describe_temperature, high_tier_floors

    temperature, slope = metadata.get("temperature", 1.0), metadata.get("temperature_slope", 0.0)
    versions = dict(metadata.get("versions", {}))
    if isinstance(settings.get("opensmile"), dict):
        versions["opensmile"] = settings["opensmile"].get("version")
    return {
        "recipe": metadata.get("recipe", "original"),
        "classes": list(metadata.get("classes", [])),
        "features": {"count": metadata.get("n_features"), "sample_rate_hz": settings.get("sample_rate"),
                     "seconds_read": settings.get("duration") or "whole clip"},
        "trained_on": {"clips": data.get("clips"), "speakers": data.get("speakers"),
                       "corpora": ", ".join(f"{k} {v}" for k, v in data.get("clips_per_corpus", {}).items()) or None,
                       "source": data.get("source")},
        "split": metadata.get("split"),
        "seed": metadata.get("seed"),
        "test": {key: (round(metrics[key], 4) if isinstance(metrics.get(key), float) else metrics.get(key))
                 for key in ("n", "accuracy", "macro_f1", "ece") if key in metrics},
        "calibration": {"temperature": temperature, "temperature_slope": slope,
                        "formula": describe_temperature(temperature, slope),
                        "caution": caution_factors(metadata.get("caution")) or None,  # per recognised recording condition
                        "high_tier": high_tier_floors(metadata.get("high_from")) or None,
                        "abstain_threshold": metadata.get("abstain_threshold")},
        "adaptive": _adaptive_info(metadata.get("adaptive")),
        "created": metadata.get("created"),
        "versions": versions,
    }


def _adaptive_info(adaptive: dict | None) -> dict:
    from ser_lib.evaluate import high_tier_floors

    if not adaptive:
        return {"mode": "none: per clip only (trained before ser_lib had an adaptive mode, or without it)"}
    metrics = adaptive.get("test_metrics", {})
    return {"mode": "normalised by the speaker's other clips (ser predict --speaker-by, --speaker)",
            **{f"test_{key}": round(metrics[key], 4) for key in ("accuracy", "macro_f1", "ece") if isinstance(metrics.get(key), float)},
            # Voices recognised as recorded under these keep the typical emotion shares (EmotionModel.typical_shares).
            "typical_shares_for": ", ".join(adaptive.get("typical_shares") or ()) or None,
            "high_tier": high_tier_floors(adaptive.get("high_from")) or None}
