"""The original recipe: 195 frame-mean librosa features of a clip's first 3 s, and a 512-256-128-64 MLP.

The reference code (kept verbatim in ``tests/test_features.py``) loads 3 s of mono audio at
22,050 Hz and stacks the frame means of seven librosa features. Computed naively it takes the STFT
five times and rebuilds the constant-Q filter bank for every clip. Here the STFT is taken once and
passed to every feature as ``S=``, the mel spectrogram once and passed to the MFCC, and the
constant-Q filter banks are built once per process from librosa's public filter constructors (see
:func:`_constant_q_chroma`). The values equal the reference's to ``rtol=1e-5`` (tested).

Keras (and TensorFlow) are imported only inside :func:`build_mlp`, :func:`export_layers` and
:func:`fit`: training needs them, prediction does not. The trained network is exported to layers of
NumPy arrays that :func:`ser_lib.model.forward` evaluates, to Keras's probabilities within 1e-5.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import sys
import threading
import warnings

import librosa
import numpy as np
import pandas as pd

from ser_lib.audio import CLIP_SECONDS, SAMPLE_RATE, check_signal
from ser_lib.kernels import ensure_kernels

NAME = "original"
SUMMARY = "the 195 frame means of a clip's first 3 s and the 512-256-128-64 MLP (the original recipe)"
# No training copies; the validation speakers stop the training early and calibrate.
AUGMENTATIONS = ()
TALKER_COPIES = ()
CROSS_VALIDATED = False
# Training also fits the adaptive mode (ser_lib.adapt): +8 points on unseen RAVDESS speakers given all their
# other clips (ENHANCEMENTS.md).
ADAPTIVE = True
TRAINING_NEEDS = {"keras": ("TensorFlow", "train")}
FEATURE_BLOCKS = {"mfcc": 40, "chroma": 12, "mel": 128, "contrast": 7, "tonnetz": 6, "zcr": 1, "rolloff": 1}
N_FEATURES = sum(FEATURE_BLOCKS.values())
FEATURE_NAMES = tuple(
    name if size == 1 else f"{name}_{i:03d}" for name, size in FEATURE_BLOCKS.items() for i in range(size)
)
# Everything that changes the numbers: cached features and saved models are keyed by this.
SETTINGS = {
    "recipe": "original-195",
    "sample_rate": SAMPLE_RATE,
    "duration": CLIP_SECONDS,
    "n_fft": 2048,
    "hop_length": 512,
    "blocks": FEATURE_BLOCKS,
}
# The original's training settings.
TRAINING_DEFAULTS = {"epochs": 100, "batch_size": 32, "patience": 15, "lr_patience": 5, "lr_factor": 0.5, "learning_rate": 1e-3}


@functools.lru_cache(maxsize=256)
def _stft_filter_bank(kind: str, sr: int, n_fft: int, tuning: float = 0.0) -> np.ndarray:
    """The mel or chroma filter bank of librosa's defaults, built once per process."""
    if kind == "mel":
        return librosa.filters.mel(sr=sr, n_fft=n_fft)
    return librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning, n_chroma=FEATURE_BLOCKS["chroma"])


# The constant-Q transform behind the reference's tonnetz: librosa.feature.chroma_cqt's defaults.
_CQT_BINS_PER_OCTAVE = 36
_CQT_OCTAVES = 7


def _relative_bandwidth(freqs: np.ndarray) -> np.ndarray:
    # librosa.filters' own formula (log-frequency spacing around each bin), which it keeps private.
    log_freqs = np.log2(freqs)
    bins_per_octave = np.empty_like(freqs)
    bins_per_octave[0] = 1 / (log_freqs[1] - log_freqs[0])
    bins_per_octave[-1] = 1 / (log_freqs[-1] - log_freqs[-2])
    bins_per_octave[1:-1] = 2 / (log_freqs[2:] - log_freqs[:-2])
    return (2.0 ** (2 / bins_per_octave) - 1) / (2.0 ** (2 / bins_per_octave) + 1)


def _sparsify_rows(x: np.ndarray, *, quantile: float):
    """``librosa.util.sparsify_rows(x, quantile, dtype=complex64)``, vectorised.

    librosa fills a LIL matrix row by row, a third of the time it takes to build a filter bank;
    the kept entries (each row's largest, holding ``1 - quantile`` of its magnitude) are the same.
    """
    import scipy.sparse

    magnitudes = np.abs(x)
    ordered = np.sort(magnitudes, axis=1)
    cumulative = np.cumsum(ordered / magnitudes.sum(axis=1, keepdims=True), axis=1)
    threshold = ordered[np.arange(len(x)), np.argmin(cumulative < quantile, axis=1)][:, np.newaxis]
    return scipy.sparse.csr_matrix(np.where(magnitudes >= threshold, x, 0).astype(np.complex64))


@functools.lru_cache(maxsize=128)
def _constant_q_filter_banks(sr: float, tuning: float):
    """Frequency-domain filter banks of librosa.cqt, one per octave, top octave first.

    librosa rebuilds these on every call (77% of the reference's tonnetz time). They depend only
    on the sample rate and the tuning estimate, which takes at most 101 values (0.01 steps), so
    a process builds each at most once.
    """
    n_bins = _CQT_BINS_PER_OCTAVE * _CQT_OCTAVES
    fmin = librosa.note_to_hz("C1") * 2.0 ** (tuning / _CQT_BINS_PER_OCTAVE)
    freqs = librosa.cqt_frequencies(n_bins, fmin=fmin, bins_per_octave=_CQT_BINS_PER_OCTAVE)
    alpha = _relative_bandwidth(freqs)
    lengths, cutoff = librosa.filters.wavelet_lengths(freqs=freqs, sr=sr, window="hann", alpha=alpha)
    if not sr / 8 <= cutoff <= sr / 2:
        # Outside this range librosa downsamples early or refuses; at 22,050 Hz it never does.
        raise ValueError(f"The constant-Q shortcut expects a sample rate from {2 * cutoff:.0f} to {8 * cutoff:.0f} Hz, got {sr}.")
    banks = []
    octave_sr = float(sr)
    for octave in range(_CQT_OCTAVES):
        top = n_bins - octave * _CQT_BINS_PER_OCTAVE
        bins = slice(top - _CQT_BINS_PER_OCTAVE, top)
        basis, basis_lengths = librosa.filters.wavelet(
            freqs=freqs[bins], sr=octave_sr, norm=1, pad_fft=True, window="hann", alpha=alpha[bins]
        )
        n_fft = basis.shape[1]
        basis *= basis_lengths[:, np.newaxis] / float(n_fft)
        fft_basis = np.fft.fft(basis, n=n_fft, axis=1)[:, : n_fft // 2 + 1]
        fft_basis = _sparsify_rows(fft_basis, quantile=0.01)
        fft_basis.data *= np.sqrt(sr / octave_sr)
        banks.append((fft_basis, n_fft))
        octave_sr /= 2.0
    return tuple(banks), np.sqrt(lengths)[:, np.newaxis]


def _constant_q_chroma(y: np.ndarray, *, sr: int, tuning: float, hop_length: int) -> np.ndarray:
    """``librosa.feature.chroma_cqt(y=y, sr=sr, tuning=tuning)``, with the filter banks memoised.

    The octave-by-octave recursion of ``librosa.vqt`` (filter, then halve the rate) is repeated
    here with public librosa calls; the result is handed to ``chroma_cqt(C=...)``.
    """
    banks, sqrt_lengths = _constant_q_filter_banks(float(sr), float(tuning))
    responses = []
    octave_y, octave_hop = y, hop_length
    for fft_basis, n_fft in banks:
        spectrum = librosa.stft(octave_y, n_fft=n_fft, hop_length=octave_hop, window="ones", pad_mode="constant")
        responses.append(fft_basis.dot(spectrum))
        if octave_hop % 2 == 0:
            octave_hop //= 2
            octave_y = librosa.resample(octave_y, orig_sr=2, target_sr=1, res_type="soxr_hq", scale=True)
    n_frames = min(response.shape[-1] for response in responses)
    cqt = np.vstack([response[:, :n_frames] for response in reversed(responses)])
    return librosa.feature.chroma_cqt(C=np.abs(cqt) / sqrt_lengths, sr=sr, bins_per_octave=_CQT_BINS_PER_OCTAVE)


def compute(y: np.ndarray, *, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The 195 frame-mean features of a signal, equal to the original recipe's.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio, normally the output of :func:`load_audio`.
    sr : int
        Its sample rate.

    Returns
    -------
    features : np.ndarray [shape=(195,), dtype=float32]
        Blocks in the order of ``FEATURE_BLOCKS``.
    """
    y = check_signal(y, sr=sr)
    ensure_kernels()
    n_fft, hop = SETTINGS["n_fft"], SETTINGS["hop_length"]
    magnitude = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    power = magnitude**2
    # melspectrogram(S=) and chroma_stft(S=) rebuild their filter banks per call; ours are memoised.
    mel = _stft_filter_bank("mel", sr, n_fft) @ power
    with warnings.catch_warnings():
        # Tonal features of unpitched frames warn about empty frequency sets; the reference's too.
        warnings.simplefilter("ignore", UserWarning)
        chroma_tuning = librosa.estimate_tuning(S=power, sr=sr, bins_per_octave=FEATURE_BLOCKS["chroma"])
        chroma = librosa.util.normalize(
            _stft_filter_bank("chroma", sr, n_fft, chroma_tuning) @ power, norm=np.inf, axis=-2
        )
        # The reference's CQT estimates tuning from its own magnitude STFT: the same one as ours.
        tuning = librosa.estimate_tuning(S=magnitude, sr=sr, bins_per_octave=36)
        tonal_chroma = _constant_q_chroma(y, sr=sr, tuning=tuning, hop_length=hop)
    blocks = [
        librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=FEATURE_BLOCKS["mfcc"]),
        chroma,
        mel,
        librosa.feature.spectral_contrast(S=magnitude, sr=sr),
        librosa.feature.tonnetz(chroma=tonal_chroma),
        librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
        librosa.feature.spectral_rolloff(S=magnitude, sr=sr),
    ]
    return np.concatenate([block.mean(axis=1) for block in blocks]).astype(np.float32)


# TensorFlow's C++ log lines ("I0000 00:00:1795.. 7754 port.cc:153] oneDNN custom operations are on",
# "E0000 ... node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool", CUDA probing)
# and absl's notice before them. TensorFlow 2.21 writes them to file descriptor 2 whatever
# TF_CPP_MIN_LOG_LEVEL says, so they would fill a notebook's cells; fatal ones (F) are kept.
_NATIVE_LOG_LINE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-]+:\d+\] .*)$"
)
_NATIVE_LOG_START = re.compile(rb"^(W(A(R(N(I(N(G(:.*)?)?)?)?)?)?)?|[IWE]\d{0,4}( .*)?)$", re.DOTALL)
_filtering = threading.local()


@contextlib.contextmanager
def _without_native_log_lines():
    """Inside, lines written to file descriptor 2 that are TensorFlow's C++ log lines are dropped.

    Everything else passes through as it comes (a progress bar's carriage returns included), by a
    thread reading a pipe put in place of descriptor 2, which is restored on exit.
    """
    if getattr(_filtering, "active", False):
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                out = b"".join(line + b"\n" for line in lines if not _NATIVE_LOG_LINE.match(line))
                if pending and not _NATIVE_LOG_START.match(pending):  # a progress bar, not a log line's start
                    out, pending = out + pending, b""
                if out:
                    os.write(original, out)
        if pending:
            os.write(original, pending)

    thread = threading.Thread(target=forward, name="ser_lib-stderr-filter", daemon=True)
    thread.start()
    _filtering.active = True
    try:
        yield
    finally:
        _filtering.active = False
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        os.dup2(original, 2)  # closes the pipe's write end: the thread reads to its end and stops
        thread.join(timeout=10)
        os.close(original)


def import_keras():
    """Keras, with TensorFlow's C++ start-up chatter (CUDA probing, CPU flags) silenced, and openSMILE loaded first.

    openSMILE's native library loaded *after* TensorFlow corrupts the heap at its first use
    (``malloc(): invalid size``: the process dies; measured with TensorFlow 2.21 and openSMILE
    2.6), while loaded before it works. So that one process (a notebook) can train this recipe and
    then compute the functionals_fusion recipe's features, openSMILE is imported first when it is
    installed.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and importlib.util.find_spec("opensmile") is not None:
        import opensmile  # noqa: F401
    try:
        with _without_native_log_lines():
            import keras
    except ImportError as error:
        what, extra = TRAINING_NEEDS["keras"]
        raise ModuleNotFoundError(f"Training the {NAME} recipe needs {what}: pip install 'ser_lib[{extra}]'.",
                                  name="keras") from error

    return keras


# (units, dropout) of the hidden blocks: Dense(ReLU) -> BatchNormalization -> Dropout.
HIDDEN_LAYERS = ((512, 0.3), (256, 0.3), (128, 0.3), (64, 0.2))


def build_mlp(n_features: int, n_classes: int, *, learning_rate: float = TRAINING_DEFAULTS["learning_rate"]):
    """The original 512-256-128-64 MLP, compiled with Adam and categorical cross-entropy.

    With 195 inputs and 8 classes it has 277,192 parameters, 275,272 of them trainable.

    Parameters
    ----------
    n_features, n_classes : int
    learning_rate : float
        Adam's learning rate.

    Returns
    -------
    model : keras.Model
    """
    if n_features < 1 or n_classes < 2:
        raise ValueError(f"Expected at least 1 feature and 2 classes, got n_features={n_features}, n_classes={n_classes}.")
    keras = import_keras()
    with _without_native_log_lines():
        return _build_mlp(keras, n_features, n_classes, learning_rate)


def _build_mlp(keras, n_features, n_classes, learning_rate):
    layers = keras.layers
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    for units, dropout in HIDDEN_LAYERS:
        x = layers.Dense(units, activation="relu")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    model = keras.Model(inputs, outputs, name="ser_mlp")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def export_layers(model) -> list[dict]:
    """A trained Keras model's inference computation as NumPy arrays, for :func:`forward`.

    Supports Dense (linear, ReLU or softmax), BatchNormalization and Dropout (ignored at
    inference) layers: everything :func:`build_mlp` makes.
    """
    exported = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Dropout"):
            continue
        if kind == "Dense":
            kernel, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
            activation = layer.get_config()["activation"]
            if activation not in ("linear", "relu", "softmax"):
                raise ValueError(f"Cannot export Dense activation {activation!r}: expected linear, relu or softmax.")
            exported.append({"kind": "dense", "kernel": kernel, "bias": bias, "activation": activation})
        elif kind == "BatchNormalization":
            gamma, beta, mean, variance = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
            exported.append({
                "kind": "batchnorm", "gamma": gamma, "beta": beta, "mean": mean, "variance": variance,
                "epsilon": np.float32(layer.epsilon),
            })
        else:
            raise ValueError(f"Cannot export a {kind} layer: expected Dense, BatchNormalization or Dropout.")
    return exported


def fit(x, y, parts, *, n_classes, seed, epochs, batch_size, patience, progress, description, **_) -> dict:
    """Standardise on the train part, then the 512-256-128-64 MLP with the original's callbacks (early stopping on validation)."""
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
    with _without_native_log_lines():
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


def describe_model(n_features: int, n_classes: int) -> pd.DataFrame:
    """The network's layers and parameter counts, as Keras's summary gives them, without importing Keras.

    Returns
    -------
    table : pd.DataFrame [columns: layer, output, parameters, trainable]
    """
    rows, inputs = [], n_features
    for index, (units, dropout) in enumerate(HIDDEN_LAYERS, start=1):
        rows += [
            {"layer": f"dense {index} (ReLU)", "output": units, "parameters": inputs * units + units, "trainable": inputs * units + units},
            # gamma and beta learn; the moving mean and variance are statistics
            {"layer": f"batch normalisation {index}", "output": units, "parameters": 4 * units, "trainable": 2 * units},
            {"layer": f"dropout {dropout:g}", "output": units, "parameters": 0, "trainable": 0},
        ]
        inputs = units
    rows.append({"layer": "dense (softmax)", "output": n_classes, "parameters": inputs * n_classes + n_classes,
                 "trainable": inputs * n_classes + n_classes})
    table = pd.DataFrame(rows)
    total = table[["parameters", "trainable"]].sum()
    return pd.concat([table, pd.DataFrame([{"layer": "total", "output": n_classes, **total.to_dict()}])], ignore_index=True)
