"""Speaker adaptation: the shrinkage, training and calibrating the adaptive mode, and every way to predict with it."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ser_lib
from ser_lib import adapt, cli, evaluate
from ser_lib.features import feature_matrix, original_rows


@pytest.fixture(scope="module")
def trained(demo_run):
    return demo_run


def test_shrinkage_adapts_a_voice_feature_after_few_clips_and_an_emotion_feature_only_after_many():
    rng = np.random.default_rng(0)
    n_speakers, n_clips = 30, 40
    voice = np.repeat(rng.normal(0, 3, n_speakers), n_clips)  # feature 0: who speaks, plus a little noise
    moment = rng.normal(0, 1, n_speakers * n_clips)  # feature 1: how they speak, the same for everyone
    x = np.stack([voice + rng.normal(0, 0.3, voice.size), moment + 5], axis=1)
    speakers = np.repeat(np.arange(n_speakers), n_clips)
    prior = adapt.fit_prior(x, speakers, (moment > 0).astype(int), 2)
    assert prior.kappa[0] < 0.05 < 20 < prior.kappa[1]

    # A new voice far from everyone, seen in 3 clips all of a "high" moment (a skewed set).
    clips = np.array([[9.0, 7.0], [9.2, 7.1], [8.8, 6.9]])
    adapted = adapt.adapt(clips, adapt.SpeakerStatistics.of(clips), prior)
    population = (clips - prior.mean) / prior.scale
    # The voice offset is gone; the moment keeps nearly all of its (true) deviation.
    assert abs(adapted[:, 0].mean()) < 0.5 and population[:, 0].min() > 2.5
    assert adapted[:, 1].mean() > 0.85 * population[:, 1].mean() > 1
    # Statistics of many clips adapt fully: each feature standardised by the speaker's own mean and spread.
    many = np.column_stack([rng.normal(9, 0.3, 5000), rng.normal(5, 1, 5000)])
    full = adapt.adapt(many, adapt.SpeakerStatistics.of(many), prior)
    np.testing.assert_allclose(full.mean(axis=0), 0, atol=0.05)
    np.testing.assert_allclose(full.std(axis=0), 1, atol=0.1)


def test_a_speaker_heard_in_one_emotion_keeps_it_when_the_shares_are_known_or_estimated():
    rng = np.random.default_rng(1)
    n_speakers, n_clips = 40, 20
    labels = rng.integers(0, 2, n_speakers * n_clips)  # two emotions, balanced for every training speaker
    offsets = np.repeat(rng.normal(0, 3, n_speakers), n_clips)
    x = (offsets + np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 0.3, labels.size))[:, None]
    prior = adapt.fit_prior(x, np.repeat(np.arange(n_speakers), n_clips), labels, 2)
    assert prior.effects[1, 0] > 0.1 > -0.1 > prior.effects[0, 0]
    # A new voice heard only in emotion 1: without its shares its mean takes the emotion away.
    clips = (4.0 + 1.0 + rng.normal(0, 0.3, 12))[:, None]
    blind = adapt.adapt(clips, adapt.SpeakerStatistics.of(clips), prior)
    known = adapt.adapt(clips, adapt.SpeakerStatistics.of(clips, mix=[0.0, 1.0]), prior)
    assert abs(blind.mean()) < 0.5 and known.mean() > 1.5

    def probabilities(adapted):  # a classifier that reads emotion 1 from a positive adapted feature
        p1 = 1 / (1 + np.exp(-4 * adapted[:, 0]))
        return np.column_stack([1 - p1, p1])

    estimated = adapt.estimate_mix(clips, prior, probabilities)
    assert estimated.mix[1] > 0.8 and adapt.adapt(clips, estimated, prior).mean() > 1


def test_the_adaptive_mode_is_trained_on_speakers_normalised_by_their_own_original_clips(trained):
    run, features, _ = trained
    model = run.model
    clips = original_rows(features)
    x = feature_matrix(clips)
    speakers = clips["speaker"].to_numpy()
    train_rows = (run.split == "train").to_numpy()
    labels = clips["emotion"].map({c: i for i, c in enumerate(run.classes)}).to_numpy()
    # The population is the training speakers' (not validation, not test); every speaker's statistics its own clips.
    expected = adapt.fit_prior(x[train_rows], speakers[train_rows], labels[train_rows], len(run.classes))
    for name in ("mean", "scale", "kappa", "within", "effects", "typical_mix"):
        np.testing.assert_allclose(getattr(model.prior, name), getattr(expected, name), rtol=1e-6)
    test = run.predictions
    rows = clips["path"].isin(test["path"]).to_numpy()
    probabilities, adapted, n_clips = model.predict_speakers(x[rows], speakers[rows])
    assert (clips.loc[rows, "path"].to_numpy() == run.adaptive_predictions["path"].to_numpy()).all()
    np.testing.assert_allclose(probabilities.max(axis=1), run.adaptive_predictions["confidence"], rtol=1e-5)
    assert adapted.all() and run.adaptive_predictions["adapted"].all()
    assert set(n_clips) == set(clips.loc[rows].groupby("speaker").size())
    # Calibrated on its own: the adaptive model has its temperature and abstention threshold.
    assert model.adaptive.temperature != model.temperature and 0 < model.adaptive.metadata["abstain_threshold"] < 1
    assert run.adaptive_metrics["n"] == len(test) and 0 <= run.adaptive_metrics["ece"] <= 1


def test_one_clip_or_an_unknown_voice_is_predicted_per_clip(trained):
    run, features, _ = trained
    model = run.model
    x = feature_matrix(original_rows(features))[:6]
    per_clip = model.predict_proba(x)
    probabilities, adapted, n_clips = model.predict_speakers(x, [None, "a", "b", "b", np.nan, "c"])
    assert adapted.tolist() == [False, False, True, True, False, False] and n_clips.tolist() == [0, 1, 2, 2, 0, 1]
    np.testing.assert_allclose(probabilities[~adapted], per_clip[~adapted], rtol=1e-6)
    assert not np.allclose(probabilities[adapted], per_clip[adapted])
    with pytest.raises(ValueError, match="one speaker per feature row \\(6\\), got 2"):
        model.predict_speakers(x, ["a", "b"])


def test_the_bundle_carries_both_models_and_files_of_a_speaker_are_adapted_as_in_training(trained, tmp_path):
    run, _, bundle = trained
    test = run.predictions
    table = ser_lib.predict_many(test["path"], bundle, speakers=test["speaker"], progress=False)
    assert list(table.columns[:3]) == ["path", "speaker", "emotion"] and {"adapted", "n_clips"} <= set(table.columns)
    assert table["adapted"].all() and (table["emotion"] == run.adaptive_predictions["predicted"]).all()
    np.testing.assert_allclose(table["confidence"] / 100, run.adaptive_predictions["confidence"], rtol=1e-5)
    # Without speaker information nothing changes: the per-clip model, and the usual columns.
    plain = ser_lib.predict_many(test["path"], bundle, progress=False)
    assert "adapted" not in plain.columns and (plain["emotion"] == test["predicted"]).all()
    # One file of a speaker, or a file of no speaker, is per clip.
    speakers = [test["speaker"].iloc[0], None, *test["speaker"].iloc[2:]]
    lone = ser_lib.predict_many(test["path"][:2], bundle, speakers=speakers[:2], progress=False)
    assert lone["adapted"].tolist() == [False, False] and lone["n_clips"].tolist() == [1, 0]
    assert lone["emotion"].tolist() == test["predicted"][:2].tolist()


def test_reference_clips_give_the_prediction_of_the_batch(trained):
    run, _, bundle = trained
    test = run.predictions
    speaker = test["speaker"].iloc[0]
    own = test.loc[test["speaker"] == speaker, "path"].tolist()
    batch = ser_lib.predict_many(own, bundle, speakers=[speaker] * len(own), progress=False)
    result = ser_lib.predict_emotion(own[0], bundle, reference=own[1:])
    assert result.adapted and result.n_clips == len(own)
    assert result.emotion == batch["emotion"].iloc[0] and result.confidence == pytest.approx(batch["confidence"].iloc[0], rel=1e-5)
    assert ser_lib.predict_emotion(own[0], bundle, reference=[]).adapted is False
    with pytest.raises(TypeError, match="a list of clips"):
        ser_lib.predict_emotion(own[0], bundle, reference=own[1])
    with pytest.raises(FileNotFoundError, match="Reference clip .*missing.wav. cannot be used: No audio file"):
        ser_lib.predict_emotion(own[0], bundle, reference=[own[1], str(Path(own[1]).with_name("missing.wav"))])


def test_enrolment_stores_plain_arrays_and_predicts_single_clips_of_the_voice(trained, tmp_path):
    run, _, bundle = trained
    bundle = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    test = run.predictions
    speaker = test["speaker"].iloc[0]
    own = test.loc[test["speaker"] == speaker, "path"].tolist()
    bad = tmp_path / "not_audio.wav"
    bad.write_text("not audio")
    path, table = ser_lib.enroll_speaker("ann", [*own, bad], bundle, progress=False)
    assert path == bundle / "speakers" / "ann.npz" and table["used"].tolist() == [True] * len(own) + [False]
    assert "Cannot decode" in table["error"].iloc[-1]
    with np.load(path, allow_pickle=False) as arrays:  # no pickle needed to read it
        assert int(arrays["n"]) == len(own) and arrays["mean"].shape == (run.model.n_features,)
        assert json.loads(str(arrays["info"]))["clips"] == [str(p) for p in own]
    # A clip predicted with the stored statistics equals the batch of the enrolled clips.
    batch = ser_lib.predict_many(own, bundle, speakers=[speaker] * len(own), progress=False)
    single = ser_lib.predict_emotion(own[0], bundle, speaker="ann")
    assert single.adapted and single.n_clips == len(own) and single.emotion == batch["emotion"].iloc[0]
    by_name = ser_lib.predict_many(own[:1], bundle, speaker="ann", progress=False)
    assert by_name["confidence"].iloc[0] == pytest.approx(single.confidence) and by_name["speaker"].iloc[0] == "ann"
    with pytest.raises(FileExistsError, match="'ann' is enrolled already"):
        ser_lib.enroll_speaker("ann", own, bundle, progress=False)
    with pytest.raises(FileNotFoundError, match=r"No speaker 'bob' is enrolled .*enrolled: \['ann'\]"):
        ser_lib.predict_emotion(own[0], bundle, speaker="bob")
    with pytest.raises(ValueError, match="expected 1-64 letters"):
        ser_lib.enroll_speaker("../ann", own, bundle, progress=False)
    with pytest.raises(ValueError, match="at least 2 readable clips, got 1"):
        ser_lib.enroll_speaker("cy", [own[0], bad], bundle, progress=False)


def test_a_bundle_from_before_the_adaptive_mode_predicts_per_clip(trained, tmp_path):
    run, _, bundle = trained
    old = Path(shutil.copytree(bundle, tmp_path / "old"))
    metadata = json.loads((old / "model_metadata.json").read_text())
    del metadata["adaptive"]
    (old / "model_metadata.json").write_text(json.dumps(metadata))
    with np.load(old / "model_weights.npz") as weights:
        np.savez(old / "model_weights.npz", **{k: v for k, v in weights.items() if k.startswith(("layer", "scaler"))})
    test = run.predictions
    with pytest.warns(UserWarning, match="no adaptive mode"):
        table = ser_lib.predict_many(test["path"], old, speakers=test["speaker"], progress=False)
    assert not table["adapted"].any() and (table["emotion"] == test["predicted"]).all()
    assert ser_lib.bundle_info(old)["adaptive"]["mode"].startswith("none")
    assert ser_lib.bundle_info(bundle)["adaptive"]["test_accuracy"] == pytest.approx(run.adaptive_metrics["accuracy"], abs=1e-4)


def test_the_adaptation_study_predicts_every_test_clip_once_per_condition_and_repeat(trained):
    run, features, _ = trained
    predictions = evaluate.adaptation_predictions(run, features, seed=0, repeats=2)
    n = len(run.predictions)
    sizes = predictions.groupby(["condition", "repeat"], sort=False).size()
    assert (sizes == n).all() and predictions.groupby(["condition", "repeat"])["path"].nunique().eq(n).all()
    # "all clips" is the run's own adapted test; batches are at most k clips, or two emotions, of one speaker.
    every = predictions[predictions["condition"] == "all clips"]
    assert (every["predicted"].to_numpy() == run.adaptive_predictions["predicted"].to_numpy()).all()
    batches = predictions[predictions["condition"] == "5 clips"].groupby(["repeat", "batch"])
    assert batches.size().max() <= 5 and (batches["speaker"].nunique() == 1).all()
    skewed = predictions[predictions["condition"] == "skewed (2 emotions)"].groupby(["repeat", "batch"])
    assert skewed["emotion"].nunique().max() == 2
    assert not predictions.loc[predictions["condition"] == "per clip", "adapted"].any()
    table = evaluate.adaptation_table(predictions, run.classes)
    assert table["condition"].tolist()[:2] == ["per clip", "all clips"]
    assert table.loc[0, "accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert table.loc[1, "accuracy"] == pytest.approx(run.adaptive_metrics["accuracy"])
    assert (table["ece_perfect_p95"] > 0).all() and "different protocol" in evaluate.describe_adaptation(table)
    assert plots_figure(table) is not None


def plots_figure(table):
    from ser_lib import plots

    return plots.plot_adaptation(table)


def test_ser_predict_speaker_by_folder_regex_and_csv_and_ser_enroll(trained, tmp_path, capsys):
    run, _, bundle = trained
    bundle = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    test = run.predictions
    files = []
    for path, speaker in zip(test["path"], test["speaker"]):
        target = tmp_path / "by_speaker" / speaker / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        files.append(target)
    out = tmp_path / "folder.csv"
    assert cli.main(["predict", str(tmp_path / "by_speaker"), "--artifacts", str(bundle), "--speaker-by", "folder",
                     "--csv", str(out), "--quiet"]) == 0
    by_folder = pd.read_csv(out)
    assert by_folder["adapted"].all() and set(by_folder["speaker"]) == set(test["speaker"])
    expected = dict(zip(test["path"].map(lambda p: Path(p).name), run.adaptive_predictions["predicted"]))
    assert (by_folder["emotion"] == by_folder["path"].map(lambda p: expected[Path(p).name])).all()
    # The same speakers from a pattern, and from a CSV.
    assert cli.main(["predict", str(tmp_path / "by_speaker"), "--artifacts", str(bundle), "--speaker-by",
                     r"regex:by_speaker/([^/]+)/", "--csv", str(out), "--quiet"]) == 0
    assert pd.read_csv(out)["speaker"].tolist() == by_folder["speaker"].tolist()
    listing = tmp_path / "speakers.csv"
    pd.DataFrame({"path": files, "who": [f.parent.name for f in files]}).to_csv(listing, index=False)
    assert cli.main(["predict", *map(str, files), "--artifacts", str(bundle), "--speaker-by", f"csv:{listing}:who",
                     "--csv", str(out), "--quiet"]) == 0
    assert sorted(pd.read_csv(out)["speaker"]) == sorted(by_folder["speaker"])
    capsys.readouterr()
    assert cli.main(["predict", str(files[0]), "--artifacts", str(bundle), "--speaker-by", "voice"]) == 2
    assert capsys.readouterr().err.startswith("error: --speaker-by 'voice': expected 'folder', 'regex:PATTERN'")
    assert cli.main(["predict", str(files[0]), "--artifacts", str(bundle), "--speaker-by", f"csv:{listing}:nobody"]) == 2
    assert "missing ['nobody']" in capsys.readouterr().err
    # Enrol from a folder, then predict one clip as that speaker.
    speaker = test["speaker"].iloc[0]
    assert cli.main(["enroll", "ann", str(tmp_path / "by_speaker" / speaker), "--artifacts", str(bundle), "--quiet"]) == 0
    assert "enrolled 'ann' from" in capsys.readouterr().out
    assert cli.main(["predict", str(files[0]), "--artifacts", str(bundle), "--speaker", "ann", "--csv", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row["adapted"] and row["speaker"] == "ann" and row["emotion"] == by_folder.set_index("path").loc[str(files[0]), "emotion"]
    assert cli.main(["enroll", "ann", str(files[0]), str(files[1]), "--artifacts", str(bundle)]) == 2
    assert "--force" in capsys.readouterr().err


def test_calibration_softens_predictions_from_statistics_of_few_clips():
    # Logits whose right temperature is 1 + 10 / n: fitting recovers the clip term.
    rng = np.random.default_rng(0)
    n_clips = rng.choice([3, 5, 10, 20, 60], 6000)
    logits = rng.normal(0, 3, (6000, 4))
    true = ser_lib.model.softmax(logits / (1 + 10 / n_clips)[:, None])
    labels = np.array([rng.choice(4, p=p) for p in true])
    fitted = evaluate.fit_calibration(ser_lib.model.softmax(logits), labels, n_clips=n_clips)
    assert fitted["temperature"] == pytest.approx(1.0, abs=0.15) and fitted["temperature_per_clip"] == pytest.approx(10, rel=0.2)
    assert "temperature_per_clip" not in evaluate.fit_calibration(ser_lib.model.softmax(logits), labels)


def test_the_bundle_keeps_the_clip_term_and_fewer_clips_give_softer_probabilities(trained):
    import dataclasses

    run, features, bundle = trained
    adaptive = ser_lib.load_bundle(bundle).adaptive
    assert adaptive.temperature_per_clip == pytest.approx(run.model.adaptive.temperature_per_clip)
    assert run.adaptive_metrics["temperature_per_clip"] == adaptive.temperature_per_clip >= 0
    rows = feature_matrix(original_rows(features))[:4]
    x = adapt.adapt(rows, adapt.SpeakerStatistics.of(rows), run.model.prior)
    softened = dataclasses.replace(adaptive, temperature_per_clip=5.0)
    few, many = softened.predict_proba(x, np.full(4, 2)), softened.predict_proba(x, np.full(4, 200))
    assert (few.max(axis=1) < many.max(axis=1)).all()
    np.testing.assert_allclose(softened.predict_proba(x), adaptive.predict_proba(x), rtol=1e-6)  # no count: no softening


def test_a_voice_recognised_under_a_typical_shares_condition_is_adapted_without_estimated_shares(trained, tmp_path):
    import dataclasses

    from ser_lib.stream import EmotionStream

    run, features, _ = trained
    model = run.model

    def recognising(condition):  # a recogniser that hears every clip as ``condition``
        layer = {"kind": "dense", "activation": "softmax", "kernel": np.zeros((model.n_features, 2), np.float32),
                 "bias": np.array([10.0, 0.0] if condition == "clean" else [0.0, 10.0], np.float32)}
        conditions = ("clean", "white noise 15 dB")
        return dataclasses.replace(model, recogniser=[layer], conditions=conditions, typical_shares=("white noise 15 dB",),
                                   adaptive=dataclasses.replace(model.adaptive, conditions=conditions))

    noisy, clean = recognising("white noise 15 dB"), recognising("clean")
    rows = feature_matrix(original_rows(features))[:12]
    assert noisy.recognised_condition(rows) == "white noise 15 dB" and clean.recognised_condition(rows) == "clean"
    assert noisy.speaker_statistics(rows).mix is None  # typical shares: no correction
    estimated = clean.speaker_statistics(rows).mix
    assert estimated is not None and estimated.sum() == pytest.approx(1.0)
    expected = noisy.adaptive.predict_proba(adapt.adapt(rows, adapt.SpeakerStatistics.of(rows), model.prior), np.full(12, 12))
    np.testing.assert_allclose(noisy.predict_speakers(rows, ["a"] * 12)[0], expected, atol=1e-6)

    # The bundle keeps the choice, and a live stream of that voice adapts the same way: its last window,
    # adapted to every voiced window, is the batch prediction of the last clip.
    bundle = ser_lib.save_bundle(dataclasses.replace(run, model=noisy), tmp_path / "artifacts")
    loaded = ser_lib.load_bundle(bundle)
    assert loaded.typical_shares == ("white noise 15 dB",) and loaded.adaptive.conditions == loaded.conditions
    clips = run.predictions["path"].head(3)
    y = np.concatenate([ser_lib.load_audio(path, sr=22050, duration=3.0) for path in clips])
    stream = EmotionStream(bundle, sr=22050)
    stream.feed(y)
    timeline = stream.close().timeline
    voiced = timeline[timeline["emotion"] != "silent"]
    windows = [y[int(round(start * 22050)) : int(round(start * 22050)) + 3 * 22050] for start in voiced["start"]]
    window_features = ser_lib.predict.signal_features(loaded, windows)
    batch = loaded.predict_speakers(window_features, ["voice"] * len(windows))[0][-1]
    np.testing.assert_allclose(voiced[list(model.classes)].to_numpy()[-1], batch, atol=1e-5)
