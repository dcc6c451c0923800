"""The original recipe's dense network, and the same network as plain NumPy for prediction.

Keras (and TensorFlow) are imported only inside :func:`build_mlp` and :func:`export_layers`:
training needs them, prediction does not. A trained network is exported to a list of layers of
NumPy arrays that :func:`forward` evaluates; it gives Keras's probabilities to 1e-5 (tested), so
``predict_emotion`` starts in a fraction of a second instead of paying 8-10 s for TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

def import_keras():
    """Keras with TensorFlow's C++ start-up chatter (CUDA probing, CPU flags) silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


# (units, dropout) of the hidden blocks: Dense(ReLU) -> BatchNormalization -> Dropout.
HIDDEN_LAYERS = ((512, 0.3), (256, 0.3), (128, 0.3), (64, 0.2))


def build_mlp(n_features: int, n_classes: int, *, learning_rate: float = 1e-3):
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


def forward(layers: list[dict], x: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of standardised features through exported layers.

    Parameters
    ----------
    layers : list of dict
        From :func:`export_layers` (or a saved bundle).
    x : np.ndarray [shape=(n, n_features)]
    temperature : float or np.ndarray [shape=(n, 1)]
        Softmax temperature (calibration): logits are divided by it, one for all rows or one per
        row. 1 leaves them as trained.

    Returns
    -------
    probabilities : np.ndarray [shape=(n, n_classes)]
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"Expected features of shape (n, n_features), got shape {x.shape}.")
    for index, layer in enumerate(layers):
        if layer["kind"] == "batchnorm":
            x = (x - layer["mean"]) / np.sqrt(layer["variance"] + layer["epsilon"]) * layer["gamma"] + layer["beta"]
            continue
        x = x @ layer["kernel"] + layer["bias"]
        if layer["activation"] == "relu":
            x = np.maximum(x, 0)
        elif layer["activation"] == "softmax":
            if index != len(layers) - 1:
                raise ValueError("A softmax layer must be the last layer.")
            return softmax(x / temperature)
    return softmax(x / temperature)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def atypicality(standardised: np.ndarray) -> np.ndarray:
    """How far each standardised feature row lies from the training clips: log of its mean square.

    A clip like the training clips scores about 0 (each standardised feature has mean square 1
    over them); one a hundred times further scores log 100 = 4.6.
    """
    standardised = np.asarray(standardised, dtype=np.float64)
    return np.log(np.maximum(np.mean(standardised**2, axis=1), 1e-12))


@dataclass
class EmotionModel:
    """A trained classifier ready to predict: standardise, run the layers, softmax at a temperature.

    The temperature of a clip is ``temperature * exp(temperature_slope * atypicality)``
    (:func:`atypicality` of its standardised features): with a positive slope, clips unlike the
    training clips get softer probabilities. Both are fitted on held-out speakers
    (:func:`ser_lib.evaluate.fit_calibration`); 1 and 0 leave the probabilities as trained.
    Made by training (:func:`ser_lib.train`) or by loading a bundle (:func:`ser_lib.load_bundle`);
    it needs neither TensorFlow nor pickle.
    """

    classes: list
    layers: list
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    temperature: float = 1.0
    temperature_slope: float = 0.0
    recipe: str = "original"
    metadata: dict = field(default_factory=dict)

    def features(self, y: np.ndarray, sr: int) -> np.ndarray:
        """This model's input features of a mono signal (its recipe's feature set)."""
        from ser_lib.features import recipe_features

        return recipe_features(y, sr=sr, recipe=self.recipe)

    @property
    def n_features(self) -> int:
        return int(self.scaler_mean.shape[0])

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of raw feature rows.

        Parameters
        ----------
        features : np.ndarray [shape=(n, n_features) or (n_features,)]

        Returns
        -------
        probabilities : np.ndarray [shape=(n, n_classes)], columns in ``classes`` order
        """
        standardised = self._standardise(features)
        return forward(self.layers, standardised, temperature=self.temperatures(standardised)[:, None])

    def temperatures(self, standardised: np.ndarray) -> np.ndarray:
        """The calibration temperature of each standardised feature row."""
        if self.temperature_slope == 0:
            return np.full(len(standardised), self.temperature, dtype=np.float32)
        return self.temperature_at(atypicality(standardised)).astype(np.float32)

    def temperature_at(self, atypicality: np.ndarray) -> np.ndarray:
        """The calibration temperature of clips of the given :func:`atypicality`."""
        return self.temperature * np.exp(self.temperature_slope * np.asarray(atypicality, dtype=np.float64))

    def atypicality(self, features: np.ndarray) -> np.ndarray:
        """:func:`atypicality` of raw feature rows under this model's scaler."""
        return atypicality(self._standardise(features))

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        features = np.atleast_2d(np.asarray(features, dtype=np.float32))
        if features.shape[1] != self.n_features:
            raise ValueError(
                f"X has {features.shape[1]} features, but this model is expecting {self.n_features} features as input."
            )
        return (features - self.scaler_mean) / self.scaler_scale
