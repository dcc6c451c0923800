"""The functionals_fusion recipe (alias "best"): its features, training-only speed perturbation, the fused model, its bundle."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

import ser_lib
from conftest import voiced_signal
from ser_lib import recipes
from ser_lib.features import augment_signal, extract_features, extract_many
from ser_lib.model import softmax
from ser_lib.recipes import functionals_fusion, get_recipe
from ser_lib.recipes.functionals_fusion import MEMBER_COLUMNS, N_FEATURES
from ser_lib.recipes.original import FEATURE_NAMES

FUSION = get_recipe("best")

pytest.importorskip("opensmile")


@pytest.fixture(scope="module")
def two_second_features():
    return functionals_fusion.compute(voiced_signal(2.0, f0=140.0), sr=22050)


def test_features_have_their_names_and_are_finite(two_second_features):
    names = list(FUSION.feature_names)
    assert two_second_features.shape == (N_FEATURES,) == (7784,) and two_second_features.dtype == np.float32
    assert np.all(np.isfinite(two_second_features))
    assert len(names) == len(set(names)) == N_FEATURES
    assert names[0] == "mel_mean_000" and names[256] == "mel_delta_mean_000" and names[1051] == "duration_s"
    assert names[1052].startswith("egemaps_") and names[1140].startswith("compare_") and names[7512].startswith("compare_")
    assert names[7513] == "modulation_band00_0.25-0.5Hz" and names[-1] == "contour_voiced_part7"
    assert MEMBER_COLUMNS == {"frame_egemaps": (0, 1140), "compare": (1140, 7513), "modulation": (7513, 7784)}


def test_modulation_spectrum_finds_the_syllable_rate(two_second_features):
    values = dict(zip(FUSION.feature_names, two_second_features))
    # voiced_signal's loudness envelope is sin(2 pi 3 t)^2: it beats at 6 Hz.
    shares = {band: values[f"modulation_all_{band}"] for band in ("0.25-0.5Hz", "0.5-1Hz", "1-2Hz", "2-4Hz", "4-8Hz", "8-16Hz", "16-32Hz")}
    assert max(shares, key=shares.get) == "4-8Hz" and shares["4-8Hz"] > np.log(0.5)


def test_pitch_contour_follows_a_rising_glide():
    sr, seconds = 22050, 2.0
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 * 2 ** (t / seconds)  # one octave up, 120 to 240 Hz
    phase = 2 * np.pi * np.cumsum(f0) / sr
    glide = (0.3 * sum(np.sin(k * phase) / k for k in range(1, 8)) / 2).astype(np.float32)
    values = dict(zip(FUSION.feature_names, functionals_fusion.compute(glide, sr=sr)))
    contour = np.array([values[f"contour_log2_f0_part{k}"] for k in range(8)])
    assert np.all(np.diff(contour) > 0) and contour[-1] - contour[0] == pytest.approx(7 / 8, abs=0.15)
    assert all(values[f"contour_voiced_part{k}"] == 1 for k in range(8))


def test_pitch_and_duration_statistics_have_known_answers(two_second_features):
    values = dict(zip(FUSION.feature_names, two_second_features))
    # 140 Hz with +-5% vibrato; the envelope's quiet gaps are not voiced.
    assert values["log2_f0_mean"] == pytest.approx(np.log2(140.0), abs=0.05)
    assert values["log2_f0_p90"] - values["log2_f0_p10"] < 0.2
    assert 1.5 < values["duration_s"] <= 2.0 and 0.3 < values["voiced_fraction"] <= 1.0


def test_importing_ser_lib_does_not_import_opensmile():
    code = "import sys, ser_lib; assert len(ser_lib.get_recipe('best').feature_names) == 7784; print('opensmile' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.slow
def test_in_one_process_with_tensorflow_the_features_work_or_say_why_never_crash():
    features = "from conftest import voiced_signal; print(ser_lib.get_recipe('best').compute(voiced_signal(1.0), sr=22050).shape)"
    # Training the original recipe imports TensorFlow the safe way: openSMILE's library first.
    after_training = subprocess.run([sys.executable, "-c", f"import ser_lib; ser_lib.build_mlp(195, 8); {features}"],
                                    capture_output=True, text=True, cwd=Path(__file__).parent)
    assert after_training.returncode == 0 and "(7784,)" in after_training.stdout, after_training.stderr[-2000:]
    # TensorFlow imported by the user first: an error that says what to do, not a dead process.
    after_tensorflow = subprocess.run([sys.executable, "-c", f"import tensorflow, ser_lib; {features}"],
                                      capture_output=True, text=True, cwd=Path(__file__).parent)
    assert after_tensorflow.returncode == 1 and "RuntimeError: The functionals_fusion recipe's openSMILE features cannot" \
        " be computed in a process that imported TensorFlow" in after_tensorflow.stderr


def test_opensmile_run_again_gives_its_values_to_the_bit_in_every_thread():
    # One openSMILE instance per set and thread, reset between signals, instead of one built per signal (issue 13).
    from concurrent.futures import ThreadPoolExecutor

    signals = [functionals_fusion.prepare(voiced_signal(seconds, f0=f0, seed=seed))
               for seconds, f0, seed in ((1.5, 120.0, 1), (2.5, 210.0, 2), (0.8, 160.0, 3))]
    too_short = np.zeros(100, dtype=np.float32)
    for name in functionals_fusion.OPENSMILE_SETS:
        fresh = [functionals_fusion._smile(name).process_signal(y, 22050).to_numpy()[0] for y in signals]
        with pytest.warns(UserWarning, match="gave no functionals for a signal of 100 samples"):
            assert np.isnan(functionals_fusion.opensmile_functionals(too_short, name)).all()
        # The main thread's instance after a frameless run, then three threads at once, each with its own.
        assert all(np.array_equal(functionals_fusion.opensmile_functionals(y, name), b) for y, b in zip(signals, fresh))
        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(lambda y: functionals_fusion.opensmile_functionals(y, name), signals * 4))
        assert all(np.array_equal(a, b) for a, b in zip(got, fresh * 4))


def test_the_whole_file_counts_for_best_and_three_seconds_for_original(write_wav):
    speech = voiced_signal(3.0, f0=140.0)
    short = write_wav("short.wav", data=speech)
    longer = write_wav("longer.wav", data=np.concatenate([speech, voiced_signal(1.5, f0=220.0, seed=3)]))
    assert FUSION.clip_seconds is None and get_recipe("original").clip_seconds == 3.0
    np.testing.assert_array_equal(extract_features(short), extract_features(longer))
    assert not np.allclose(extract_features(short, recipe="best"), extract_features(longer, recipe="best"))


def test_every_block_reads_the_speech_not_the_silence_around_it(monkeypatch):
    # Corpora pad their clips with different amounts of silence; features (openSMILE's included) should not count it.
    speech = voiced_signal(2.0, f0=160.0)
    padded = np.concatenate([np.zeros(22050, np.float32), speech, np.zeros(33075, np.float32)])
    prepared = functionals_fusion.prepare(padded)
    assert abs(len(prepared) - len(speech)) <= 2 * 2048 and np.max(np.abs(prepared)) == np.max(np.abs(speech))
    heard = []
    real = functionals_fusion.opensmile_functionals
    monkeypatch.setattr(functionals_fusion, "opensmile_functionals", lambda y, name, sr: heard.append(len(y)) or real(y, name, sr=sr))
    functionals_fusion.compute(padded)
    assert heard == [len(prepared)] * 2
    # A clip that is almost all silence keeps its samples.
    quiet = np.concatenate([np.zeros(44100, np.float32), voiced_signal(0.2)])
    assert len(functionals_fusion.prepare(quiet)) == len(quiet)


def test_a_three_second_window_has_features_too():
    window = voiced_signal(3.0, f0=200.0, seed=4)
    features = FUSION.compute(window, sr=22050)
    assert features.shape == (N_FEATURES,) and np.all(np.isfinite(features))


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
        functionals_fusion.compute(voiced_signal(1.0, sr=16000), sr=16000)


def test_extract_many_adds_augmented_rows_cached_under_their_own_keys(write_wav, tmp_path):
    table = pd.DataFrame({"path": [write_wav("a.wav", f0=130.0), write_wav("b.wav", f0=190.0)], "speaker": ["s1", "s2"]})
    cache = tmp_path / "cache"
    features = extract_many(table, recipe="best", n_jobs=1, cache_dir=cache, progress=False)
    drawn = [[ser_lib.features.drawn_condition(path, draw) for path in table["path"]] for draw in ("condition 1", "condition 2")]
    assert features["augmentation"].tolist() == ["none", "none", "speed0.9", "speed0.9", "speed1.1", "speed1.1", *drawn[0], *drawn[1]]
    assert all(a != b and a in ser_lib.features.DRAWN_CONDITIONS for a, b in zip(*drawn))  # two different conditions a clip
    assert features["path"].tolist() == table["path"].tolist() * 5 and features["speaker"].tolist() == ["s1", "s2"] * 5
    matrix = ser_lib.features.feature_matrix(features, recipe="best")
    assert len({row.tobytes() for row in matrix}) == 10
    assert len([p for p in cache.rglob("*.npy") if ".input-" not in p.name]) == 10
    again = extract_many(table, recipe="best", n_jobs=1, cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(features, again)
    plain = extract_many(table, recipe="best", augmentations=(), n_jobs=1, cache_dir=cache, progress=False)
    assert "augmentation" not in plain.columns and len(plain) == 2
    np.testing.assert_array_equal(ser_lib.features.feature_matrix(plain, recipe="best"), matrix[:2])
    original = extract_many(table, n_jobs=1, cache_dir=None, progress=False)
    assert "augmentation" not in original.columns and list(original.columns[6:]) == list(FEATURE_NAMES)


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
    calls = []

    def spy(x, y, parts, *, n_classes, **_):
        calls.append({"x": x, "parts": parts})
        layer = {"kind": "dense", "kernel": np.zeros((x.shape[1], n_classes), np.float32),
                 "bias": np.zeros(n_classes, np.float32), "activation": "linear"}
        return {"layers": [layer], "keras_model": None, "history": pd.DataFrame(), "settings": {},
                "scaler_mean": np.zeros(x.shape[1], np.float32), "scaler_scale": np.ones(x.shape[1], np.float32)}

    monkeypatch.setitem(recipes.RECIPES, "original", dataclasses.replace(recipes.RECIPES["original"], fit=spy))
    split = None
    originals = table["augmentation"] == "none"
    by_speaker = table["speaker"].map({"ravdess_01": "test", "ravdess_02": "validation"}).fillna("train")
    if given == "split over every row":
        # Even a split that calls every copy "train" must not bring held-out clips' copies in.
        split = by_speaker.where(originals, "train")
    elif given == "split over originals":
        split = by_speaker[originals]
    run = ser_lib.train(table, split=split, seed=0, progress=False)

    # The per-clip fit, then the adaptive mode's on the same rows (speaker-normalised features).
    seen, adaptive = calls
    assert all((seen["parts"][part] == adaptive["parts"][part]).all() for part in seen["parts"])
    assert len(run.split) == originals.sum() and len(run.predictions) == (run.split == "test").sum()
    trained = table.loc[seen["x"][seen["parts"]["train"], 0].astype(int)]
    train_paths = set(table.loc[run.split.index[run.split == "train"], "path"])
    held_out_paths = set(table.loc[run.split.index[run.split != "train"], "path"])
    assert set(trained["path"]) == train_paths and not set(trained["path"]) & held_out_paths
    assert (trained["augmentation"] != "none").sum() == 2 * len(train_paths) == run.settings["augmented_train_rows"]
    for part in ("validation", "test"):
        assert (table.loc[seen["x"][seen["parts"][part], 0].astype(int), "augmentation"] == "none").all()


def test_babble_copies_are_made_after_the_split_of_training_speakers_only(monkeypatch, tmp_path):
    ser_lib.make_demo_corpus(tmp_path / "demo", speakers_per_corpus=6, clips_per_emotion=1)
    table = ser_lib.scan_corpora(tmp_path / "demo")
    table = table[table["corpus"] == "CREMA-D"].reset_index(drop=True)
    features = extract_many(table, recipe="best", augmentations=(), n_jobs=2, cache_dir=tmp_path / "cache", progress=False)
    split = features["speaker"].map({features["speaker"].iloc[0]: "test"}).fillna("train")
    seen, talkers = [], {}

    def spy(x, y, parts, *, n_classes, recorded, **_):
        seen.append(recorded)
        layer = {"kind": "dense", "kernel": np.zeros((x.shape[1], n_classes), np.float32),
                 "bias": np.zeros(n_classes, np.float32), "activation": "linear"}
        fit_rows = parts["train"]
        return {"layers": [layer], "keras_model": None, "history": pd.DataFrame(), "settings": {},
                "scaler_mean": np.zeros(x.shape[1], np.float32), "scaler_scale": np.ones(x.shape[1], np.float32),
                "calibration": (np.full((fit_rows.sum(), n_classes), 1 / n_classes), y[fit_rows], np.zeros(fit_rows.sum()))}

    real_talkers = ser_lib.features._babble_talkers
    monkeypatch.setattr(ser_lib.features, "_babble_talkers", lambda *a: talkers.update(real_talkers(*a)) or talkers)
    monkeypatch.setitem(recipes.RECIPES, FUSION.name, dataclasses.replace(FUSION, fit=spy))
    run = ser_lib.train(features, recipe="best", split=split, adaptive=False, progress=False)

    speaker_of = dict(zip(table["path"].astype(str), table["speaker"]))
    trained = set(features.loc[split == "train", "path"].astype(str))
    # Every training clip, and only those, got babble of four other training speakers: no test speaker's voice.
    assert set(talkers) == trained and run.settings["augmented_train_rows"] == len(trained)
    assert all(len(set(map(speaker_of.get, others))) == 4 and set(others) <= trained - {path}
               and speaker_of[path] not in map(speaker_of.get, others) for path, others in talkers.items())
    assert seen[0].sum() == len(trained)  # the copies are recordings of their own: held out and calibrated on

    # Babble extracted before the split (talkers from the whole table, the test speaker too) is not trained on.
    given = extract_many(table, recipe="best", augmentations=("babble 10 dB",), n_jobs=2, cache_dir=tmp_path / "cache",
                         progress=False)
    talkers.clear()
    with pytest.warns(UserWarning, match=f"Dropped {len(table)} given training copies made of other speakers' clips"):
        again = ser_lib.train(given, recipe="best", split=split, adaptive=False, progress=False)
    assert again.settings["augmented_train_rows"] == len(trained) and set(talkers) == trained


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


def _three_class_speakers(seed):
    """120 clips of 8 speakers, 3 classes, each member's columns carrying some of the class."""
    rng = np.random.default_rng(seed)
    n, n_classes = 120, 3
    y = np.arange(n) % n_classes
    groups = np.repeat(np.arange(8), n // 8)
    x = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    x[:, :20] += y[:, None] * 0.8
    x[:, 2000:2040] -= y[:, None] * 0.5
    x[:, 7600:7610] += y[:, None] * 0.3
    return rng, n, n_classes, y, groups, x


def test_the_fused_layer_is_the_mean_of_the_three_members_logits():
    rng, n, n_classes, y, groups, x = _three_class_speakers(seed=1)
    parts = {"train": groups < 6, "validation": np.zeros(n, dtype=bool), "test": groups >= 6}
    fitted = functionals_fusion.fit(x, y, parts, n_classes=n_classes, progress=False, description="", groups=groups)
    members = fitted["settings"]["members"]
    assert list(members) == ["frame_egemaps", "compare", "modulation"]
    expected = np.mean([_member_logits(x, y, parts["train"], members[m]["C"], members[m]["columns"]) for m in members], axis=0)
    model = ser_lib.EmotionModel(classes=list("abc"), layers=fitted["layers"], scaler_mean=fitted["scaler_mean"],
                                 scaler_scale=fitted["scaler_scale"], recipe="best")
    np.testing.assert_allclose(model.predict_proba(x), softmax(expected), atol=1e-5)
    assert list(fitted["history"].columns) == ["loss", "accuracy", "val_loss", "val_accuracy"] and len(fitted["history"]) == 1
    for member, grid in functionals_fusion.C_GRIDS.items():
        accuracies = members[member]["cv_accuracy"]
        assert members[member]["C"] in grid and accuracies[str(members[member]["C"])] == max(accuracies.values())
    # Calibration: one out-of-fold prediction per training clip, none for test.
    probabilities, labels, atypicality = fitted["calibration"]
    assert probabilities.shape == (parts["train"].sum(), n_classes) and np.array_equal(labels, y[parts["train"]])
    # Each clip's atypicality is measured as the model that predicted it saw it: standardised on its fold's rows.
    expected = np.zeros(n)
    for speaker in range(6):
        fit, held = parts["train"] & (groups != speaker), groups == speaker
        z = (x[held] - x[fit].mean(axis=0)) / x[fit].std(axis=0)
        expected[held] = np.log(np.mean(z.astype(np.float64) ** 2, axis=1))
    np.testing.assert_allclose(atypicality, expected[parts["train"]], rtol=1e-4)
    # The fold models are returned (the adaptive mode calibrates with them): each made the out-of-fold
    # predictions of the one speaker it did not learn from.
    folds = fitted["held_out_models"]
    assert sorted(tuple(np.unique(groups[fold["rows"]])) for fold in folds) == [(speaker,) for speaker in range(6)]
    for fold in folds:
        held = ser_lib.EmotionModel(classes=list("abc"), layers=fold["layers"], scaler_mean=fold["scaler_mean"],
                                    scaler_scale=fold["scaler_scale"], recipe="best")
        np.testing.assert_allclose(held.predict_proba(x[fold["rows"]]), probabilities[fold["rows"][parts["train"]]], atol=1e-5)


def test_best_recipe_needs_two_training_speakers():
    x = np.zeros((6, N_FEATURES), dtype=np.float32)
    parts = {"train": np.array([1, 1, 1, 1, 0, 0], bool), "validation": np.zeros(6, bool), "test": np.array([0, 0, 0, 0, 1, 1], bool)}
    with pytest.raises(ValueError, match="expected at least 2, got 1"):
        functionals_fusion.fit(x, np.array([0, 1, 0, 1, 0, 1]), parts, n_classes=2, progress=False, description="",
                           groups=np.array(["a"] * 4 + ["b"] * 2))


@pytest.mark.slow
def test_best_recipe_end_to_end_bundle_and_prediction(tmp_path):
    ser_lib.make_demo_corpus(tmp_path / "demo", speakers_per_corpus=4, clips_per_emotion=1)
    table = ser_lib.scan_corpora(tmp_path / "demo")
    table = table[table["corpus"] == "CREMA-D"].reset_index(drop=True)  # the smallest corpus with 4 speakers
    features = extract_many(table, recipe="best", n_jobs=2, cache_dir=tmp_path / "cache", progress=False)
    assert set(features["augmentation"]) <= {"none", "speed0.9", "speed1.1", *ser_lib.features.DRAWN_CONDITIONS}
    assert len(features) == 5 * len(table)
    with pytest.warns(UserWarning, match="training clips gave no babble 10 dB copy and train without one, e.g. Babble of 4"):
        run = ser_lib.train(features, recipe="best", seed=0, progress=False)  # three training speakers: too few for babble
    # Validation speakers are training speakers for this recipe (it cross-validates over them).
    trained = run.split.isin(["train", "validation"])
    assert run.settings["augmented_train_rows"] == 4 * trained.sum()
    assert set(run.history.columns) >= {"loss", "val_loss", "accuracy", "val_accuracy"}
    ser_lib.save_bundle(run, tmp_path / "bundle")
    assert not (tmp_path / "bundle" / "best_ser_model.keras").exists()
    model = ser_lib.load_bundle(tmp_path / "bundle")
    assert model.recipe == "functionals_fusion" and model.n_features == N_FEATURES and model.metadata["feature_settings"]["duration"] is None
    # A bundle saved before the recipes had their own names says "best" (its only other difference).
    old = Path(shutil.copytree(tmp_path / "bundle", tmp_path / "old_bundle"))
    metadata = json.loads((old / "model_metadata.json").read_text())
    (old / "model_metadata.json").write_text(json.dumps({**metadata, "recipe": "best"}))
    old_model = ser_lib.load_bundle(old)
    assert old_model.recipe == "functionals_fusion"
    clip = run.predictions["path"].iloc[0]
    assert ser_lib.predict_emotion(clip, old)[2] == ser_lib.predict_emotion(clip, tmp_path / "bundle")[2]

    # The bundle's probabilities are the three sklearn members' fused softmax at the fitted temperature.
    originals = features[features["augmentation"] == "none"]
    x = ser_lib.features.feature_matrix(features, recipe="best")
    y = features["emotion"].map({c: i for i, c in enumerate(model.classes)}).to_numpy()
    train_paths = set(originals.loc[trained, "path"])
    train_rows = features["path"].isin(train_paths).to_numpy()
    members = run.settings["members"]
    logits = np.mean([_member_logits(x, y, train_rows, members[m]["C"], members[m]["columns"]) for m in members], axis=0)
    test_rows = np.flatnonzero((features["augmentation"] == "none").to_numpy())[(run.split == "test").to_numpy()]
    # The recipe fits in worker processes: lbfgs stops within its tolerance there and here at slightly different weights
    # (by up to ~0.004 in a probability with the copies under recording conditions, whose scales differ widely).
    # Calibrated at a temperature that grows with the clip's distance from the training rows (mean squared z-score).
    scale = x[train_rows].std(axis=0)
    z = (x[test_rows] - x[train_rows].mean(axis=0)) / np.where(scale > 0, scale, 1)  # constant columns: scale 1, as sklearn
    temperatures = model.temperature * np.mean(z.astype(np.float64) ** 2, axis=1) ** model.temperature_slope
    # ... times the caution factor of the condition each clip is recognised as (the bundle keeps both).
    assert model.conditions == run.model.conditions and "clean" in model.conditions and model.caution == run.model.caution
    temperatures = temperatures * model.caution_of(model.recognise(x[test_rows]))
    np.testing.assert_allclose(model.predict_proba(x[test_rows]), softmax(logits[test_rows] / temperatures[:, None]), atol=1e-2)

    clip = run.predictions["path"].iloc[0]
    emotion, confidence, probabilities = ser_lib.predict_emotion(clip, artifacts_dir=tmp_path / "bundle")
    assert emotion in model.classes and 0 < confidence <= 100 and sum(probabilities.values()) == pytest.approx(1, abs=1e-4)

    # Files are read whole, as the recipe trained on them, by both APIs: 4 s and 6.5 s clips (which
    # the 3 s original recipe would cut, or window) get the features of the whole file.
    for seconds in (4.0, 6.5):
        path = tmp_path / f"clip_{seconds}.wav"
        soundfile.write(path, voiced_signal(seconds, f0=180.0, seed=5), 22050)
        expected = model.predict_proba(extract_features(path, recipe="best")[None, :])[0]
        _, _, single = ser_lib.predict_emotion(path, artifacts_dir=tmp_path / "bundle")
        table = ser_lib.predict_many([path], tmp_path / "bundle", n_jobs=1, progress=False)
        np.testing.assert_allclose(list(single.values()), expected, atol=1e-6)
        np.testing.assert_allclose(table[model.classes].to_numpy()[0], expected, atol=1e-6)
    # ser predict's table agrees with the run's own test predictions.
    table = ser_lib.predict_many(run.predictions["path"], tmp_path / "bundle", n_jobs=2, progress=False)
    assert table["emotion"].tolist() == run.predictions["predicted"].tolist()
    np.testing.assert_allclose(table["confidence"] / 100, run.predictions["confidence"], atol=1e-4)


def _synthetic_best_table(n_speakers=8, clips=6, seed=0):
    """Like ``_synthetic_table`` with the fusion recipe's columns; column 0 holds a row id, a few columns the label."""
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
    return pd.concat([table, pd.DataFrame(x, columns=list(FUSION.feature_names))], axis=1)


def test_best_recipe_chooses_and_calibrates_out_of_fold_over_training_speakers_never_test(monkeypatch):
    table = _synthetic_best_table()
    originals = table["augmentation"] == "none"
    split = table.loc[originals, "speaker"].map({"ravdess_01": "test", "ravdess_02": "test", "ravdess_03": "validation"})
    split = split.fillna("train")
    calls, speaker_folds = [], functionals_fusion._speaker_folds

    def spy(groups, fit_rows, is_copy):
        calls.append((groups, is_copy, speaker_folds(groups, fit_rows, is_copy)))
        return calls[-1][2]

    monkeypatch.setattr(functionals_fusion, "_speaker_folds", spy)
    with pytest.warns(UserWarning, match="36 of 36 training clips gave no babble 10 dB copy .* No audio file"):
        run = ser_lib.train(table, recipe="best", split=split, seed=0, progress=False)  # feature rows without audio

    # Per row of the training matrix (originals, then copies of training clips): the per-clip fit's
    # folds, and the adaptive mode's, which are the same.
    (speaker_of, is_copy, folds), (_, _, adaptive_folds) = calls
    assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(folds, adaptive_folds, strict=True))
    test_speakers = {"ravdess_01", "ravdess_02"}
    train_speakers = {f"ravdess_{s:02d}" for s in range(3, 9)}  # with the validation speaker
    assert len(folds) == min(functionals_fusion.CV_FOLDS, len(train_speakers))
    predicted = np.concatenate([np.flatnonzero(held) for _, held in folds])
    # Every training clip is predicted once, by a model that saw no clip (nor copy) of its speaker; test never appears.
    assert len(predicted) == len(set(predicted)) == (originals & table["speaker"].isin(train_speakers)).sum()
    assert not is_copy[predicted].any() and set(speaker_of[predicted]) == train_speakers
    for fit, held in folds:
        assert not set(speaker_of[fit]) & set(speaker_of[held])
        assert set(speaker_of[fit]) <= train_speakers and is_copy[fit].any()
    assert run.settings["calibration_clips"] == len(predicted)
    assert run.settings["calibrated_on"].startswith("out-of-fold") and np.isfinite(run.metrics["temperature"])
    assert len(run.predictions) == (run.split == "test").sum() and not set(run.predictions["speaker"]) - test_speakers


def test_best_recognises_recording_conditions_learnt_from_training_speakers_only(monkeypatch):
    from ser_lib import training

    table = _synthetic_best_table()
    phone = table[table["augmentation"] == "speed0.9"].assign(augmentation="telephone")
    channel = list(FUSION.feature_names)[100:400]
    phone[channel] = phone[channel] + 3.0  # a channel: an offset on many features
    table = pd.concat([table, phone], ignore_index=True)
    originals = table["augmentation"] == "none"
    split = table.loc[originals, "speaker"].map({"ravdess_01": "test", "ravdess_02": "test"}).fillna("train")
    seen = []

    def spy(model, x, recording, rows, *, seed):
        seen.append(x[rows, 0])
        return fit_recogniser(model, x, recording, rows, seed=seed)

    fit_recogniser = training._fit_recogniser
    monkeypatch.setattr(training, "_fit_recogniser", spy)
    with pytest.warns(UserWarning, match="training clips gave no babble 10 dB copy"):
        run = ser_lib.train(table, recipe="best", split=split, seed=0, progress=False)
    model = run.model
    # Fitted once, on training rows only: no row of a test speaker, under any condition.
    (ids,) = seen
    assert not table.loc[ids.astype(int), "speaker"].isin(["ravdess_01", "ravdess_02"]).any()
    assert model.conditions == ("clean", "telephone") and model.adaptive.conditions == model.conditions
    # The test speakers' clips and their telephone rows are told apart.
    test_rows = table["speaker"].isin(["ravdess_01", "ravdess_02"]) & table["augmentation"].isin(["none", "telephone"])
    recognised = model.recognise(ser_lib.features.feature_matrix(table[test_rows], recipe="best"))
    truth = (table.loc[test_rows, "augmentation"] == "telephone").to_numpy()
    assert (recognised.argmax(axis=1) == truth).all()
    # Each model has a factor and a high-tier floor per condition, clean speech's 1 and 70%; the test predictions carry them.
    for fitted in (model, model.adaptive):
        assert set(fitted.caution) == {"clean", "telephone"} and fitted.caution["clean"] == 1.0
        assert set(fitted.high_from) == {"clean", "telephone"} and fitted.high_from["clean"] == 0.7
        assert 0.7 <= fitted.high_from["telephone"] < 1.0
    assert run.metrics["caution"] == model.caution and run.metrics["high_from"] == model.high_from
    assert set(model.typical_shares) <= set(model.conditions)  # chosen on the held-out training voices
    x_test = ser_lib.features.feature_matrix(table[originals & (split == "test").reindex(table.index, fill_value=False)],
                                             recipe="best")
    np.testing.assert_allclose(run.predictions["confidence"], model.predict_proba(x_test).max(axis=1), atol=1e-6)


def test_split_none_trains_on_every_speaker_and_still_calibrates(tmp_path):
    from ser_lib import evaluate

    table = _synthetic_best_table()
    with pytest.warns(UserWarning, match="48 of 48 training clips gave no babble 10 dB copy .* No audio file"):
        run = ser_lib.train(table, recipe="best", protocol="none", seed=0, progress=False)  # feature rows without audio
    assert "test" not in set(run.split) and run.predictions.empty
    # Every speaker's clips and copies are trained on, and calibration saw every speaker out of fold.
    assert run.settings["augmented_train_rows"] == 2 * len(run.split)
    assert run.settings["calibration_clips"] == len(run.split) and "8 training speakers" in run.settings["calibrated_on"]
    assert run.metrics["n"] == 0 and np.isfinite(run.metrics["temperature"]) and 0 < run.metrics["abstain_threshold"] < 1
    assert evaluate.describe_calibration(run).startswith("No test part (split none): the temperature fitted on out-of-fold")
    # Replacing (--force) a folder that held a speaker-split run of the original recipe: its Keras
    # network and test tables go, so none is mistaken for this model's; the user's own files stay.
    (tmp_path / "bundle").mkdir()
    for name in ("best_ser_model.keras", "confusion_matrix.csv", "test_predictions.csv", "notes.txt"):
        (tmp_path / "bundle" / name).write_text("earlier run")
    ser_lib.save_bundle(run, tmp_path / "bundle", overwrite=True)
    written = evaluate.write_run_tables(run, tmp_path / "bundle")
    assert sorted(p.name for p in written) == ["test_results.json", "training_history.csv"]
    assert not {"best_ser_model.keras", "confusion_matrix.csv", "test_predictions.csv"} & {p.name for p in (tmp_path / "bundle").iterdir()}
    assert (tmp_path / "bundle" / "notes.txt").read_text() == "earlier run"
    assert ser_lib.load_bundle(tmp_path / "bundle").temperature == pytest.approx(run.metrics["temperature"])


def test_rows_under_recording_conditions_are_calibrated_on_but_c_is_chosen_on_the_clips():
    rng, n, n_classes, y, groups, x = _three_class_speakers(seed=2)
    # Each clip also under a "condition" (here: noise with labels that mean nothing) and as a speed copy.
    recorded_x = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    x_all = np.concatenate([x, recorded_x, x + 0.01])
    y_all = np.concatenate([y, rng.permutation(y), y])
    groups_all = np.tile(groups, 3)
    recorded = np.repeat([False, True, False], n)
    is_copy = np.repeat([False, False, True], n)
    parts = {"train": groups_all < 6, "validation": np.zeros(3 * n, dtype=bool), "test": groups_all >= 6}
    options = dict(n_classes=n_classes, progress=False, description="", groups=groups_all, is_copy=is_copy)
    fitted = functionals_fusion.fit(x_all, y_all, parts, recorded=recorded, **options)
    _, labels, _ = fitted["calibration"]
    # Clips and recordings of the training speakers are predicted out of fold; speed copies never.
    assert len(labels) == (parts["train"] & ~is_copy).sum() == 2 * (groups < 6).sum()
    held = np.zeros(3 * n, dtype=bool)
    for fold in fitted["held_out_models"]:
        held |= fold["rows"]
    assert held[recorded].any() and not held[is_copy].any()
    # The same fits scored on the clips alone: the recordings' meaningless labels do not pull the C's accuracy down.
    pooled = functionals_fusion.fit(x_all, y_all, parts, **options)
    for member in functionals_fusion.MEMBER_COLUMNS:
        on_clips, on_all = (f["settings"]["members"][member]["cv_accuracy"] for f in (fitted, pooled))
        assert all(on_clips[c] > on_all[c] for c in on_clips), (member, on_clips, on_all)


def test_a_training_speaker_through_a_recording_condition_is_a_voice_of_its_own(monkeypatch):
    from ser_lib import adapt

    table = _synthetic_table()
    phone = table[table["augmentation"] == "speed0.9"].assign(augmentation="telephone")
    phone[list(FEATURE_NAMES[1:])] = phone[list(FEATURE_NAMES[1:])] + 3.0  # a channel: the same offset on every feature
    table = pd.concat([table, phone], ignore_index=True)
    table[FEATURE_NAMES[0]] = np.arange(len(table))  # feature 0: the row id, to trace what each fit saw
    calls = []

    def spy(x, y, parts, *, n_classes, is_copy, recorded, **_):
        calls.append({"x": x, "y": y, "parts": parts, "is_copy": is_copy, "recorded": recorded})
        layer = {"kind": "dense", "kernel": np.zeros((x.shape[1], n_classes), np.float32),
                 "bias": np.zeros(n_classes, np.float32), "activation": "linear"}
        return {"layers": [layer], "keras_model": None, "history": pd.DataFrame(), "settings": {},
                "scaler_mean": np.zeros(x.shape[1], np.float32), "scaler_scale": np.ones(x.shape[1], np.float32)}

    monkeypatch.setitem(recipes.RECIPES, "original", dataclasses.replace(recipes.RECIPES["original"], fit=spy))
    run = ser_lib.train(table, seed=0, progress=False)
    per_clip, adaptive = calls
    kinds = table.loc[per_clip["x"][:, 0].astype(int), "augmentation"].to_numpy()
    # Telephone rows are recordings (held out and calibrated on by a recipe that can), speed copies are copies.
    assert (per_clip["recorded"] == (kinds == "telephone")).all()
    assert (per_clip["is_copy"] == np.isin(kinds, ["speed0.9", "speed1.1"])).all()
    # In the adaptive fit each speaker's telephone rows are normalised by their own statistics, not the speaker's clips'.
    rows = np.flatnonzero((kinds == "telephone") & per_clip["parts"]["train"])
    ids = table.loc[per_clip["x"][rows, 0].astype(int), "speaker"].to_numpy()
    raw, labels = per_clip["x"][rows], per_clip["y"][rows]
    own = adapt.adapt_rows(raw, ids, adapt.statistics_by_speaker(raw, ids, labels, len(run.classes)), run.model.prior)
    np.testing.assert_allclose(adaptive["x"][rows, 1:], own[:, 1:], rtol=1e-5, atol=1e-5)
    originals = np.flatnonzero((kinds == "none") & per_clip["parts"]["train"])
    speakers = table.loc[per_clip["x"][originals, 0].astype(int), "speaker"].to_numpy()
    clips = adapt.statistics_by_speaker(per_clip["x"][originals], speakers, per_clip["y"][originals], len(run.classes))
    by_clips = adapt.adapt_rows(raw, ids, clips, run.model.prior)
    assert np.abs(adaptive["x"][rows, 1:] - by_clips[:, 1:]).mean() > 0.5  # the channel's offset is the voice's
