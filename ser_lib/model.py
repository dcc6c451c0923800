"""A trained classifier as plain NumPy: its layers, the forward pass, and calibration.

Every recipe's classifier ends as a list of layers of NumPy arrays (dense, batch normalisation)
that :func:`forward` evaluates: the original's network gives Keras's probabilities to 1e-5
(tested), so ``predict_emotion`` starts in a fraction of a second instead of paying 8-10 s for
TensorFlow. A clip's softmax temperature is :func:`calibration_temperature`, the one formula that
fitting (:func:`ser_lib.evaluate.fit_calibration`) and prediction share. A model trained with copies
under recording conditions also recognises a clip's condition (:meth:`EmotionModel.recognise`) and
softens or sharpens its clips by that condition's caution factor (:func:`ser_lib.evaluate.fit_caution`),
and starts its ``high`` confidence tier where that condition's answers are as reliable as clean speech's
(:meth:`EmotionModel.tiers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ser_lib import quality
from ser_lib.adapt import MIN_CLIPS, SpeakerPrior, SpeakerStatistics, adapt, estimate_mix

# Confidence tiers (percent of the top class): high >= 70, medium 40-70, low below 40. Under a recording condition a
# model recognises, its high tier may start higher (EmotionModel.high_from).
TIERS = ((70.0, "high"), (40.0, "medium"), (0.0, "low"))
# The high tier's floor as a probability (0-1), for clean speech and any condition without a floor of its own.
HIGH_FROM = TIERS[0][0] / 100
# The recording condition of audio as it was recorded (ser_lib.conditions.apply's "clean"): the recogniser's name for
# the clips and their speed copies, the reference of the caution factors and high-tier floors.
CLEAN = "clean"


def forward(layers: list[dict], x: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of standardised features through exported layers.

    Parameters
    ----------
    layers : list of dict
        From a recipe's training (e.g. :func:`ser_lib.recipes.original.export_layers`) or a saved bundle.
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


def confidence_tier(confidence: float, high_from: float = TIERS[0][0]) -> str | None:
    """``"high"`` (>= ``high_from`` %, by default 70), ``"medium"`` (>= 40 %) or ``"low"`` for a confidence in percent; None for NaN."""
    if confidence is None or not np.isfinite(confidence):
        return None
    return "high" if confidence >= high_from else next(name for low, name in TIERS[1:] if confidence >= low)


def calibration_temperature(temperature, slope, atypicality, per_clip=0.0, n_clips=None, caution=None) -> np.ndarray:
    """The softmax temperature of clips: ``temperature * exp(slope * atypicality) * (1 + per_clip / n_clips) * caution``.

    With ``slope`` 0 every clip gets ``temperature``; with a positive slope, clips unlike the
    training clips get softer probabilities. ``exp(slope * atypicality)`` is ``d ** slope`` for
    ``d`` the clip's mean squared standardised feature. The last factor is the adaptive mode's
    (:mod:`ser_lib.adapt`): a speaker's statistics from few clips are rough, so its clips get
    softer probabilities (``n_clips`` None: as many as in training, factor 1). ``caution``: each
    clip's factor for its recording condition (:meth:`EmotionModel.caution_of`; None: 1).
    """
    t = temperature * np.exp(slope * np.asarray(atypicality, dtype=np.float64))
    if per_clip and n_clips is not None:
        t = t * (1 + per_clip / np.asarray(n_clips, dtype=np.float64))
    return t if caution is None else t * np.asarray(caution, dtype=np.float64)


@dataclass
class EmotionModel:
    """A trained classifier ready to predict: standardise, run the layers, softmax at a temperature.

    The temperature of a clip is ``temperature * exp(temperature_slope * atypicality)``
    (:func:`atypicality` of its standardised features): with a positive slope, clips unlike the
    training clips get softer probabilities. Both are fitted on held-out speakers
    (:func:`ser_lib.evaluate.fit_calibration`); 1 and 0 leave the probabilities as trained.
    A model trained with copies under recording conditions has a ``recogniser`` (layers giving the
    probability of each of the ``conditions``, ``CLEAN`` among them, from standardised features) and
    each model a ``caution`` factor per condition: a clip's temperature is also multiplied by
    ``exp(sum_c p_c * log caution_c)`` (:meth:`caution_of`), so a clip that sounds like babble gets
    babble's factor. Each model also has a floor per condition for its ``high`` tier (``high_from``:
    :meth:`tiers`), blended the same way. The adaptive model has factors and floors of its own and
    uses its parent's recogniser on the raw clips (adapted features no longer show the channel).
    Made by training (:func:`ser_lib.train`) or by loading a bundle (:func:`ser_lib.load_bundle`);
    it needs neither TensorFlow nor pickle.
    """

    classes: list
    layers: list
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    temperature: float = 1.0
    temperature_slope: float = 0.0
    # The adaptive model's softening for statistics of few clips (calibration_temperature's per_clip).
    temperature_per_clip: float = 0.0
    # Condition name -> factor on the temperature (ser_lib.evaluate.fit_caution); empty: none.
    caution: dict = field(default_factory=dict)
    # Condition name -> the lowest confidence (0-1) of its high tier (ser_lib.evaluate.fit_high_tier); empty: HIGH_FROM.
    high_from: dict = field(default_factory=dict)
    # The condition recogniser: layers over standardised features, outputs in ``conditions`` order
    # (the adaptive model has the names, and its parent's recogniser recognises its rows).
    recogniser: list | None = None
    conditions: tuple = ()
    # Recording conditions whose voices are adapted with the training speakers' typical emotion shares,
    # not shares estimated from their clips (chosen in training: ser_lib.training._choose_shares).
    typical_shares: tuple = ()
    recipe: str = "original"
    metadata: dict = field(default_factory=dict)
    # The adaptive mode (ser_lib.adapt): a model of speaker-normalised features, and what it shrinks toward.
    adaptive: EmotionModel | None = None
    prior: SpeakerPrior | None = None

    @property
    def n_features(self) -> int:
        return int(self.scaler_mean.shape[0])

    def predict_proba(self, features: np.ndarray, n_clips=None, conditions=None) -> np.ndarray:
        """Class probabilities of raw feature rows.

        Parameters
        ----------
        features : np.ndarray [shape=(n, n_features) or (n_features,)]
        n_clips : np.ndarray [shape=(n,)], optional
            For the adaptive model: the clips each row's speaker statistics came from.
        conditions : np.ndarray [shape=(n, n_conditions)], optional
            For the adaptive model: its parent's :meth:`recognise` of the raw rows. A model with a
            recogniser recognises its rows itself.

        Returns
        -------
        probabilities : np.ndarray [shape=(n, n_classes)], columns in ``classes`` order
        """
        standardised = self._standardise(features)
        if conditions is None and self.recogniser is not None:
            conditions = forward(self.recogniser, standardised)
        temperature = self.temperatures(standardised, n_clips, conditions)
        return forward(self.layers, standardised, temperature=temperature[:, None])

    def predict_proba_uncalibrated(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities of raw feature rows as trained (temperature 1)."""
        return forward(self.layers, self._standardise(features))

    def predict_speakers(self, features: np.ndarray, speakers, statistics: dict | None = None):
        """Probabilities of raw feature rows, each adapted to its speaker where the model can.

        Parameters
        ----------
        features : np.ndarray [shape=(n, n_features)]
        speakers : sequence [length n]
            The speaker of each row; None (or NaN) for a row of unknown voice, predicted per clip.
        statistics : dict, optional
            Speaker -> :class:`~ser_lib.adapt.SpeakerStatistics` (e.g. enrolled); a speaker not in
            it is adapted to its own rows.

        Returns
        -------
        probabilities : np.ndarray [shape=(n, n_classes)]
        adapted : np.ndarray [shape=(n,), dtype=bool]
            Whether the row went through the adaptive mode: the model has one and its speaker's
            statistics hold at least ``MIN_CLIPS`` clips. The others are per clip.
        n_clips : np.ndarray [shape=(n,), dtype=int]
            Clips its speaker's statistics came from (0 for a row of unknown voice).
        """
        features = self._checked(features)
        probabilities = self.predict_proba(features) if len(features) else np.empty((0, len(self.classes)))
        adapted_features, adapted, n_clips = self.adapt_speakers(features, speakers, statistics)
        if adapted.any():
            probabilities[adapted] = self.adaptive.predict_proba(adapted_features[adapted], n_clips[adapted],
                                                                 self.recognise(features[adapted]))
        return probabilities, adapted, n_clips

    def adapt_speakers(self, features: np.ndarray, speakers, statistics: dict | None = None):
        """Raw feature rows normalised by their speakers' statistics, where the model can (see :meth:`predict_speakers`).

        Returns the adapted features (rows not adapted are left as they are), whether each row was
        adapted, and the clips its speaker's statistics came from.
        """
        features = self._checked(features)
        speakers = np.array([None if s is None or (isinstance(s, float) and np.isnan(s)) else s for s in speakers], dtype=object)
        if len(speakers) != len(features):
            raise ValueError(f"Expected one speaker per feature row ({len(features)}), got {len(speakers)}.")
        out = features.copy()
        adapted, n_clips = np.zeros(len(features), dtype=bool), np.zeros(len(features), dtype=int)
        known = speakers != None  # noqa: E711 - elementwise on an object array
        for speaker in dict.fromkeys(speakers[known]):
            rows = speakers == speaker
            own = (statistics or {}).get(speaker)
            n_clips[rows] = own.n if own is not None else rows.sum()
            if self.adaptive is not None and n_clips[rows][0] >= MIN_CLIPS:
                own = own or self.speaker_statistics(features[rows])
                out[rows] = adapt(features[rows], own, self.prior)
                adapted[rows] = True
        return out, adapted, n_clips

    def speaker_statistics(self, features: np.ndarray) -> SpeakerStatistics:
        """The statistics of one unlabelled speaker's raw feature rows, its emotions' shares estimated (:func:`~ser_lib.adapt.estimate_mix`).

        A voice recognised as recorded under one of ``typical_shares`` keeps the typical shares
        (``mix`` None): under that condition the estimate costs more than it corrects.
        """
        if self.adaptive is None:
            raise ValueError("This model has no adaptive mode: it was trained without one (or before ser_lib had one).")
        features = self._checked(features)
        if self.typical_shares and self.recognised_condition(features) in self.typical_shares:
            return SpeakerStatistics.of(features)
        return estimate_mix(features, self.prior, self.adaptive.predict_proba_uncalibrated)

    def recognised_condition(self, features: np.ndarray) -> str | None:
        """The recording condition of a voice's raw feature rows: the most probable on average; None without a recogniser."""
        return self.condition_of(self.recognise(features))

    def condition_of(self, probabilities) -> str | None:
        """The condition most probable over a voice's rows of :meth:`recognise` probabilities (or their sum); None for None."""
        if probabilities is None:
            return None
        return self.conditions[int(np.argmax(np.asarray(probabilities).reshape(-1, len(self.conditions)).sum(axis=0)))]

    def uncertain(self, confidence, adapted=False, measures=None) -> np.ndarray:
        """Whether each answer is uncertain: its top probability (0-1) is below the abstention threshold
        of the model that gave it, or its input lies outside the range of the clips the model trained on.

        ``adapted`` (one flag, or one per row): the adaptive model's threshold for adapted rows. A
        model without a threshold marks no probability uncertain. ``measures`` [shape=(n, 4)]: the
        inputs' :mod:`ser_lib.quality` measures, checked against ``metadata["input_limits"]``
        (bundles saved before have none: never out of range).
        """
        confidence = np.asarray(confidence, dtype=np.float64)
        adapted = np.broadcast_to(np.asarray(adapted, dtype=bool), confidence.shape)
        threshold = np.full(confidence.shape, np.nan)
        for flag, model in ((False, self), (True, self.adaptive)):
            value = None if model is None else model.metadata.get("abstain_threshold")
            threshold[adapted == flag] = np.nan if value is None else float(value)
        uncertain = confidence < threshold  # NaN (no threshold): never uncertain
        if measures is not None:
            uncertain |= quality.beyond(measures, self.metadata.get("input_limits")).any(axis=1).reshape(uncertain.shape)
        return uncertain

    def tiers(self, confidence, adapted=False, conditions=None) -> list:
        """Each answer's confidence tier (:func:`confidence_tier`): ``high`` from its recording condition's floor.

        ``confidence`` [shape=(n,)]: top probabilities (0-1; NaN: no answer, tier None);
        ``adapted`` (one flag, or one per row): the adaptive model's floors for adapted rows;
        ``conditions`` [shape=(n, n_conditions)]: :meth:`recognise` of the raw rows (None: the clean
        floor). A row's floor is ``sum_c p_c * high_from_c``, so a clip that sounds like a room gets
        a room's floor.
        """
        confidence = np.atleast_1d(np.asarray(confidence, dtype=np.float64))
        adapted = np.broadcast_to(np.asarray(adapted, dtype=bool), confidence.shape)
        floors = np.full(confidence.shape, TIERS[0][0])
        if conditions is not None and self.conditions:
            conditions = np.asarray(conditions, dtype=np.float64).reshape(len(confidence), len(self.conditions))
            for flag, model in ((False, self), (True, self.adaptive)):
                rows = (adapted == flag) & np.isfinite(conditions).all(axis=1)
                if model is not None and model.high_from and rows.any():
                    own = np.array([model.high_from.get(name, HIGH_FROM) for name in self.conditions])
                    floors[rows] = 100 * conditions[rows] @ own
        return [confidence_tier(100 * c, floor) for c, floor in zip(confidence, floors)]

    def input_note(self, measures, conditions=None) -> str:
        """What one input shows: its measures, and the recording condition it sounds like.

        ``measures`` [shape=(4,)] (None: not measured): what they show and which lie outside the
        training range (:func:`ser_lib.quality.describe`). ``conditions``: its rows' :meth:`recognise`
        probabilities (None: not recognised); their mean's top condition, when it is not clean speech
        and above 50%, is named: ``"sounds like telephone (97%)"``.
        """
        parts = [] if measures is None else [quality.describe(measures, self.metadata.get("input_limits"))]
        if conditions is not None and self.conditions:
            mean = np.asarray(conditions, dtype=np.float64).reshape(-1, len(self.conditions)).mean(axis=0)
            top = int(np.argmax(mean))
            if self.conditions[top] != CLEAN and mean[top] > 0.5:
                parts.append(f"sounds like {self.conditions[top]} ({mean[top]:.0%})")
        return "; ".join(part for part in parts if part)

    def temperatures(self, standardised: np.ndarray, n_clips=None, conditions=None) -> np.ndarray:
        """The calibration temperature of each standardised feature row (``conditions``: see :meth:`predict_proba`)."""
        return self.temperature_at(atypicality(standardised), n_clips, self.caution_of(conditions)).astype(np.float32)

    def temperature_at(self, atypicality: np.ndarray, n_clips=None, caution=None) -> np.ndarray:
        """The calibration temperature of clips of this :func:`atypicality` (and statistics' clip count, caution factors)."""
        return calibration_temperature(self.temperature, self.temperature_slope, atypicality, self.temperature_per_clip, n_clips,
                                       caution)

    def recognise(self, features: np.ndarray) -> np.ndarray | None:
        """The probability of each of ``conditions`` for raw feature rows [shape=(n, n_conditions)]; None without a recogniser."""
        return None if self.recogniser is None else forward(self.recogniser, self._standardise(features))

    def caution_of(self, conditions) -> np.ndarray | None:
        """Each row's caution factor, ``exp(sum_c p_c * log caution_c)``, from :meth:`recognise`'s probabilities; None without."""
        if conditions is None or not self.caution:
            return None
        log_factors = np.log([self.caution.get(name, 1.0) for name in self.conditions])
        return np.exp(np.asarray(conditions, dtype=np.float64) @ log_factors)

    def atypicality(self, features: np.ndarray) -> np.ndarray:
        """:func:`atypicality` of raw feature rows under this model's scaler."""
        return atypicality(self._standardise(features))

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return (self._checked(features) - self.scaler_mean) / self.scaler_scale

    def _checked(self, features: np.ndarray) -> np.ndarray:
        features = np.atleast_2d(np.asarray(features, dtype=np.float32))
        if features.shape[1] != self.n_features:
            raise ValueError(
                f"X has {features.shape[1]} features, but this model is expecting {self.n_features} features as input."
            )
        return features
