"""The "best" recipe: rich features, training-only speed perturbation, the fused logistic model, its bundle."""

import importlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import ser_lib
from conftest import voiced_signal
training = importlib.import_module("ser_lib.train")  # ser_lib.train is also the function
from ser_lib.features import FEATURE_NAMES, RECIPES, extract_features, extract_many
from ser_lib.model import softmax
from ser_lib.rich_features import MEMBER_COLUMNS, N_FEATURES, augment_signal, compute_rich_features

pytest.importorskip("opensmile")


@pytest.fixture(scope="module")
def two_second_features():
    return compute_rich_features(voiced_signal(2.0, f0=140.0), sr=22050)


def test_features_have_their_names_and_are_finite(two_second_features):
    names = list(RECIPES["best"]["names"])
    assert two_second_features.shape == (N_FEATURES,) == (7513,) and two_second_features.dtype == np.float32
    assert np.all(np.isfinite(two_second_features))
    assert len(names) == len(set(names)) == N_FEATURES
    assert names[0] == "mel_mean_000" and names[256] == "mel_delta_mean_000" and names[1051] == "duration_s"
    assert names[1052].startswith("egemaps_") and names[1140].startswith("compare_") and names[-1].startswith("compare_")
    assert MEMBER_COLUMNS == {"frame_egemaps": (0, 1140), "compare": (1140, 7513)}


def test_pitch_and_duration_statistics_have_known_answers(two_second_features):
    values = dict(zip(RECIPES["best"]["names"], two_second_features))
    # 140 Hz with +-5% vibrato; the envelope's quiet gaps are not voiced.
    assert values["log2_f0_mean"] == pytest.approx(np.log2(140.0), abs=0.05)
    assert values["log2_f0_p90"] - values["log2_f0_p10"] < 0.2
    assert 1.5 < values["duration_s"] <= 2.0 and 0.3 < values["voiced_fraction"] <= 1.0


def test_importing_ser_lib_does_not_import_opensmile():
    code = "import sys, ser_lib; assert len(ser_lib.features.RECIPES['best']['names']) == 7513; print('opensmile' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_whole_file_counts_for_best_and_three_seconds_for_original(write_wav):
    speech = voiced_signal(3.0, f0=140.0)
    short = write_wav("short.wav", data=speech)
    longer = write_wav("longer.wav", data=np.concatenate([speech, voiced_signal(1.5, f0=220.0, seed=3)]))
    assert RECIPES["best"]["settings"]["duration"] is None and RECIPES["original"]["settings"]["duration"] == 3.0
    np.testing.assert_array_equal(extract_features(short), extract_features(longer))
    assert not np.allclose(extract_features(short, recipe="best"), extract_features(longer, recipe="best"))


def test_a_three_second_window_has_features_too():
    window = voiced_signal(3.0, f0=200.0, seed=4)
    features = ser_lib.EmotionModel(classes=["a", "b"], layers=[], scaler_mean=np.zeros(7513), scaler_scale=np.ones(7513),
                                    recipe="best").features(window, 22050)
    assert features.shape == (7513,) and np.all(np.isfinite(features))


@pytest.mark.parametrize("augmentation, factor", [("speed0.9", 0.9), ("speed1.1", 1.1)])
def test_speed_perturbation_changes_length_by_its_factor(augmentation, factor):
    y = voiced_signal(1.0)
    assert augment_signal(y, augmentation).size == pytest.approx(y.size / factor, abs=2)
    assert augment_signal(y, "none") is y


def test_unknown_augmentations_are_refused(write_wav):
    with pytest.raises(ValueError, match="Unknown augmentation 'reverb'"):
        augment_signal(voiced_signal(1.0), "reverb")
    with pytest.raises(ValueError, match=r"Unknown augmentations \['reverb'\]"):
        extract_many(pd.DataFrame({"path": [write_wav()]}), recipe="best", augmentations=("reverb",), progress=False)


def test_best_features_need_its_sample_rate():
    with pytest.raises(ValueError, match="defined at 22050 Hz, got sr=16000"):
        compute_rich_features(voiced_signal(1.0, sr=16000), sr=16000)


def test_extract_many_adds_augmented_rows_cached_under_their_own_keys(write_wav, tmp_path):
    table = pd.DataFrame({"path": [write_wav("a.wav", f0=130.0), write_wav("b.wav", f0=190.0)], "speaker": ["s1", "s2"]})
    cache = tmp_path / "cache"
    features = extract_many(table, recipe="best", n_jobs=1, cache_dir=cache, progress=False)
    assert features["augmentation"].tolist() == ["none", "none", "speed0.9", "speed0.9", "speed1.1", "speed1.1"]
    assert features["path"].tolist() == table["path"].tolist() * 3 and features["speaker"].tolist() == ["s1", "s2"] * 3
    matrix = ser_lib.features.feature_matrix(features, recipe="best")
    assert len({row.tobytes() for row in matrix}) == 6
    assert len(list(cache.rglob("*.npy"))) == 6
    again = extract_many(table, recipe="best", n_jobs=1, cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(features, again)
    plain = extract_many(table, recipe="best", augmentations=(), n_jobs=1, cache_dir=cache, progress=False)
    assert "augmentation" not in plain.columns and len(plain) == 2
    np.testing.assert_array_equal(ser_lib.features.feature_matrix(plain, recipe="best"), matrix[:2])
    original = extract_many(table, n_jobs=1, cache_dir=None, progress=False)
    assert "augmentation" not in original.columns and list(original.columns[2:]) == list(FEATURE_NAMES)


def _synthetic_table(n_speakers=6, clips=8, seed=0):
    """Original clips and two augmented copies each; feature 0 holds a row id to trace what training saw."""
    rng = np.random.default_rng(seed)
    rows = [{"path": f"/data/Actor_{s:02d}/{c:02d}.wav", "corpus": "RAVDESS", "speaker": f"ravdess_{s:02d}",
             "gender": "female" if s % 2 else "male", "emotion": ["angry", "happy"][c % 2]}
            for s in range(1, n_speakers + 1) for c in range(clips)]
    originals = pd.DataFrame(rows).assign(augmentation="none")
    table = pd.concat([originals.assign(augmentation=kind) for kind in ("none", "speed0.9", "speed1.1")], ignore_index=True)
    x = rng.standard_normal((len(table), len(FEATURE_NAMES))).astype(np.float32)
    x[:, 0] = np.arange(len(table))
    return pd.concat([table, pd.DataFrame(x, columns=list(FEATURE_NAMES))], axis=1)


@pytest.mark.parametrize("given", ["protocol", "split over every row", "split over originals"])
def test_no_augmented_copy_of_a_validation_or_test_clip_is_trained_on(monkeypatch, given):
    table = _synthetic_table()
    seen = {}

    def spy(x, y, parts, *, n_classes, **_):
        seen.update(x=x, parts=parts)
        layer = {"kind": "dense", "kernel": np.zeros((x.shape[1], n_classes), np.float32),
                 "bias": np.zeros(n_classes, np.float32), "activation": "linear"}
        return {"layers": [layer], "keras_model": None, "history": pd.DataFrame(), "settings": {},
                "scaler_mean": np.zeros(x.shape[1], np.float32), "scaler_scale": np.ones(x.shape[1], np.float32)}

    monkeypatch.setitem(training.RECIPE_TRAINERS, "original", spy)
    split = None
    originals = table["augmentation"] == "none"
    by_speaker = table["speaker"].map({"ravdess_01": "test", "ravdess_02": "validation"}).fillna("train")
    if given == "split over every row":
        # Even a split that calls every copy "train" must not bring held-out clips' copies in.
        split = by_speaker.where(originals, "train")
    elif given == "split over originals":
        split = by_speaker[originals]
    run = ser_lib.train(table, split=split, seed=0, progress=False)

    assert len(run.split) == originals.sum() and len(run.predictions) == (run.split == "test").sum()
    trained = table.loc[seen["x"][seen["parts"]["train"], 0].astype(int)]
    train_paths = set(table.loc[run.split.index[run.split == "train"], "path"])
    held_out_paths = set(table.loc[run.split.index[run.split != "train"], "path"])
    assert set(trained["path"]) == train_paths and not set(trained["path"]) & held_out_paths
    assert (trained["augmentation"] != "none").sum() == 2 * len(train_paths) == run.settings["augmented_train_rows"]
    for part in ("validation", "test"):
        assert (table.loc[seen["x"][seen["parts"][part], 0].astype(int), "augmentation"] == "none").all()


def test_a_split_of_the_wrong_length_is_refused():
    table = _synthetic_table()
    with pytest.raises(ValueError, match="one entry per row \\(144\\) or per original clip \\(48\\), got 5"):
        ser_lib.train(table, split=pd.Series(["train"] * 5), progress=False)


def _member_logits(x, y, train_rows, c, columns):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    first, last = columns
    scaler = StandardScaler().fit(x[train_rows, first:last])
    model = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x[train_rows, first:last]), y[train_rows])
    return model.decision_function(scaler.transform(x[:, first:last]))


def test_the_fused_layer_is_the_mean_of_the_two_members_logits():
    rng = np.random.default_rng(1)
    n, n_classes = 120, 3
    y = np.arange(n) % n_classes
    x = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    x[:, :20] += y[:, None] * 0.8
    x[:, 2000:2040] -= y[:, None] * 0.5
    parts = {"train": np.arange(n) < 80, "validation": (np.arange(n) >= 80) & (np.arange(n) < 100), "test": np.arange(n) >= 100}
    fitted = training._fit_best(x, y, parts, n_classes=n_classes, seed=0, epochs=1, batch_size=1, patience=1,
                                progress=False, description="")
    members = fitted["settings"]["members"]
    expected = np.mean([_member_logits(x, y, parts["train"], members[m]["C"], members[m]["columns"]) for m in members], axis=0)
    model = ser_lib.EmotionModel(classes=list("abc"), layers=fitted["layers"], scaler_mean=fitted["scaler_mean"],
                                 scaler_scale=fitted["scaler_scale"], recipe="best")
    np.testing.assert_allclose(model.predict_proba(x), softmax(expected), atol=1e-5)
    assert list(fitted["history"].columns) == ["loss", "accuracy", "val_loss", "val_accuracy"] and len(fitted["history"]) == 1
    for member, grid in training.BEST_C_GRIDS.items():
        accuracies = members[member]["validation_accuracy"]
        assert members[member]["C"] in grid and accuracies[str(members[member]["C"])] == max(accuracies.values())


@pytest.mark.slow
def test_best_recipe_end_to_end_bundle_and_prediction(tmp_path):
    ser_lib.make_demo_corpus(tmp_path / "demo", speakers_per_corpus=4, clips_per_emotion=1)
    table = ser_lib.scan_corpora(tmp_path / "demo")
    table = table[table["corpus"] == "CREMA-D"].reset_index(drop=True)  # the smallest corpus with 4 speakers
    features = extract_many(table, recipe="best", n_jobs=2, cache_dir=tmp_path / "cache", progress=False)
    assert set(features["augmentation"]) == {"none", "speed0.9", "speed1.1"} and len(features) == 3 * len(table)
    run = ser_lib.train(features, recipe="best", seed=0, progress=False)
    assert run.settings["augmented_train_rows"] == 2 * (run.split == "train").sum()
    assert set(run.history.columns) >= {"loss", "val_loss", "accuracy", "val_accuracy"}
    ser_lib.save_bundle(run, tmp_path / "bundle")
    assert not (tmp_path / "bundle" / "best_ser_model.keras").exists()
    model = ser_lib.load_bundle(tmp_path / "bundle")
    assert model.recipe == "best" and model.n_features == 7513 and model.metadata["feature_settings"]["duration"] is None

    # The bundle's probabilities are the two sklearn members' fused softmax at the fitted temperature.
    originals = features[features["augmentation"] == "none"]
    x = ser_lib.features.feature_matrix(features, recipe="best")
    y = features["emotion"].map({c: i for i, c in enumerate(model.classes)}).to_numpy()
    train_paths = set(originals.loc[run.split == "train", "path"])
    train_rows = features["path"].isin(train_paths).to_numpy()
    members = run.settings["members"]
    logits = np.mean([_member_logits(x, y, train_rows, members[m]["C"], members[m]["columns"]) for m in members], axis=0)
    test_rows = np.flatnonzero((features["augmentation"] == "none").to_numpy())[(run.split == "test").to_numpy()]
    np.testing.assert_allclose(model.predict_proba(x[test_rows]), softmax(logits[test_rows] / model.temperature), atol=1e-5)

    clip = run.predictions["path"].iloc[0]
    emotion, confidence, probabilities = ser_lib.predict_emotion(clip, artifacts_dir=tmp_path / "bundle")
    assert emotion in model.classes and 0 < confidence <= 100 and sum(probabilities.values()) == pytest.approx(1, abs=1e-4)


def _synthetic_best_table(n_speakers=8, clips=6, seed=0):
    """Like ``_synthetic_table`` with the best recipe's columns; column 0 holds a row id, a few columns the label."""
    from ser_lib.features import RECIPES

    rng = np.random.default_rng(seed)
    emotions = ["angry", "happy", "sad"]
    rows = [{"path": f"/data/Actor_{s:02d}/{c:02d}.wav", "corpus": "RAVDESS", "speaker": f"ravdess_{s:02d}",
             "gender": "female" if s % 2 else "male", "emotion": emotions[c % 3]}
            for s in range(1, n_speakers + 1) for c in range(clips)]
    originals = pd.DataFrame(rows)
    table = pd.concat([originals.assign(augmentation=kind) for kind in ("none", "speed0.9", "speed1.1")], ignore_index=True)
    x = rng.standard_normal((len(table), N_FEATURES)).astype(np.float32)
    label = table["emotion"].map({e: i for i, e in enumerate(emotions)}).to_numpy()
    x[:, 1:20] += label[:, None] * 0.7
    x[:, 2000:2040] -= label[:, None] * 0.4
    x[:, 0] = np.arange(len(table))
    return pd.concat([table, pd.DataFrame(x, columns=list(RECIPES["best"]["names"]))], axis=1)


def test_best_recipe_calibrates_on_out_of_fold_training_speakers_and_validation_never_test(monkeypatch):
    table = _synthetic_best_table()
    originals = table["augmentation"] == "none"
    split = table.loc[originals, "speaker"].map({"ravdess_01": "test", "ravdess_02": "test", "ravdess_03": "validation"})
    split = split.fillna("train")
    folds, fused_logits = [], training._fused_logits

    def spy(x, y, fit_rows, predict_rows, *args):
        folds.append((x[fit_rows, 0].astype(int), x[predict_rows, 0].astype(int)))
        return fused_logits(x, y, fit_rows, predict_rows, *args)

    monkeypatch.setattr(training, "_fused_logits", spy)
    run = ser_lib.train(table, recipe="best", split=split, seed=0, progress=False)

    speaker_of = table["speaker"].to_numpy()
    test_speakers, train_speakers = {"ravdess_01", "ravdess_02"}, {f"ravdess_{s:02d}" for s in range(4, 9)}
    assert len(folds) == training.BEST_CALIBRATION_FOLDS
    predicted = np.concatenate([held for _, held in folds])
    # Every training clip is predicted once, by a model that saw no clip (nor copy) of its speaker; test never appears.
    assert sorted(predicted) == sorted(np.flatnonzero(originals & table["speaker"].isin(train_speakers)))
    for fit, held in folds:
        assert not set(speaker_of[fit]) & set(speaker_of[held])
        assert set(speaker_of[fit]) <= train_speakers and (table.loc[fit, "augmentation"] != "none").any()
    n_validation = (run.split == "validation").sum()
    assert run.settings["calibration_clips"] == len(predicted) + n_validation > n_validation
    assert run.settings["calibrated_on"].startswith("out-of-fold") and np.isfinite(run.metrics["temperature"])
    assert len(run.predictions) == (run.split == "test").sum() and not set(run.predictions["speaker"]) - test_speakers
