"""The recipe registry: every recipe keeps the interface, names resolve, unknown names say what exists."""

import json
import types

import numpy as np
import pandas as pd
import pytest

import ser_lib
from conftest import voiced_signal
from ser_lib import recipes
from ser_lib.audio import AudioError


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_every_recipe_computes_its_named_features_from_a_clip(name):
    if name == "functionals_fusion":
        pytest.importorskip("opensmile")
    recipe = recipes.get_recipe(name)
    assert recipe.name == name and recipe.summary and len(set(recipe.feature_names)) == recipe.n_features
    settings = json.loads(json.dumps(recipe.settings))  # caches and bundles are keyed by it: it must be JSON
    assert settings["sample_rate"] == recipe.sample_rate == 22050 and settings["duration"] in (None, 3.0)
    values = recipe.compute(voiced_signal(1.5, seed=2), sr=recipe.sample_rate)
    assert values.shape == (recipe.n_features,) and values.dtype == np.float32 and np.all(np.isfinite(values))
    with pytest.raises(AudioError, match="is silent"):
        recipe.compute(np.zeros(22050, np.float32), sr=recipe.sample_rate)
    assert set(recipe.augmentations) <= set(ser_lib.features.VERSIONS)
    model = recipe.describe_model(recipe.n_features, 8)
    assert isinstance(model, pd.DataFrame) and len(model) > 1


def test_best_is_the_fusion_recipe_and_unknown_names_list_the_known_ones():
    assert recipes.get_recipe("best") is recipes.RECIPES["functionals_fusion"]
    assert recipes.recipe_names() == ["original", "functionals_fusion", "best"]
    with pytest.raises(ValueError, match=r"Unknown recipe 'mfcc': expected one of \['original', 'functionals_fusion', 'best'\]"):
        recipes.get_recipe("mfcc")
    with pytest.raises(ValueError, match="Unknown recipe 'mfcc'"):
        ser_lib.extract_many(pd.DataFrame({"path": ["a.wav"]}), recipe="mfcc")


def test_a_module_missing_part_of_the_interface_is_refused():
    incomplete = types.ModuleType("ser_lib.recipes.incomplete")
    incomplete.NAME, incomplete.SUMMARY = "incomplete", "a recipe without its trainer"
    with pytest.raises(TypeError, match=r"Recipe module ser_lib.recipes.incomplete lacks \['SETTINGS', 'FEATURE_NAMES'"):
        recipes.Recipe.from_module(incomplete)
