"""The recipes: each a way from audio to emotions, in a module of its own, and the registry.

A recipe module defines:

- ``NAME`` (what it is, not how good), ``SUMMARY`` (one line for ``--help`` and tables);
- ``SETTINGS``: everything that changes its feature values, including ``sample_rate`` and
  ``duration`` (seconds of a file it reads: 3.0 for the first window, ``None`` for the whole clip);
  caches and bundles are keyed by it;
- ``FEATURE_NAMES`` and ``compute(y, *, sr)``: the features of a mono signal;
- ``AUGMENTATIONS``: the training copies :func:`ser_lib.extract_many` adds by default
  (``ser_lib.features.VERSIONS``), given to training only;
- ``TALKER_COPIES``: training copies made of other speakers' clips (babble,
  ``ser_lib.conditions.NEEDS_TALKERS``), which :func:`ser_lib.train` extracts once the split is known,
  of the training speakers only, so that no held-out speaker's voice is in them;
- ``CROSS_VALIDATED``: whether it chooses its settings and calibrates by cross-validation over the
  training speakers (then the validation speakers train too);
- ``ADAPTIVE``: whether training also fits its adaptive mode (:mod:`ser_lib.adapt`: features
  normalised by the speaker's other clips), measured to help;
- ``fit(x, y, parts, *, n_classes, seed, epochs, batch_size, patience, progress, description, groups,
  is_copy, recorded)`` (``is_copy``: speed copies, never predicted; ``recorded``: copies under a
  recording condition, recordings of their own): its classifier, returned as ``layers`` (for :func:`ser_lib.model.forward`), the scaler,
  a ``history`` table, ``settings`` and optionally ``calibration`` (held-out probabilities, labels,
  atypicality of the rows ``calibration_rows`` marks, in their order), ``held_out_models`` (models
  of its cross-validation folds, each with the ``rows`` it did not learn from; else the adaptive
  mode is calibrated on the validation speakers) and a ``keras_model``;
- ``describe_model(n_features, n_classes)``: the classifier as a table;
- ``TRAINING_NEEDS``: ``{module: (what, pip extra)}`` of the optional packages training needs, so that
  ``ser train`` names what to install before it extracts any feature.

Adding a recipe is one module with these names, its line in ``_MODULES`` and its test.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ser_lib.audio import SAMPLE_RATE
from ser_lib.recipes import functionals_fusion, original

_MODULES = (original, functionals_fusion)
# Names that keep working: "best" is the strongest recipe on unseen speakers (README, ENHANCEMENTS.md);
# bundles saved before the recipes had their own names carry it.
ALIASES = {"best": functionals_fusion.NAME}
_FIELDS = ("NAME", "SUMMARY", "SETTINGS", "FEATURE_NAMES", "AUGMENTATIONS", "TALKER_COPIES", "CROSS_VALIDATED", "ADAPTIVE",
           "compute", "fit", "describe_model", "TRAINING_NEEDS")


@dataclass(frozen=True)
class Recipe:
    """One recipe's features and classifier (see the module docstring for each field)."""

    name: str
    summary: str
    settings: dict
    feature_names: Sequence[str]
    augmentations: tuple
    talker_copies: tuple
    cross_validated: bool
    adaptive: bool
    compute: Callable[..., np.ndarray]
    fit: Callable[..., dict]
    describe_model: Callable
    training_needs: dict

    @classmethod
    def from_module(cls, module) -> Recipe:
        missing = [name for name in _FIELDS if not hasattr(module, name)]
        if missing:
            raise TypeError(f"Recipe module {module.__name__} lacks {missing}: a recipe defines {list(_FIELDS)}.")
        return cls(*(getattr(module, name) for name in _FIELDS))

    @property
    def sample_rate(self) -> int:
        return int(self.settings["sample_rate"])

    @property
    def clip_seconds(self) -> float | None:
        """Seconds of a clip the features are computed from (the first ones), or None: the whole clip."""
        return self.settings["duration"]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def check_training_dependencies(self) -> None:
        """Raise ``ModuleNotFoundError`` naming what to install if a package this recipe trains with is missing."""
        for module, (what, extra) in self.training_needs.items():
            if importlib.util.find_spec(module) is None:
                raise ModuleNotFoundError(
                    f"Training the {self.name} recipe needs {what}, which is not installed: pip install 'ser_lib[{extra}]'.",
                    name=module,
                )


RECIPES = {module.NAME: Recipe.from_module(module) for module in _MODULES}


def recipe_names() -> list[str]:
    """Every name :func:`get_recipe` accepts: the recipes', then the aliases."""
    return [*RECIPES, *ALIASES]


def get_recipe(name) -> Recipe:
    """The recipe called ``name`` (or an alias of it, e.g. ``"best"``).

    Raises
    ------
    ValueError
        No recipe has that name.
    """
    if isinstance(name, Recipe):
        return name
    recipe = RECIPES.get(ALIASES.get(name, name))
    if recipe is None:
        raise ValueError(f"Unknown recipe {name!r}: expected one of {recipe_names()}.")
    return recipe


def warm_up() -> None:
    """Compute every available recipe's features of a synthetic voiced second.

    Each librosa kernel a recipe calls runs once, with the dtypes real clips have: this is how
    :mod:`ser_lib.kernels` checks, in a child process, that the compiled kernels do not crash.
    """
    sr = SAMPLE_RATE
    t = np.arange(sr) / sr
    phase = 2 * np.pi * np.cumsum(150 * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))) / sr
    y = (0.3 * sum(np.sin(k * phase) / k for k in range(1, 8)) * np.sin(np.pi * t)).astype(np.float32)
    for recipe in RECIPES.values():
        if recipe.name == functionals_fusion.NAME and importlib.util.find_spec("opensmile") is None:
            continue  # it cannot run here at all without openSMILE
        recipe.compute(y, sr=sr)
