"""Every chart: a Figure with the expected panels and words, saved as a PNG, clear errors on bad input."""

import matplotlib

matplotlib.use("Agg")  # headless: no chart may need a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from ser_lib import plots
from ser_lib.corpora import CORPORA, EMOTIONS
from ser_lib.evaluate import expected_calibration_error

# The bundle's make-up in miniature: CREMA-D lacks calm and surprise, SAVEE and TESS lack calm.
CORPUS_EMOTIONS = {
    "CREMA-D": ("angry", "disgust", "fear", "happy", "neutral", "sad"),
    "TESS": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    "RAVDESS": EMOTIONS,
    "SAVEE": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
}
CLIPS_PER_CELL = {"CREMA-D": 12, "TESS": 6, "RAVDESS": 3, "SAVEE": 2}


def texts(fig: Figure) -> list[str]:
    """Every string drawn on the figure: titles, axis and tick labels, annotations, legends."""
    fig.draw_without_rendering()  # tick labels of categorical axes exist only once drawn
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def joined(fig: Figure) -> str:
    return "\n".join(texts(fig))


@pytest.fixture
def table():
    rows = [
        (corpus, f"{corpus}_{i % 3}", emotion)
        for corpus, emotions in CORPUS_EMOTIONS.items()
        for emotion in emotions
        for i in range(CLIPS_PER_CELL[corpus])
    ]
    return pd.DataFrame(rows, columns=["corpus", "speaker", "emotion"])


@pytest.fixture
def history():
    epochs = np.arange(20)
    return pd.DataFrame(
        {
            "loss": 2.0 * np.exp(-epochs / 5) + 0.3,
            "val_loss": 2.0 * np.exp(-epochs / 6) + 0.6 + 0.02 * np.maximum(epochs - 12, 0),
            "accuracy": 0.95 - 0.8 * np.exp(-epochs / 5),
            "val_accuracy": 0.70 - 0.6 * np.exp(-epochs / 6),
            "learning_rate": np.where(epochs < 10, 1e-3, 5e-4),
        }
    )


@pytest.fixture
def confusion():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 6, size=(8, 8)) + np.diag(np.full(8, 40))
    return pd.DataFrame(counts, index=list(EMOTIONS), columns=list(EMOTIONS))


@pytest.fixture
def calibration():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.125, 1.0, 400)
    correct = rng.random(400) < confidence**1.5  # overconfident
    return confidence, correct


@pytest.fixture
def timeline():
    rng = np.random.default_rng(2)
    starts = np.arange(0, 30, 1.5)
    rows = []
    for i, start in enumerate(starts):
        if 9 <= start < 12:
            rows.append({"start": start, "end": start + 3, "emotion": "silent", "confidence": np.nan,
                         **{e: np.nan for e in EMOTIONS}})
            continue
        alpha = np.full(8, 0.5)
        alpha[(i // 4) % 8] += 5
        p = rng.dirichlet(alpha)
        top = int(np.argmax(p))
        rows.append({"start": start, "end": start + 3, "emotion": EMOTIONS[top], "confidence": p[top],
                     **dict(zip(EMOTIONS, p))})
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    """The charts are plain Figures: none may register with pyplot and leak."""
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


# ---------------------------------------------------------------------------------------------
# Colours and saving
# ---------------------------------------------------------------------------------------------


def test_colours_cover_every_emotion_and_corpus_and_differ():
    assert set(plots.EMOTION_COLORS) == set(EMOTIONS)
    assert set(plots.CORPUS_COLORS) == set(CORPORA)
    colours = list(plots.EMOTION_COLORS.values()) + list(plots.CORPUS_COLORS.values())
    assert len(set(colours)) == len(colours)
    assert plots.emotion_color("boredom") == plots.emotion_color("boredom")  # stable for unknown labels


def test_save_figure_writes_a_png_and_makes_folders(tmp_path, table):
    fig = plots.plot_emotion_distribution(table)
    path = plots.save_figure(fig, tmp_path / "charts" / "nested" / "01_emotion_distribution.png", dpi=60)
    assert path == tmp_path / "charts" / "nested" / "01_emotion_distribution.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 1000


def test_save_figure_adds_png_suffix_and_rejects_non_figures(tmp_path, table):
    path = plots.save_figure(plots.plot_dataset_distribution(table), tmp_path / "pie", dpi=40)
    assert path.suffix == ".png" and path.stat().st_size > 0
    with pytest.raises(TypeError, match="Figure"):
        plots.save_figure("not a figure", tmp_path / "x.png")
    with pytest.raises(ValueError, match="positive dpi"):
        plots.save_figure(plots.plot_dataset_distribution(table), tmp_path / "x.png", dpi=0)


# ---------------------------------------------------------------------------------------------
# Data distribution (01-05)
# ---------------------------------------------------------------------------------------------


def test_emotion_distribution_bars_labelled_with_counts(table):
    fig = plots.plot_emotion_distribution(table)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    words = texts(fig)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(EMOTIONS)  # canonical order
    assert "Clips" in ax.get_ylabel() and "Emotion" in ax.get_xlabel()
    angry = sum(CLIPS_PER_CELL[c] for c, emotions in CORPUS_EMOTIONS.items() if "angry" in emotions)
    assert str(angry) in words
    assert f"{len(table):,}" in ax.get_title()
    # Each bar wears its emotion's colour.
    bar_colours = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert bar_colours == [plots.EMOTION_COLORS[e] for e in EMOTIONS]


def test_dataset_distribution_shows_counts_and_percentages(table):
    fig = plots.plot_dataset_distribution(table)
    assert len(fig.axes) == 1
    text = joined(fig)
    total = len(table)
    for corpus in CORPORA:
        n = int((table["corpus"] == corpus).sum())
        assert corpus in text
        assert f"{n:,} ({n / total:.1%})" in text
    assert "corpus" in fig.axes[0].get_title()


@pytest.mark.parametrize("normalize", [True, False])
def test_stacked_bars_per_corpus(table, normalize):
    fig = plots.plot_emotion_by_dataset_stacked(table, normalize=normalize)
    (ax,) = fig.axes
    text = joined(fig)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CORPORA)
    for emotion in EMOTIONS:
        assert emotion in text  # legend
    assert "n = 72" in text and "n = 14" in text  # corpus totals on top: CREMA-D 6 x 12, SAVEE 7 x 2
    if normalize:
        assert "17%" in text  # a CREMA-D segment: 12 of 72
        assert ax.yaxis.get_major_formatter()(0.5, 0) == "50%"
    else:
        assert "12" in text and ax.get_ylabel() == "Clips"


def test_heatmap_counts_annotated(table):
    fig = plots.plot_emotion_dataset_heatmap(table)
    assert len(fig.axes) == 2  # heatmap + colour bar
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(EMOTIONS)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CORPORA)
    annotations = [t.get_text() for t in ax.texts]
    # CREMA-D's six emotions; calm outside RAVDESS and surprise in CREMA-D are empty.
    assert annotations.count("12") == 6 and annotations.count("0") == 4


def test_grouped_bars_one_per_corpus(table):
    fig = plots.plot_emotion_by_dataset_grouped(table)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == list(EMOTIONS)
    assert len(ax.patches) == len(EMOTIONS) * len(CORPORA)
    text = joined(fig)
    for corpus in CORPORA:
        assert corpus in text
    assert "Clips" in ax.get_ylabel()


@pytest.mark.parametrize(
    "function",
    [
        plots.plot_emotion_distribution,
        plots.plot_dataset_distribution,
        plots.plot_emotion_by_dataset_stacked,
        plots.plot_emotion_dataset_heatmap,
        plots.plot_emotion_by_dataset_grouped,
    ],
)
def test_distribution_charts_reject_tables_without_columns(function):
    with pytest.raises(ValueError, match=r"lacks the column\(s\)"):
        function(pd.DataFrame({"path": ["a.wav"], "speaker": ["1001"]}))
    with pytest.raises(ValueError, match="no rows"):
        function(pd.DataFrame(columns=["corpus", "speaker", "emotion"]))


# ---------------------------------------------------------------------------------------------
# Training history and confusion matrix (06, 07)
# ---------------------------------------------------------------------------------------------


def test_training_history_marks_best_epoch(history):
    fig = plots.plot_training_history(history)
    ax_loss, ax_acc = fig.axes
    assert ax_loss.get_title() == "Loss" and ax_acc.get_title() == "Accuracy"
    assert ax_loss.get_xlabel() == ax_acc.get_xlabel() == "Epoch"
    best = int(history["val_loss"].idxmin())
    text = joined(fig)
    assert f"{history['val_accuracy'][best]:.1%} at epoch {best + 1}" in text  # shown 1-based
    assert "learning-rate change" in text
    # The best-epoch line sits at the 1-based epoch on both panels.
    for ax in (ax_loss, ax_acc):
        vertical = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert any(np.allclose(line.get_xdata(), best + 1) for line in vertical)


def test_training_history_without_learning_rate(history):
    fig = plots.plot_training_history(history.drop(columns="learning_rate"))
    assert len(fig.axes) == 2
    assert "learning-rate" not in joined(fig)


def test_training_history_needs_validation_loss(history):
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['val_loss'\]"):
        plots.plot_training_history(history.drop(columns="val_loss"))
    with pytest.raises(ValueError, match="all NaN"):
        plots.plot_training_history(history.assign(val_loss=np.nan))


def test_confusion_matrix_shows_shares_and_counts(confusion):
    fig = plots.plot_confusion_matrix(confusion)
    assert len(fig.axes) == 2  # matrix + colour bar
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(EMOTIONS)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(EMOTIONS)
    assert ax.get_xlabel() == "Predicted emotion" and ax.get_ylabel() == "True emotion"
    share = confusion.iloc[0, 0] / confusion.iloc[0].sum()
    assert f"{share:.0%}\n({confusion.iloc[0, 0]})" in [t.get_text() for t in ax.texts]
    accuracy = np.trace(confusion.to_numpy()) / confusion.to_numpy().sum()
    assert f"accuracy {accuracy:.1%}" in ax.get_title()


def test_confusion_matrix_counts_and_title(confusion):
    fig = plots.plot_confusion_matrix(confusion, normalize=False, title="Speaker split")
    ax = fig.axes[0]
    assert ax.get_title() == "Speaker split"
    cells = [t.get_text() for t in ax.texts]
    assert str(confusion.iloc[2, 2]) in cells and not any("%" in c for c in cells)


def test_confusion_matrix_row_without_clips_is_drawn():
    counts = pd.DataFrame([[3, 1], [0, 0]], index=["angry", "calm"], columns=["angry", "calm"])
    fig = plots.plot_confusion_matrix(counts)
    assert "75%\n(3)" in [t.get_text() for t in fig.axes[0].texts]


@pytest.mark.parametrize(
    "bad, message",
    [
        (pd.DataFrame([[1, 2], [3, 4]], index=["angry", "sad"], columns=["sad", "angry"]), "same classes in the same order"),
        (pd.DataFrame([[1, 2, 0], [3, 4, 0]], index=["angry", "sad"], columns=["angry", "sad", "calm"]), "same classes"),
        (pd.DataFrame([[1, -2], [3, 4]], index=["angry", "sad"], columns=["angry", "sad"]), "counts >= 0"),
        (pd.DataFrame(), "empty"),
    ],
)
def test_confusion_matrix_rejects_bad_tables(bad, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_confusion_matrix(bad)


# ---------------------------------------------------------------------------------------------
# Audio sample (12)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def sine():
    sr = 16000
    t = np.arange(3 * sr) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr


def probabilities(top="angry", p=0.83):
    rest = (1 - p) / 7
    return {e: (p if e == top else rest) for e in EMOTIONS}


def test_audio_sample_panels_and_verdict(sine):
    y, sr = sine
    fig = plots.plot_audio_sample(y, sr, true_label="angry", probabilities=probabilities(), title="1001_DFA_ANG_XX")
    assert len(fig.axes) == 6  # waveform, spectrogram, MFCC, probabilities + two colour bars
    ax_wave, ax_spec, ax_mfcc, ax_prob = fig.axes[:4]
    assert ax_wave.get_title() == "Waveform"
    assert "spectrogram" in ax_spec.get_title().lower()
    assert "MFCC (40" in ax_mfcc.get_title()
    assert ax_mfcc.get_xlabel() == "Time (s)"
    assert ax_wave.get_xlim() == pytest.approx((0, 3))
    assert ax_prob.get_title() == "true: angry — predicted: angry (83%)"
    ticks = [t.get_text() for t in ax_prob.get_yticklabels()]
    assert ticks[0] == "angry (true)" and set(ticks[1:]) == set(EMOTIONS) - {"angry"}
    assert "83%" in [t.get_text() for t in ax_prob.texts]
    assert fig.get_suptitle() == "1001_DFA_ANG_XX"


def test_audio_sample_wrong_prediction_and_unknown_truth(sine):
    y, sr = sine
    fig = plots.plot_audio_sample(y, sr, true_label="sad", probabilities=probabilities("fear", 0.6))
    assert fig.axes[3].get_title() == "true: sad — predicted: fear (60%)"
    assert "(true)" in joined(fig) and "3.0 s" in fig.get_suptitle()
    fig = plots.plot_audio_sample(y, sr, true_label=None, probabilities=probabilities("fear", 0.6))
    assert fig.axes[3].get_title() == "predicted: fear (60%)"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"y": np.zeros((2, 48000))}, "mono audio of shape"),
        ({"y": np.zeros(10)}, "n >= 256"),
        ({"y": np.full(48000, np.nan)}, "NaN"),
        ({"sr": 0}, "positive integer sample rate"),
        ({"probabilities": {}}, "non-empty dict"),
        ({"probabilities": {"angry": 1.5, "sad": -0.5}}, r"\[0, 1\]"),
        ({"true_label": "boredom"}, "not among the classes"),
    ],
)
def test_audio_sample_rejects_bad_input(sine, kwargs, message):
    y, sr = sine
    arguments = {"y": y, "sr": sr, "true_label": "angry", "probabilities": probabilities()} | kwargs
    with pytest.raises(ValueError, match=message):
        plots.plot_audio_sample(arguments.pop("y"), arguments.pop("sr"), **arguments)


# ---------------------------------------------------------------------------------------------
# Evaluation: split comparison, reliability, risk-coverage
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def results():
    rows = [("random", "all", 0.71, 0.69), ("speaker", "all", 0.52, 0.49)]
    rows += [("random", c, 0.6 + 0.05 * i, 0.58 + 0.05 * i) for i, c in enumerate(CORPORA)]
    rows += [("speaker", c, 0.4 + 0.05 * i, 0.35 + 0.05 * i) for i, c in enumerate(CORPORA)]
    return pd.DataFrame(rows, columns=["protocol", "corpus", "accuracy", "macro_f1"])


def test_split_comparison(results):
    fig = plots.plot_split_comparison(results, chance=0.125)
    ax_acc, ax_f1 = fig.axes
    assert ax_acc.get_title() == "Accuracy" and ax_f1.get_title() == "Macro-F1"
    assert "unseen speakers" in fig.get_suptitle()
    text = joined(fig)
    assert "71.0%" in text and "49.0%" in text and "chance (12.5%)" in text
    assert "all corpora" in text and all(c in text for c in CORPORA)
    assert any(line.get_linestyle() == "--" for line in ax_acc.lines)
    assert len(ax_acc.patches) == len(results)


def test_split_comparison_without_chance_or_corpora(results):
    fig = plots.plot_split_comparison(results[results["corpus"] == "all"])
    assert not fig.axes[0].lines
    assert "71%" in joined(fig) or "71.0%" in joined(fig)


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        (lambda r: r.drop(columns="macro_f1"), {}, r"lacks the column\(s\) \['macro_f1'\]"),
        (lambda r: r.assign(accuracy=r["accuracy"] * 100), {}, r"fractions in \[0, 1\]"),
        (lambda r: pd.concat([r, r.head(1)]), {}, "one row per protocol and corpus"),
        (lambda r: r, {"chance": 12.5}, "chance"),
    ],
)
def test_split_comparison_rejects_bad_input(results, change, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_split_comparison(change(results), **kwargs)


def test_reliability_bins_are_the_metrics_bins():
    # Bins [lower, upper) as in evaluate.expected_calibration_error: 0.5 opens the upper bin, 1.0 closes it.
    counts, accuracy, mean_confidence, _ = plots._bin_confidence(np.array([1.0, 0.0, 0.5]), np.array([True, False, True]), 2)
    assert counts.tolist() == [1, 2] and accuracy.tolist() == [0.0, 1.0] and mean_confidence.tolist() == [0.0, 0.75]
    fig = plots.plot_reliability(np.array([1.0, 0.0, 0.5]), np.array([True, False, True]), n_bins=2)
    assert f"ECE {(0.25 * 2) / 3:.1%}" in fig.axes[0].get_title()


def test_reliability_diagram(calibration):
    confidence, correct = calibration
    fig = plots.plot_reliability(confidence, correct, n_bins=10, label="MLP")
    ax, ax_counts = fig.axes
    ece = expected_calibration_error(confidence, correct, n_bins=10)
    assert "MLP" in ax.get_title() and f"ECE {ece:.1%}" in ax.get_title()
    assert ax.get_ylabel() == "Accuracy" and "Confidence" in ax_counts.get_xlabel()
    assert "perfect calibration" in joined(fig)
    assert sum(p.get_height() for p in ax_counts.patches) == pytest.approx(len(confidence))
    fig = plots.plot_reliability(confidence, correct, ece=0.123, ax_title="Test set")
    assert fig.axes[0].get_title().startswith("Test set\nECE 12.3%")


def test_reliability_comparison_side_by_side(calibration):
    confidence, correct = calibration
    curves = {"before calibration": (confidence, correct), "after calibration": (confidence**1.5, correct)}
    fig = plots.plot_reliability_comparison(curves)
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("before calibration") for t in titles)
    assert any(t.startswith("after calibration") for t in titles)
    assert "ECE" in joined(fig)


@pytest.mark.parametrize(
    "confidence, correct, message",
    [
        (np.full(5, 0.5), np.ones(4, bool), "5 confidences and 4 correct"),
        (np.array([]), np.array([], bool), "empty"),
        (np.array([0.5, 1.5]), np.array([True, False]), r"probabilities in \[0, 1\]"),
        (np.array([0.5, 0.7]), np.array(["yes", "no"]), "boolean"),
        (np.ones((2, 2)), np.ones((2, 2), bool), "1-D"),
    ],
)
def test_confidence_inputs_are_checked(confidence, correct, message):
    for call in (plots.plot_reliability, plots.plot_risk_coverage):
        with pytest.raises(ValueError, match=message):
            call(confidence, correct)
    with pytest.raises(ValueError, match="curves\\['x'\\]"):
        plots.plot_reliability_comparison({"x": (confidence, correct)})


def test_reliability_rejects_bad_bins_and_curves(calibration):
    with pytest.raises(ValueError, match="n_bins"):
        plots.plot_reliability(*calibration, n_bins=0)
    with pytest.raises(ValueError, match="non-empty dict"):
        plots.plot_reliability_comparison({})
    with pytest.raises(ValueError, match="pair"):
        plots.plot_reliability_comparison({"x": calibration[0]})


def test_risk_coverage_with_threshold(calibration):
    confidence, correct = calibration
    fig = plots.plot_risk_coverage(confidence, correct, threshold=0.7)
    (ax,) = fig.axes
    kept = confidence >= 0.7
    text = joined(fig)
    assert f"keeps {kept.mean():.1%} of predictions" in text
    assert f"accuracy {correct[kept].mean():.1%}" in text
    assert f"overall accuracy ({correct.mean():.1%})" in text
    curve = ax.lines[0]
    assert curve.get_xdata()[-1] == pytest.approx(1.0)
    assert curve.get_ydata()[-1] == pytest.approx(correct.mean())
    assert "Coverage" in ax.get_xlabel() and "Accuracy" in ax.get_ylabel()


def test_risk_coverage_threshold_nobody_reaches(calibration):
    assert calibration[0].max() < 1.0
    fig = plots.plot_risk_coverage(*calibration, threshold=1.0)
    assert "No prediction reaches" in joined(fig)
    with pytest.raises(ValueError, match="threshold"):
        plots.plot_risk_coverage(*calibration, threshold=80)


# ---------------------------------------------------------------------------------------------
# Long recordings
# ---------------------------------------------------------------------------------------------


def test_timeline(timeline):
    fig = plots.plot_timeline(timeline, classes=EMOTIONS)
    ax_top, ax_prob = fig.axes
    assert ax_prob.get_xlabel() == "Time (s)"
    assert ax_prob.get_xlim() == pytest.approx((0.0, timeline["end"].iloc[-1]))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [*EMOTIONS, "silent"]
    # One band per window, tiling the time axis from the first start to the last end.
    assert len(ax_top.patches) == len(timeline)
    assert "confidence" in ax_top.get_title()


def test_timeline_without_silence_accepts_any_class_order(timeline):
    voiced = timeline[timeline["emotion"] != "silent"].sample(frac=1, random_state=0)  # unsorted
    fig = plots.plot_timeline(voiced, classes=list(reversed(EMOTIONS)))
    assert "silent" not in [t.get_text() for t in fig.legends[0].get_texts()]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.drop(columns="sad"), r"lacks the column\(s\) \['sad'\]"),
        (lambda t: t.drop(columns="confidence"), r"\['confidence'\]"),
        (lambda t: t.assign(emotion="boredom"), "boredom"),
        (lambda t: t.assign(end=t["start"]), "end after it starts"),
        (lambda t: t.assign(confidence=2.0), r"\[0, 1\]"),
        (lambda t: t.iloc[:0], "no rows"),
    ],
)
def test_timeline_rejects_bad_tables(timeline, change, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_timeline(change(timeline), classes=EMOTIONS)


def test_stream_snapshots_show_only_the_windows_heard_by_each_moment(timeline):
    streamed = timeline.assign(heard=timeline["end"])  # each window shown as soon as its end is heard
    fig = plots.plot_stream_snapshots(streamed, classes=EMOTIONS, moments=3)
    assert len(fig.axes) == 3
    for k, ax in enumerate(fig.axes, start=1):
        moment = streamed["end"].max() * k / 3
        shown = int((streamed["heard"] <= moment + 1e-9).sum())
        assert len(ax.patches) == shown and ax.get_ylabel() == f"{moment:.0f} s heard"
    assert len(fig.axes[-1].patches) == len(streamed)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['heard'\]"):
        plots.plot_stream_snapshots(timeline, classes=EMOTIONS)
    with pytest.raises(ValueError, match="moments=0"):
        plots.plot_stream_snapshots(streamed, classes=EMOTIONS, moments=0)


def test_stream_adaptation_draws_one_line_per_mode():
    spans = ["0-0.5 min", "0.5-1 min", "1-2 min"]
    table = pd.DataFrame([{"mode": mode, "span": span, "accuracy_mean": 0.4 + 0.1 * k + 0.02 * m, "accuracy_std": 0.05,
                           "gain_mean": 0.02 * m, "gain_std": 0.01}
                          for m, mode in enumerate(("per window", "live adapted", "hindsight")) for k, span in enumerate(spans)])
    fig = plots.plot_stream_adaptation(table, per_clip=0.62)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == spans
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["per clip (whole clips)", "per window", "live adapted", "hindsight"]
    # The gain panel: the other modes only, each at its gain over per window.
    assert len(right.containers) == 2 and right.containers[0].lines[0].get_ydata() == pytest.approx([0.02] * 3)
    with pytest.raises(ValueError, match=r"\['gain_std'\]"):
        plots.plot_stream_adaptation(table.drop(columns="gain_std"))


def test_emotion_share_sorted_and_labelled():
    share = pd.Series({"sad": 0.125, "angry": 0.5, "happy": 0.375})
    fig = plots.plot_emotion_share(share, title="Recording 1")
    (ax,) = fig.axes
    assert ax.get_title() == "Recording 1"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["angry", "happy", "sad"]  # largest on top
    assert [t.get_text() for t in ax.texts] == ["50.0%", "37.5%", "12.5%"]
    assert "Share" in ax.get_xlabel()


@pytest.mark.parametrize(
    "share, message",
    [
        (pd.Series({"angry": 50, "sad": 50}), "sum to 1"),
        (pd.Series({"angry": 1.2, "sad": -0.2}), ">= 0"),
        (pd.Series(dtype=float), "empty"),
    ],
)
def test_emotion_share_rejects_bad_distributions(share, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_emotion_share(share)
