"""Model, splits, training, the bundle and prediction, on a tiny synthetic demo corpus."""

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import ser_lib
from ser_lib import artifacts, cli
from ser_lib.training import make_split


@pytest.fixture(scope="session")
def demo_features(tmp_path_factory):
    root = ser_lib.make_demo_corpus(tmp_path_factory.mktemp("demo"), seed=0, speakers_per_corpus=4, clips_per_emotion=1)
    table = ser_lib.scan_corpora(root)
    return ser_lib.extract_many(table, n_jobs=2, cache_dir=None, progress=False)


@pytest.fixture(scope="session")
def trained(demo_features, tmp_path_factory):
    run = ser_lib.train(demo_features, protocol="speaker", seed=3, epochs=8, progress=False)
    bundle = ser_lib.save_bundle(run, tmp_path_factory.mktemp("bundle") / "artifacts", data_summary={"source": "demo"})
    return run, bundle


def test_the_original_mlp_has_the_original_parameter_count_and_its_table_says_so():
    model = ser_lib.build_mlp(195, 8)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert model.count_params() == 277_192 and trainable == 275_272
    # The notebook's model table, computed without Keras, agrees with Keras layer by layer.
    table = ser_lib.get_recipe("original").describe_model(195, 8)
    assert table.iloc[-1][["parameters", "trainable"]].tolist() == [277_192, 275_272]
    keras_counts = [layer.count_params() for layer in model.layers if layer.count_params() or "dropout" in layer.name]
    assert table["parameters"].iloc[:-1].tolist() == keras_counts


def test_numpy_forward_gives_keras_probabilities(trained, demo_features):
    run, _ = trained
    x = ser_lib.features.feature_matrix(demo_features)
    scaled = (x - run.model.scaler_mean) / run.model.scaler_scale
    keras_probabilities = run.keras_model.predict_on_batch(scaled)
    np.testing.assert_allclose(ser_lib.model.forward(run.model.layers, scaled), keras_probabilities, atol=1e-5)


def test_speaker_split_never_shares_a_speaker_and_reaches_every_corpus(demo_features):
    split = make_split(demo_features, "speaker", seed=0)
    parts = {name: set(zip(demo_features.loc[split == name, "corpus"], demo_features.loc[split == name, "speaker"]))
             for name in ("train", "validation", "test")}
    assert not parts["train"] & parts["test"] and not parts["train"] & parts["validation"] and not parts["validation"] & parts["test"]
    for name in ("train", "test"):
        assert set(demo_features.loc[split == name, "corpus"]) == set(ser_lib.CORPORA)
    # TESS has two speakers: one is trained on and one tested, none left for validation.
    assert set(demo_features.loc[split == "validation", "corpus"]) == {"CREMA-D", "RAVDESS", "SAVEE"}
    assert set(demo_features.loc[split == "test", "emotion"]) == set(ser_lib.EMOTIONS)
    pd.testing.assert_series_equal(split, make_split(demo_features, "speaker", seed=0))
    assert not split.equals(make_split(demo_features, "speaker", seed=1))


def test_random_split_has_the_original_shares_and_shares_speakers(demo_features):
    split = make_split(demo_features, "random", seed=0)
    shares = split.value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.713, abs=0.03) and shares["test"] == pytest.approx(0.155, abs=0.03)
    assert set(demo_features.loc[split == "train", "speaker"]) & set(demo_features.loc[split == "test", "speaker"])
    with pytest.raises(ValueError, match="Unknown split protocol 'gender'"):
        make_split(demo_features, "gender")


def test_same_seed_same_split_and_metrics(demo_features, trained):
    run, _ = trained
    again = ser_lib.train(demo_features, protocol="speaker", seed=3, epochs=8, progress=False)
    assert again.metrics == run.metrics
    pd.testing.assert_frame_equal(again.history, run.history)


def test_training_beats_chance_on_unseen_demo_speakers(trained):
    run, _ = trained
    assert run.metrics["accuracy"] > 2 / len(run.classes)
    assert list(run.per_corpus["corpus"]) == ["all", *sorted(ser_lib.CORPORA)]


def test_bundle_round_trip_needs_neither_pickle_nor_tensorflow(trained, demo_features):
    run, bundle = trained
    names = sorted(p.name for p in bundle.iterdir())
    assert names == sorted(artifacts.BUNDLE_FILES)
    metadata = json.loads((bundle / "model_metadata.json").read_text())
    assert metadata["classes"] == run.classes and metadata["split"] == "speaker" and metadata["seed"] == 3
    assert len(metadata["scaler"]["mean"]) == 195 and metadata["feature_names"][0] == "mfcc_000"
    assert metadata["versions"]["librosa"] and metadata["test_metrics"]["accuracy"] == run.metrics["accuracy"]
    x = ser_lib.features.feature_matrix(demo_features)
    np.testing.assert_allclose(ser_lib.load_bundle(bundle).predict_proba(x), run.model.predict_proba(x), atol=1e-6)


def test_the_original_usage_snippet_works(trained, demo_features):
    import pickle

    import keras

    _, bundle = trained
    model = keras.models.load_model(bundle / "best_ser_model.keras")
    scaler = pickle.load(open(bundle / "scaler.pkl", "rb"))
    encoder = pickle.load(open(bundle / "label_encoder.pkl", "rb"))
    features = ser_lib.extract_features(demo_features["path"].iloc[0]).reshape(1, -1)
    probabilities = model.predict(scaler.transform(features), verbose=0)[0]
    emotion, confidence, by_class = ser_lib.predict_emotion(demo_features["path"].iloc[0], bundle)
    assert encoder.inverse_transform([probabilities.argmax()])[0] == emotion
    # The snippet has no calibration: at temperature 1 ser_lib gives Keras's probabilities.
    uncalibrated = ser_lib.load_bundle(bundle)
    uncalibrated.temperature, uncalibrated.temperature_slope = 1.0, 0.0
    np.testing.assert_allclose(uncalibrated.predict_proba(features)[0], probabilities, atol=1e-5)


def test_save_refuses_to_overwrite_a_bundle(trained):
    run, bundle = trained
    with pytest.raises(FileExistsError, match="already holds a model bundle"):
        ser_lib.save_bundle(run, bundle)


def _copy(bundle, tmp_path):
    return shutil.copytree(bundle, tmp_path / "copy")


def test_load_refuses_a_bundle_of_other_features(trained, tmp_path):
    copy = _copy(trained[1], tmp_path)
    metadata = json.loads((copy / "model_metadata.json").read_text())
    metadata["feature_settings"]["sample_rate"] = 16000
    (copy / "model_metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="trained on other features .*sample_rate: bundle 16000, ser_lib 22050"):
        ser_lib.load_bundle(copy)


def test_load_refuses_a_bundle_whose_classes_do_not_match(trained, tmp_path):
    copy = _copy(trained[1], tmp_path)
    metadata = json.loads((copy / "model_metadata.json").read_text())
    metadata["classes"] = metadata["classes"][:7]
    (copy / "model_metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="has 8 outputs, but its metadata lists 7 classes"):
        ser_lib.load_bundle(copy)


def test_load_says_which_file_is_missing(trained, tmp_path):
    copy = _copy(trained[1], tmp_path)
    (copy / "model_weights.npz").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete: missing model_weights.npz"):
        ser_lib.load_bundle(copy)
    with pytest.raises(FileNotFoundError, match="No model bundle folder"):
        ser_lib.load_bundle(tmp_path / "nowhere")


def test_predict_emotion_returns_the_original_triple(trained, demo_features):
    _, bundle = trained
    emotion, confidence, probabilities = ser_lib.predict_emotion(demo_features["path"].iloc[5], bundle)
    assert emotion in probabilities and list(probabilities) == trained[0].classes
    assert 0 < confidence <= 100 and confidence == pytest.approx(100 * max(probabilities.values()))
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)


def test_prediction_does_not_import_tensorflow(trained, demo_features):
    _, bundle = trained
    code = (
        "import sys, ser_lib; "
        f"print(ser_lib.predict_emotion({demo_features['path'].iloc[0]!r}, {str(bundle)!r})[0]); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ser_lib.EMOTIONS


def test_predict_many_records_a_bad_file_and_predicts_the_rest(trained, demo_features, tmp_path):
    _, bundle = trained
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    paths = [demo_features["path"].iloc[0], broken, demo_features["path"].iloc[1]]
    table = ser_lib.predict_many(paths, bundle, progress=False)
    assert list(table.columns) == ["path", "emotion", "confidence", *trained[0].classes, "tier", "uncertain", "note", "warning", "error"]
    assert table["error"].tolist()[0] == "" and "Cannot decode" in table["error"].iloc[1]
    assert table["emotion"].notna().tolist() == [True, False, True]


def test_cli_predict_writes_one_row_per_file_and_fails_when_a_file_does(trained, demo_features, tmp_path, capsys):
    _, bundle = trained
    folder = tmp_path / "clips"
    folder.mkdir()
    for path in demo_features["path"].iloc[:3]:
        shutil.copy(path, folder)
    out = tmp_path / "predictions.csv"
    assert cli.main(["predict", str(folder), "--artifacts", str(bundle), "--csv", str(out), "--quiet"]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 3 and list(table.columns) == ["path", "emotion", "confidence", *trained[0].classes, "tier", "uncertain", "note", "warning", "error"]
    (folder / "bad.wav").write_bytes(b"RIFF")
    assert cli.main(["predict", str(folder), "--artifacts", str(bundle), "--csv", str(out), "--quiet"]) == 1
    assert "1 of 4 files could not be predicted" in capsys.readouterr().err


def test_cli_help_says_what_each_command_does():
    for argv, text in ((["--help"], "ser train --data ROOT --out DIR"), (["train", "--help"], "--split {speaker,random,none}"),
                       (["predict", "--help"], "one probability column per class")):
        out = subprocess.run([sys.executable, "-m", "ser_lib.cli", *argv], capture_output=True, text=True)
        assert out.returncode == 0 and text in " ".join(out.stdout.split())


def test_calibration_is_fitted_on_validation_speakers_and_stored(trained, demo_features):
    run, bundle = trained
    metrics = run.metrics
    # Refitted here from the validation speakers' uncalibrated predictions, the calibration is the run's:
    # it came from them (and the test speakers were not among them).
    validation = (run.split == "validation").to_numpy()
    assert not set(demo_features.loc[validation, "speaker"]) & set(run.predictions["speaker"])
    uncalibrated = dataclasses.replace(run.model, temperature=1.0, temperature_slope=0.0)
    x = ser_lib.features.feature_matrix(demo_features)[validation]
    labels = demo_features.loc[validation, "emotion"].map({c: i for i, c in enumerate(run.classes)}).to_numpy()
    refitted = ser_lib.evaluate.fit_calibration(uncalibrated.predict_proba(x), labels, uncalibrated.atypicality(x))
    assert metrics["temperature"] == pytest.approx(refitted["temperature"]) and metrics["temperature"] != 1
    assert metrics["temperature_slope"] == pytest.approx(refitted["temperature_slope"], abs=1e-9)
    # The threshold keeps 80% of the validation predictions (at the fitted temperature).
    validation_confidence = run.model.predict_proba(x).max(axis=1)
    assert (validation_confidence >= metrics["abstain_threshold"]).mean() == pytest.approx(0.8, abs=1 / validation.sum())
    # Test metrics are those of the test predictions.
    correct = (run.predictions["predicted"] == run.predictions["emotion"]).to_numpy()
    assert metrics["ece"] == ser_lib.evaluate.expected_calibration_error(run.predictions["confidence"], correct)
    assert metrics["coverage"] == (run.predictions["confidence"] >= metrics["abstain_threshold"]).mean()
    metadata = json.loads((bundle / "model_metadata.json").read_text())
    assert metadata["temperature"] == pytest.approx(metrics["temperature"])
    assert metadata["temperature_slope"] == pytest.approx(metrics["temperature_slope"])
    assert metadata["abstain_threshold"] == pytest.approx(metrics["abstain_threshold"])
    loaded = ser_lib.load_bundle(bundle)
    assert loaded.temperature == pytest.approx(run.model.temperature)
    assert loaded.temperature_slope == pytest.approx(run.model.temperature_slope)


def test_calibration_paragraph_and_chart_labels_give_the_fitted_temperature(trained):
    run, _ = trained
    text = ser_lib.evaluate.describe_calibration(run)
    temperature = ser_lib.evaluate.describe_temperature(run.metrics["temperature"], run.metrics["temperature_slope"])
    assert f"({temperature}" in text and f"**{run.metrics['ece']:.3f}**" in text and "validation speakers" in text
    # The ECE is read against what a perfectly calibrated model would score on as many clips.
    floor = ser_lib.evaluate.perfect_calibration_ece(run.predictions["confidence"].to_numpy())
    assert f"would score {floor['mean']:.3f} on average and up to {floor['p95']:.3f}" in text
    assert ser_lib.evaluate.describe_temperature(0.8512, 0.0) == "T = 0.85"
    assert ser_lib.evaluate.describe_temperature(0.8512, 0.304) == "T = 0.85 x d^0.30"
    assert f"after calibration ({temperature})" in ser_lib.evaluate.reliability_curves(run)


def test_temperature_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 3
    labels = np.array([rng.choice(5, p=p) for p in ser_lib.model.softmax(logits / 2.0)])
    sharpened = ser_lib.model.softmax(logits)  # the model's (over-confident) probabilities
    fitted = ser_lib.evaluate.fit_calibration(sharpened, labels)
    assert fitted["temperature"] == pytest.approx(2.0, rel=0.1) and fitted["temperature_slope"] == 0


def test_calibration_fit_recovers_a_temperature_growing_with_atypicality():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6000, 5)) * 3
    spread = rng.normal(size=6000) * 0.7
    truth = 1.5 * np.exp(0.6 * spread)
    labels = np.array([rng.choice(5, p=p) for p in ser_lib.model.softmax(logits / truth[:, None])])
    fitted = ser_lib.evaluate.fit_calibration(ser_lib.model.softmax(logits), labels, spread)
    assert fitted["temperature"] == pytest.approx(1.5, rel=0.1)
    assert fitted["temperature_slope"] == pytest.approx(0.6, abs=0.1)
    # Clips that are atypical but no less accurate get no slope (never a negative one).
    labels = np.array([rng.choice(5, p=p) for p in ser_lib.model.softmax(logits / 1.5)])
    assert ser_lib.evaluate.fit_calibration(ser_lib.model.softmax(logits), labels, spread)["temperature_slope"] < 0.05
    with pytest.raises(ValueError, match="one atypicality per clip"):
        ser_lib.evaluate.fit_calibration(ser_lib.model.softmax(logits), labels, spread[:10])


def test_caution_calibrates_each_condition_and_its_high_tier_is_as_reliable_as_clean_speech_s():
    rng = np.random.default_rng(2)
    n = 3000
    logits = rng.normal(size=(n, 5)) * 3
    conditions = np.repeat(["clean", "babble", "white noise", "rare"], [1500, 1000, 480, 20])
    # Calibrated at 1 on average, babble's clips are right less often than their confidence says, white noise's more.
    truth = np.select([conditions == "babble", conditions == "white noise"], [2.0, 0.6], 1.0)
    labels = np.array([rng.choice(5, p=p) for p in ser_lib.model.softmax(logits / truth[:, None])])
    caution = ser_lib.evaluate.fit_caution(ser_lib.model.softmax(logits), labels, np.ones(n), conditions)
    assert caution["clean"] == 1.0 and caution["rare"] == 1.0  # the reference, and too few clips for a factor
    assert caution["babble"] == pytest.approx(2.0, rel=0.1) and caution["white noise"] == pytest.approx(0.6, rel=0.1)

    p = ser_lib.model.softmax(logits / np.array([caution[c] for c in conditions])[:, None])
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == labels
    high_from = ser_lib.evaluate.fit_high_tier(confidence, correct, conditions)
    assert high_from["clean"] == high_from["rare"] == 0.7

    def high_wrong(condition, floor):
        high = (conditions == condition) & (confidence >= floor)
        return (~correct[high]).mean()

    clean = high_wrong("clean", 0.7)
    # Calibrated, babble's answers from 70% are wrong more often than clean speech's: its tier starts higher.
    assert high_wrong("babble", 0.7) > clean + 0.05 and high_from["babble"] > 0.75
    for condition in ("babble", "white noise"):
        assert high_wrong(condition, high_from[condition]) <= clean
        assert high_from[condition] == 0.7 or high_wrong(condition, high_from[condition] - 0.01) > clean  # the lowest


def test_a_condition_s_high_tier_is_as_reliable_as_clean_speech_adapted_the_same_way():
    rng = np.random.default_rng(3)
    n = 4000
    conditions = np.tile(np.repeat(["clean", "babble"], n // 2), 2)
    batchings = np.repeat(["all clips", "5 clips"], n)
    confidence = rng.uniform(0.4, 1.0, 2 * n)
    # With all of a voice's clips clean speech is right more often than its confidence says, in batches of five less
    # often; babble is right as often as it says either way (adaptation helps it little).
    shift = np.select([(conditions == "clean") & (batchings == "all clips"), conditions == "clean"], [0.1, -0.1], 0.0)
    correct = rng.random(2 * n) < np.clip(confidence + shift, 0, 1)

    def high_wrong(condition, batching, floor):
        high = (conditions == condition) & (confidence >= floor) & ((batchings == batching) if batching else True)
        return (~correct[high]).mean()

    pooled = ser_lib.evaluate.fit_high_tier(confidence, correct, conditions)["babble"]
    # Pooled, clean speech's small batches raise the bar it sets: babble passes where, with all clips, it does not.
    assert high_wrong("babble", None, pooled) <= high_wrong("clean", None, 0.7)
    assert high_wrong("babble", "all clips", pooled) > high_wrong("clean", "all clips", 0.7) + 0.03

    high_from = ser_lib.evaluate.fit_high_tier(confidence, correct, conditions, batchings=batchings)
    assert high_from["clean"] == 0.7 and high_from["babble"] > pooled
    for batching in ("all clips", "5 clips"):
        assert high_wrong("babble", batching, high_from["babble"]) <= high_wrong("clean", batching, 0.7)


def test_a_clip_recognised_as_a_condition_gets_its_caution_and_the_bundle_keeps_both(trained, tmp_path):
    run, _ = trained
    model = dataclasses.replace(run.model, adaptive=None)
    # A recogniser that reads the condition off feature 0's sign: clean below 0, babble above.
    kernel = np.zeros((model.n_features, 2), np.float32)
    kernel[0] = [-50.0, 50.0]
    model.recogniser = [{"kind": "dense", "activation": "softmax", "kernel": kernel, "bias": np.zeros(2, np.float32)}]
    model.conditions, model.caution = ("clean", "babble"), {"clean": 1.0, "babble": 2.5}
    x = np.repeat(model.scaler_mean[None, :], 2, axis=0)
    x[0, 0] -= 3 * model.scaler_scale[0]
    x[1, 0] += 3 * model.scaler_scale[0]
    np.testing.assert_allclose(model.caution_of(model.recognise(x)), [1.0, 2.5], rtol=1e-4)
    plain = dataclasses.replace(model, recogniser=None, caution={}, conditions=())
    expected = ser_lib.model.softmax(np.log(plain.predict_proba(x)) / np.array([[1.0], [2.5]]))
    np.testing.assert_allclose(model.predict_proba(x), expected, atol=1e-5)
    # Babble's high tier starts at 95%: the same 80% is high for a clean clip, medium for one recognised as babble.
    model.high_from = {"clean": 0.7, "babble": 0.95}
    recognised = np.vstack([model.recognise(x), np.full((1, 2), np.nan)])
    assert model.tiers([0.8, 0.8, np.nan], False, recognised) == ["high", "medium", None]
    assert model.tiers([0.96, 0.5], False, recognised[:2]) == ["high", "medium"]
    assert model.tiers([0.8, 0.8]) == ["high", "high"]  # rows of unknown condition: the clean floor
    bundle = ser_lib.save_bundle(dataclasses.replace(run, model=model), tmp_path / "artifacts")
    loaded = ser_lib.load_bundle(bundle)
    assert loaded.conditions == model.conditions and loaded.caution == model.caution
    assert loaded.high_from == model.high_from
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-6)


def test_a_file_recognised_under_a_condition_gets_that_condition_s_high_tier(trained, tmp_path):
    import soundfile

    run, _ = trained
    model = dataclasses.replace(run.model, adaptive=None)
    # Every clip sounds like babble, whose high tier starts at 99.99%.
    model.recogniser = [{"kind": "dense", "activation": "softmax", "kernel": np.zeros((model.n_features, 2), np.float32),
                         "bias": np.array([-20.0, 20.0], np.float32)}]
    model.conditions, model.high_from = ("clean", "babble"), {"babble": 0.9999}
    bundle = ser_lib.save_bundle(dataclasses.replace(run, model=model), tmp_path / "artifacts")
    confident = run.predictions[(run.predictions["confidence"] >= 0.7) & (run.predictions["confidence"] < 0.99)]
    assert len(confident), "the demo model has no test clip between 70% and 99%"
    clip = ser_lib.predict_emotion(confident["path"].iloc[0], bundle)
    assert 70 <= clip.confidence < 99 and clip.tier == "medium"  # "high" at the clean floor
    assert clip.note.endswith("sounds like babble (100%)")
    # A recording of such clips, read in windows: each voiced window's tier and the summary's use babble's floor.
    signals = [ser_lib.audio.load_audio(path) for path in confident["path"].iloc[:4]]
    soundfile.write(tmp_path / "long.wav", np.concatenate(signals * 3), ser_lib.audio.SAMPLE_RATE)
    recording = ser_lib.predict_emotion(tmp_path / "long.wav", bundle)
    windows = recording.timeline[recording.timeline["emotion"] != "silent"]
    assert len(windows) >= 3 and (windows["confidence"] >= 0.7).any()
    assert list(windows["tier"]) == [ser_lib.model.confidence_tier(100 * c, 99.99) for c in windows["confidence"]]
    assert recording.tier == ser_lib.model.confidence_tier(recording.confidence, 99.99)
    plain = ser_lib.predict_emotion(confident["path"].iloc[0], ser_lib.save_bundle(run, tmp_path / "plain"))
    assert "sounds like" not in plain.note and plain.tier == "high"  # no recogniser: the clean floor, no condition named


def test_a_clip_unlike_the_training_clips_gets_a_softer_prediction():
    layers = [{"kind": "dense", "kernel": np.eye(3, dtype=np.float32) * 2, "bias": np.zeros(3, dtype=np.float32),
               "activation": "linear"}]
    model = ser_lib.model.EmotionModel(classes=["a", "b", "c"], layers=layers, scaler_mean=np.zeros(3, np.float32),
                                       scaler_scale=np.ones(3, np.float32), temperature=0.8, temperature_slope=0.5)
    typical, atypical = np.array([1.0, 1.0, 1.0]), np.array([8.0, 1.0, 1.0])  # mean squares 1 and 22
    np.testing.assert_allclose(model.predict_proba(typical)[0], ser_lib.model.softmax(typical * 2 / 0.8), rtol=1e-5)
    np.testing.assert_allclose(model.predict_proba(atypical)[0],
                               ser_lib.model.softmax(atypical * 2 / (0.8 * 22**0.5)), rtol=1e-5)
    model.temperature_slope = 0.0
    assert model.predict_proba(atypical)[0].max() > 0.999


def test_the_ece_of_a_perfectly_calibrated_model_is_its_noise_floor():
    # Confidence 0.5 everywhere: one bin, ECE = |share right - 0.5|, whose mean is 0.5 * sqrt(2 / (pi n)).
    band = ser_lib.evaluate.perfect_calibration_ece(np.full(400, 0.5))
    assert band["mean"] == pytest.approx(0.5 * np.sqrt(2 / (np.pi * 400)), rel=0.05) and band["p95"] > band["mean"]
    assert ser_lib.evaluate.perfect_calibration_ece(np.ones(50)) == {"mean": 0.0, "p95": 0.0}
    many = ser_lib.evaluate.perfect_calibration_ece(np.random.default_rng(0).uniform(0.2, 0.9, 20000))
    assert many["p95"] < 0.02  # the floor falls with the number of clips
    with pytest.raises(ValueError, match="non-empty 1-D"):
        ser_lib.evaluate.perfect_calibration_ece(np.array([]))


def test_expected_calibration_error_known_answers():
    ece = ser_lib.evaluate.expected_calibration_error
    assert ece(np.full(10, 0.9), np.array([True] * 9 + [False])) == pytest.approx(0.0)
    assert ece(np.full(4, 0.8), np.array([True, False, False, False])) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="one equal length"):
        ece(np.ones(3), np.ones(2, dtype=bool))


def test_cross_corpus_split_tests_on_one_corpus_only(demo_features):
    split = make_split(demo_features, "corpus", seed=0, test_corpus="SAVEE")
    assert set(demo_features.loc[split == "test", "corpus"]) == {"SAVEE"}
    assert (demo_features.loc[demo_features["corpus"] == "SAVEE"].index.isin(split[split == "test"].index)).all()
    assert {"train", "validation"} <= set(split[demo_features["corpus"] != "SAVEE"])
    with pytest.raises(ValueError, match="Cannot test on corpus 'EMO-DB'"):
        make_split(demo_features, "corpus", test_corpus="EMO-DB")


@pytest.mark.slow
def test_cross_corpus_table_has_a_row_per_corpus(demo_features):
    table = ser_lib.cross_corpus(demo_features, seed=0, epochs=3, progress=False)
    assert list(table["test_corpus"]) == sorted(ser_lib.CORPORA)
    assert table["trained_on"].iloc[0] == "RAVDESS + SAVEE + TESS"
    assert table["n"].sum() == len(demo_features) and table["accuracy"].between(0, 1).all()


def test_split_none_keeps_validation_speakers_for_the_original_and_no_test(demo_features):
    run = ser_lib.train(demo_features, protocol="none", seed=0, epochs=2, progress=False)
    assert set(run.split) == {"train", "validation"} and run.predictions.empty and run.metrics["n"] == 0
    speakers = demo_features.groupby(run.split.to_numpy())["speaker"].agg(set)
    assert not speakers["train"] & speakers["validation"] and np.isfinite(run.metrics["temperature"])
