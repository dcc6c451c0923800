"""One function per chart; each returns a :class:`matplotlib.figure.Figure` and shows nothing.

Figures are built with :class:`matplotlib.figure.Figure` directly, not through ``pyplot``: no
figure manager keeps them alive, so a loop that draws hundreds of charts does not leak memory and
nothing needs closing. In a notebook a returned Figure displays itself; elsewhere write it with
:func:`save_figure`. Only Agg-safe calls are used, so the module works headless.

Every emotion has one colour (:data:`EMOTION_COLORS`) and every corpus another
(:data:`CORPUS_COLORS`) in all charts; labels outside those get a stable colour of their own.

Examples
--------
>>> from ser_lib import plots                                        # doctest: +SKIP
>>> fig = plots.plot_emotion_distribution(table)                    # doctest: +SKIP
>>> plots.save_figure(fig, "charts/01_emotion_distribution.png")   # doctest: +SKIP
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import librosa
import librosa.display
import matplotlib.colors
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from ser_lib.corpora import CORPORA, EMOTIONS
from ser_lib.evaluate import expected_calibration_error, perfect_calibration_ece
from ser_lib.model import CLEAN
from ser_lib.audio import CLIP_SECONDS, SAMPLE_RATE, load_audio
from ser_lib.kernels import ensure_kernels
from ser_lib.recipes.original import FEATURE_BLOCKS
from ser_lib.recipes.original import SETTINGS as ORIGINAL_SETTINGS

__all__ = [
    "CORPUS_COLORS",
    "EMOTION_COLORS",
    "corpus_color",
    "emotion_color",
    "plot_audio_sample",
    "plot_confusion_matrix",
    "plot_dataset_distribution",
    "plot_emotion_by_dataset_grouped",
    "plot_emotion_by_dataset_stacked",
    "plot_emotion_dataset_heatmap",
    "plot_emotion_distribution",
    "plot_emotion_share",
    "plot_reliability",
    "plot_reliability_comparison",
    "plot_risk_coverage",
    "plot_split_comparison",
    "plot_timeline",
    "plot_training_history",
    "save_figure",
]

# Hues chosen to match the emotion where a convention exists (angry red, sad blue, neutral grey)
# and to stay distinguishable from each other, also for the common red-green deficiency.
EMOTION_COLORS = {
    "angry": "#d62728",
    "calm": "#17becf",
    "disgust": "#7f9a1e",
    "fear": "#9467bd",
    "happy": "#f2a900",
    "neutral": "#8c8c8c",
    "sad": "#1f5fa8",
    "surprise": "#e377c2",
}
# Earthier tones than the emotions', so a corpus is never mistaken for an emotion.
CORPUS_COLORS = {
    "CREMA-D": "#355070",
    "TESS": "#e07a5f",
    "RAVDESS": "#2a9d8f",
    "SAVEE": "#c9a227",
}
_ALL_CORPORA_COLOR = "#3d3d3d"
_SILENT_COLOR = "#d9d9d9"
_SILENT = "silent"
# Below this a spectrogram has too few frequency bins and frames to show anything.
_MIN_SAMPLES = 256
_PROTOCOL_LABELS = {
    "random": "random split\n(seen speakers)",
    "speaker": "speaker split\n(unseen speakers)",
}
_GRID = {"color": "#d0d0d0", "linewidth": 0.6, "alpha": 0.7}


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def save_figure(fig: Figure, path, *, dpi: int = 120) -> Path:
    """Write a figure to disk, creating the folders on the way.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        A figure returned by one of the ``plot_*`` functions.
    path : str or Path
        Where to write it. The format follows the suffix; a path without one gets ``.png``.
    dpi : int
        Resolution of raster formats. The figure's own size is kept, so a larger ``dpi``
        gives a sharper image of the same layout.

    Returns
    -------
    path : Path
        The file written.

    Raises
    ------
    TypeError
        ``fig`` is not a matplotlib Figure.
    ValueError
        ``dpi`` is not a positive number.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"Expected a matplotlib.figure.Figure, got {type(fig).__name__}.")
    if not np.isscalar(dpi) or not dpi > 0:
        raise ValueError(f"Expected a positive dpi, got {dpi!r}.")
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    # A white background: charts end up in slides and dark-mode viewers as often as on paper.
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


# ---------------------------------------------------------------------------------------------
# Data distribution (charts 01-05)
# ---------------------------------------------------------------------------------------------


def plot_emotion_distribution(table: pd.DataFrame) -> Figure:
    """Bar chart of the number of clips per emotion (chart 01).

    Parameters
    ----------
    table : pandas.DataFrame [shape=(n_clips, ...)]
        One row per clip with at least an ``emotion`` column (the corpus table of
        :func:`ser_lib.corpora.scan_corpora`).

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes; bars in :data:`EMOTION_COLORS`, each labelled with its count.
    """
    _check_table(table, ("emotion",))
    counts = table["emotion"].value_counts()
    emotions = _ordered(counts.index, EMOTIONS)
    counts = counts.reindex(emotions)

    fig = _new_figure(8, 4.5)
    ax = fig.add_subplot()
    bars = ax.bar(emotions, counts.to_numpy(), color=[emotion_color(e) for e in emotions], width=0.7)
    ax.bar_label(bars, labels=[f"{n:,}" for n in counts], padding=2, fontsize=9)
    ax.set_title(f"Clips per emotion (n = {counts.sum():,})")
    ax.set_xlabel("Emotion")
    ax.set_ylabel("Clips")
    ax.margins(y=0.1)  # room for the count labels above the tallest bar
    _tidy(ax, grid="y")
    return fig


def plot_dataset_distribution(table: pd.DataFrame) -> Figure:
    """Donut chart of the clips per corpus, labelled with counts and percentages (chart 02).

    Parameters
    ----------
    table : pandas.DataFrame [shape=(n_clips, ...)]
        One row per clip with at least a ``corpus`` column.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes.
    """
    _check_table(table, ("corpus",))
    counts = table["corpus"].value_counts()
    corpora = _ordered(counts.index, CORPORA)
    counts = counts.reindex(corpora)
    total = int(counts.sum())

    fig = _new_figure(6.5, 5.5)
    ax = fig.add_subplot()
    # Labels outside the ring: SAVEE is ~4% of the bundle, too thin a wedge to hold text.
    labels = [f"{c}\n{n:,} ({n / total:.1%})" for c, n in counts.items()]
    ax.pie(
        counts.to_numpy(),
        labels=labels,
        colors=[corpus_color(c) for c in corpora],
        startangle=90,
        counterclock=False,
        labeldistance=1.12,
        wedgeprops={"width": 0.42, "edgecolor": "white", "linewidth": 1.5},
        textprops={"fontsize": 10},
    )
    ax.text(0, 0, f"{total:,}\nclips", ha="center", va="center", fontsize=13, fontweight="bold")
    ax.set_title("Clips per corpus")
    ax.set_aspect("equal")
    return fig


def plot_emotion_by_dataset_stacked(table: pd.DataFrame, *, normalize: bool = True) -> Figure:
    """Stacked bars of the emotions within each corpus (chart 03).

    Parameters
    ----------
    table : pandas.DataFrame [shape=(n_clips, ...)]
        One row per clip with at least ``corpus`` and ``emotion`` columns.
    normalize : bool
        Stack each corpus's shares to 100% (labelled in %), so the small corpora's make-up
        reads as well as CREMA-D's; otherwise stack clip counts.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes; x = corpus, one stacked segment per emotion labelled where tall enough,
        the corpus's number of clips on top.
    """
    counts = _crosstab(table, rows="corpus", columns="emotion")
    corpora, emotions = list(counts.index), list(counts.columns)
    totals = counts.sum(axis=1)
    values = counts.div(totals, axis=0) if normalize else counts

    fig = _new_figure(9, 5.5)
    ax = fig.add_subplot()
    bottom = np.zeros(len(corpora))
    # Below this height a label would spill out of its segment.
    min_labelled = 0.035 * values.sum(axis=1).max()
    for emotion in emotions:
        heights = values[emotion].to_numpy(dtype=float)
        color = emotion_color(emotion)
        bars = ax.bar(corpora, heights, bottom=bottom, color=color, width=0.6, label=emotion,
                      edgecolor="white", linewidth=0.6)
        labels = [
            ("" if h < min_labelled else f"{h:.0%}" if normalize else f"{int(h):,}") for h in heights
        ]
        ax.bar_label(bars, labels=labels, label_type="center", fontsize=8, color=_text_color_on(color))
        bottom += heights
    for x, (top, total) in enumerate(zip(bottom, totals)):
        ax.annotate(f"n = {total:,}", (x, top), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=10, fontweight="bold")
    ax.set_ylim(0, bottom.max() * 1.08)  # room for the totals; annotations do not widen the limits
    if normalize:
        ax.yaxis.set_major_formatter(_percent_formatter())
        ax.set_ylabel("Share of the corpus's clips")
    else:
        ax.set_ylabel("Clips")
    ax.set_title("Emotions within each corpus")
    ax.set_xlabel("Corpus")
    handles, labels = ax.get_legend_handles_labels()
    # Reversed so the legend reads top-down in the order of the stack.
    fig.legend(handles[::-1], labels[::-1], title="Emotion", loc="outside right upper", frameon=False)
    _tidy(ax, grid="y")
    return fig


def plot_emotion_dataset_heatmap(table: pd.DataFrame) -> Figure:
    """Heatmap of the clips per emotion (rows) and corpus (columns), counts annotated (chart 04).

    Parameters
    ----------
    table : pandas.DataFrame [shape=(n_clips, ...)]
        One row per clip with at least ``corpus`` and ``emotion`` columns.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two axes: the heatmap and its colour bar.
    """
    counts = _crosstab(table, rows="emotion", columns="corpus")
    fig = _new_figure(2.2 + 1.5 * counts.shape[1], 1.2 + 0.55 * counts.shape[0])
    ax = fig.add_subplot()
    annotations = counts.map(lambda n: f"{n:,}").to_numpy()
    sns.heatmap(counts, ax=ax, annot=annotations, fmt="", cmap="Blues", linewidths=0.8,
                linecolor="white", cbar_kws={"label": "Clips"}, annot_kws={"fontsize": 10})
    ax.set_title(f"Clips per emotion and corpus (n = {int(counts.to_numpy().sum()):,})")
    ax.set_xlabel("Corpus")
    ax.set_ylabel("Emotion")
    ax.tick_params(axis="y", rotation=0)
    ax.tick_params(axis="x", rotation=0)
    return fig


def plot_emotion_by_dataset_grouped(table: pd.DataFrame) -> Figure:
    """Grouped bars: x = emotion, one bar per corpus, counts on the bars (chart 05).

    Parameters
    ----------
    table : pandas.DataFrame [shape=(n_clips, ...)]
        One row per clip with at least ``corpus`` and ``emotion`` columns.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes. An emotion a corpus lacks (calm outside RAVDESS) leaves an empty slot.
    """
    counts = _crosstab(table, rows="emotion", columns="corpus")
    emotions, corpora = list(counts.index), list(counts.columns)
    width = 0.84 / len(corpora)
    x = np.arange(len(emotions))

    fig = _new_figure(12, 5.2)
    ax = fig.add_subplot()
    for j, corpus in enumerate(corpora):
        heights = counts[corpus].to_numpy()
        bars = ax.bar(x - 0.42 + width * (j + 0.5), heights, width=width * 0.92,
                      color=corpus_color(corpus), label=corpus)
        ax.bar_label(bars, labels=[f"{h:,}" if h else "" for h in heights], padding=2,
                     fontsize=7.5, rotation=90)
    ax.set_xticks(x, emotions)
    ax.set_title("Clips per emotion in each corpus")
    ax.set_xlabel("Emotion")
    ax.set_ylabel("Clips")
    ax.margins(y=0.14)  # room for the vertical count labels
    fig.legend(title="Corpus", loc="outside right upper", frameon=False)
    _tidy(ax, grid="y")
    return fig


# ---------------------------------------------------------------------------------------------
# Training and evaluation (charts 06, 07)
# ---------------------------------------------------------------------------------------------


def plot_training_history(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, training against validation (chart 06).

    Parameters
    ----------
    history : pandas.DataFrame [shape=(n_epochs, ...)]
        Columns ``loss``, ``val_loss``, ``accuracy``, ``val_accuracy`` and optionally
        ``learning_rate``; index = epoch, 0-based (``pd.DataFrame(keras_history.history)``).
        Epochs are shown 1-based, as Keras prints them.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two axes (loss, accuracy). A vertical line marks the best epoch (lowest validation
        loss, the one early stopping restores) with its validation accuracy annotated; dotted
        lines mark the epochs where ``learning_rate`` dropped.

    Raises
    ------
    ValueError
        A required column is missing, the history is empty or ``val_loss`` is all NaN.
    """
    _check_table(history, ("loss", "val_loss", "accuracy", "val_accuracy"), name="history")
    val_loss = history["val_loss"].to_numpy(dtype=float)
    if np.all(np.isnan(val_loss)):
        raise ValueError("history['val_loss'] is all NaN: expected at least one validation loss.")
    if pd.api.types.is_integer_dtype(history.index):
        epochs = history.index.to_numpy() + 1
    else:
        epochs = np.arange(1, len(history) + 1)
    best = int(np.nanargmin(val_loss))
    best_epoch = epochs[best]
    best_accuracy = float(history["val_accuracy"].iloc[best])

    fig = _new_figure(12, 4.6)
    ax_loss, ax_acc = fig.subplots(1, 2, sharex=True)
    for ax, metric, name in ((ax_loss, "loss", "Loss"), (ax_acc, "accuracy", "Accuracy")):
        ax.plot(epochs, history[metric], color="#1f77b4", lw=1.8, label="training")
        ax.plot(epochs, history[f"val_{metric}"], color="#ff7f0e", lw=1.8, label="validation")
        ax.axvline(best_epoch, color="#2ca02c", ls="--", lw=1.2, label=f"best epoch ({best_epoch})")
        ax.set_title(name)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _tidy(ax, grid="both")
    ax_acc.yaxis.set_major_formatter(_percent_formatter())

    if "learning_rate" in history.columns:
        _mark_learning_rate_drops(ax_loss, epochs, history["learning_rate"].to_numpy(dtype=float))

    ax_acc.plot([best_epoch], [best_accuracy], "o", color="#2ca02c", ms=7, zorder=5)
    # Below the best validation point lies neither curve (training runs above validation, and
    # validation is at its best there); shift sideways near the edges to stay inside.
    where = (best_epoch - epochs[0]) / max(epochs[-1] - epochs[0], 1)
    ax_acc.annotate(
        f"validation accuracy\n{best_accuracy:.1%} at epoch {best_epoch}",
        (best_epoch, best_accuracy),
        xytext=(0, -55),
        textcoords="offset points",
        ha="left" if where < 0.2 else "right" if where > 0.8 else "center",
        va="top",
        fontsize=9,
        bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#2ca02c", "alpha": 0.9},
        arrowprops={"arrowstyle": "-", "color": "#2ca02c"},
    )
    # "best" avoids the curves, the annotation and the learning-rate labels, wherever they fall.
    ax_loss.legend(loc="best", fontsize=9)
    ax_acc.legend(loc="best", fontsize=9)
    fig.suptitle("Training history")
    return fig


def plot_confusion_matrix(confusion: pd.DataFrame, *, normalize: bool = True, title: str | None = None) -> Figure:
    """Confusion matrix with row shares and counts in each cell (chart 07).

    Parameters
    ----------
    confusion : pandas.DataFrame [shape=(n_classes, n_classes)]
        Counts; index = true class names, columns = predicted class names, same order.
    normalize : bool
        Colour and label cells by their share of the true class (row), with the count below
        (``"62%\\n(31)"``; "–" for an empty cell); otherwise by count alone.
    title : str, optional
        Defaults to the overall accuracy and number of clips.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two axes: the matrix and its colour bar. The diagonal is outlined.

    Raises
    ------
    ValueError
        Index and columns differ, the matrix is empty, or holds negative or non-finite counts.
    """
    if not isinstance(confusion, pd.DataFrame):
        raise TypeError(f"Expected confusion as a pandas.DataFrame of counts, got {type(confusion).__name__}.")
    if confusion.empty:
        raise ValueError("confusion is empty: expected a square table of counts, one row and column per class.")
    true_names, predicted_names = [str(c) for c in confusion.index], [str(c) for c in confusion.columns]
    if true_names != predicted_names:
        raise ValueError(
            f"confusion must list the same classes in the same order in its index (true) and columns "
            f"(predicted): got index {true_names} and columns {predicted_names}. "
            "Reindex it, e.g. confusion.reindex(index=classes, columns=classes, fill_value=0)."
        )
    counts = confusion.to_numpy(dtype=float)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("confusion holds negative or non-finite values: expected counts >= 0.")

    n = len(true_names)
    row_totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(row_totals > 0, counts / row_totals, np.nan)
    if normalize:
        values = shares * 100
        annotations = [
            # A dash for empty cells keeps the eye on the confusions that happened.
            [f"{_format_share(s)}\n({_format_count(c)})" if c > 0 else "–" for s, c in zip(srow, crow)]
            for srow, crow in zip(shares, counts)
        ]
        colorbar = {"label": "Share of the true class", "format": PercentFormatter(100)}
        limits = {"vmin": 0, "vmax": 100}
    else:
        values = counts
        annotations = [[_format_count(c) if c > 0 else "–" for c in crow] for crow in counts]
        colorbar = {"label": "Clips"}
        limits = {"vmin": 0}

    size = max(5.5, 0.85 * n + 2.5)
    fig = _new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    sns.heatmap(
        pd.DataFrame(values, index=true_names, columns=predicted_names),
        ax=ax, annot=np.array(annotations), fmt="", cmap="Blues", square=True, linewidths=0.5,
        linecolor="white", cbar_kws=colorbar, annot_kws={"fontsize": max(6.5, 12 - 0.35 * n)}, **limits,
    )
    for i in range(n):
        ax.add_patch(Rectangle((i, i), 1, 1, fill=False, edgecolor="#222222", lw=1.4))
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else float("nan")
    if title is None:
        title = f"Confusion matrix (n = {_format_count(total)}, accuracy {accuracy:.1%})"
        if normalize:
            title += "\nEach row: how the clips of one true emotion were classified"
    ax.set_title(title)
    ax.set_xlabel("Predicted emotion")
    ax.set_ylabel("True emotion")
    ax.tick_params(axis="x", rotation=40)
    ax.tick_params(axis="y", rotation=0)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    return fig


# ---------------------------------------------------------------------------------------------
# One clip (chart 12_audio_sample)
# ---------------------------------------------------------------------------------------------


def plot_audio_sample(
    y: np.ndarray,
    sr: int,
    *,
    true_label: str | None,
    probabilities: Mapping[str, float],
    title: str | None = None,
) -> Figure:
    """Waveform, log spectrogram, MFCCs and the model's class probabilities of one clip.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio.
    sr : int
        Its sample rate.
    true_label : str or None
        The clip's emotion; its bar is outlined and marked "(true)". ``None`` for a clip
        whose emotion is not known.
    probabilities : mapping of str to float
        Class name -> predicted probability in [0, 1].
    title : str, optional
        Figure title; defaults to the clip's duration and sample rate.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Six axes: waveform, spectrogram, MFCC (sharing the time axis, left), the probability
        bars (right) and the spectrogram's and MFCC's colour bars. The probability panel's title
        states ``"true: angry — predicted: angry (83%)"``.

    Raises
    ------
    ValueError
        ``y`` is not 1-D, shorter than 256 samples or non-finite; ``sr`` is not positive;
        ``probabilities`` is empty or outside [0, 1]; ``true_label`` is not one of its classes.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size < _MIN_SAMPLES:
        raise ValueError(
            f"Expected mono audio of shape (n,) with n >= {_MIN_SAMPLES} samples, got shape {y.shape}."
        )
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinite samples: expected finite audio.")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"Expected a positive integer sample rate, got sr={sr!r}.")
    probabilities = _check_probabilities(probabilities)
    if true_label is not None and true_label not in probabilities:
        raise ValueError(
            f"true_label={true_label!r} is not among the classes of probabilities: {list(probabilities)}."
        )

    ensure_kernels()
    hop = ORIGINAL_SETTINGS["hop_length"]
    # The features' STFT size, shrunk to a power of two for clips shorter than one frame.
    n_fft = min(ORIGINAL_SETTINGS["n_fft"], 2 ** int(np.floor(np.log2(y.size))))
    hop = min(hop, n_fft // 4)
    spectrum_db = librosa.amplitude_to_db(np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)), ref=np.max)
    n_mfcc = FEATURE_BLOCKS["mfcc"]
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc, n_fft=n_fft, hop_length=hop)
    duration = y.size / sr

    fig = _new_figure(14, 8)
    grid = fig.add_gridspec(3, 3, width_ratios=[4.2, 0.09, 2.0])
    ax_wave = fig.add_subplot(grid[0, 0])
    ax_spec = fig.add_subplot(grid[1, 0], sharex=ax_wave)
    ax_mfcc = fig.add_subplot(grid[2, 0], sharex=ax_wave)
    ax_prob = fig.add_subplot(grid[:, 2])

    ax_wave.plot(np.arange(y.size) / sr, y, color="#1f77b4", lw=0.5)
    peak = float(np.max(np.abs(y))) or 1.0
    ax_wave.set_ylim(-1.1 * peak, 1.1 * peak)
    ax_wave.set_xlim(0, duration)
    ax_wave.set_title("Waveform")
    ax_wave.set_ylabel("Amplitude")
    _tidy(ax_wave, grid="y")

    mesh = librosa.display.specshow(spectrum_db, sr=sr, hop_length=hop, n_fft=n_fft, x_axis="s",
                                    y_axis="log", ax=ax_spec, cmap="magma")
    fig.colorbar(mesh, cax=fig.add_subplot(grid[1, 1]), format="%+.0f dB")
    ax_spec.set_title("Log-frequency spectrogram")
    ax_spec.set_ylabel("Frequency (Hz)")

    # The 0th coefficient (overall level) is an order of magnitude larger than the others and
    # would wash them out; scale the colours to coefficients 1+ and let it saturate.
    limit = float(np.percentile(np.abs(mfcc[1:]), 99)) if n_mfcc > 1 else float(np.abs(mfcc).max())
    mesh = librosa.display.specshow(mfcc, sr=sr, hop_length=hop, x_axis="s", ax=ax_mfcc, cmap="coolwarm",
                                    vmin=-limit, vmax=limit)
    fig.colorbar(mesh, cax=fig.add_subplot(grid[2, 1]), extend="both")
    ticks = [i for i in (0, 9, 19, 29, 39) if i < n_mfcc]
    ax_mfcc.set_yticks([i + 0.5 for i in ticks], [str(i + 1) for i in ticks])
    ax_mfcc.set_title(f"MFCC ({n_mfcc} coefficients)")
    ax_mfcc.set_ylabel("Coefficient")
    for ax in (ax_wave, ax_spec):
        ax.set_xlabel("")
        ax.tick_params(labelbottom=False)
    ax_mfcc.set_xlabel("Time (s)")

    _draw_probability_bars(ax_prob, probabilities, true_label)
    fig.suptitle(title if title is not None else f"Audio sample ({duration:.1f} s at {sr:,} Hz)")
    return fig


def _draw_probability_bars(ax, probabilities: dict, true_label: str | None) -> None:
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])
    names = [name for name, _ in ranked]
    values = np.array([p for _, p in ranked])
    predicted, top = ranked[0]
    positions = np.arange(len(ranked))
    bars = ax.barh(positions, values, color=[emotion_color(n) for n in names], height=0.7)
    for bar, name in zip(bars, names):
        # The true class stands out; the others fade so the comparison reads at a glance.
        if name == true_label:
            bar.set_edgecolor("black")
            bar.set_linewidth(1.8)
        else:
            bar.set_alpha(0.55)
    ax.bar_label(bars, labels=[_format_share(p) for p in values], padding=3, fontsize=9)
    ax.set_yticks(positions, [f"{n} (true)" if n == true_label else n for n in names])
    for label, name in zip(ax.get_yticklabels(), names):
        if name == true_label:
            label.set_fontweight("bold")
    ax.invert_yaxis()  # most likely class on top
    ax.set_xlim(0, 1.18)
    ax.xaxis.set_major_formatter(_percent_formatter())
    ax.set_xlabel("Predicted probability")
    if true_label is None:
        heading, color = f"predicted: {predicted} ({top:.0%})", "black"
    else:
        heading = f"true: {true_label} — predicted: {predicted} ({top:.0%})"
        color = "#1b7f3b" if predicted == true_label else "#b22222"
    ax.set_title(heading, color=color, fontsize=11, fontweight="bold")
    _tidy(ax, grid="x")


# ---------------------------------------------------------------------------------------------
# Honest evaluation: seen vs unseen speakers, calibration, selective prediction
# ---------------------------------------------------------------------------------------------


def plot_split_comparison(results: pd.DataFrame, *, chance: float | None = None) -> Figure:
    """Accuracy and macro-F1 per evaluation protocol, one bar per corpus.

    Parameters
    ----------
    results : pandas.DataFrame [shape=(n_protocols * n_corpora, 4+)]
        Columns ``protocol`` (e.g. ``"random"``, ``"speaker"``), ``corpus`` (``"all"`` or a
        corpus name), ``accuracy`` and ``macro_f1`` in [0, 1] (NaN leaves the bar out); one
        row per protocol and corpus.
    chance : float, optional
        Chance level in [0, 1] (e.g. ``1 / n_classes`` or the majority share), drawn dashed.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two axes: accuracy and macro-F1, x = protocol, bars coloured by corpus and labelled
        in %.

    Raises
    ------
    ValueError
        Missing columns, values outside [0, 1], a protocol and corpus listed twice, or a
        ``chance`` outside [0, 1].
    """
    _check_table(results, ("protocol", "corpus", "accuracy", "macro_f1"), name="results")
    metrics = results[["accuracy", "macro_f1"]].apply(pd.to_numeric, errors="coerce")
    finite = metrics.to_numpy()[~np.isnan(metrics.to_numpy())]
    if np.any((finite < 0) | (finite > 1)):
        raise ValueError(
            "results' accuracy and macro_f1 must be fractions in [0, 1], got values from "
            f"{finite.min():g} to {finite.max():g}. Divide percentages by 100."
        )
    duplicated = results.duplicated(["protocol", "corpus"])
    if duplicated.any():
        pairs = results.loc[duplicated, ["protocol", "corpus"]].to_records(index=False).tolist()
        raise ValueError(f"results must hold one row per protocol and corpus; repeated: {pairs}.")
    if chance is not None and not 0 <= chance <= 1:
        raise ValueError(f"Expected chance as a fraction in [0, 1], got {chance!r}.")

    protocols = list(dict.fromkeys(results["protocol"]))
    corpora = _ordered(results["corpus"].unique(), ("all", *CORPORA))
    table = results.assign(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"]).set_index(
        ["protocol", "corpus"]
    )
    width = 0.84 / len(corpora)
    x = np.arange(len(protocols))
    # Vertical labels once the bars get narrower than a horizontal "71.3%".
    vertical = len(corpora) * len(protocols) > 6

    fig = _new_figure(max(9, 2.4 * len(protocols) * max(1, len(corpora) / 3) + 3), 5)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, metric, name in zip(axes, ("accuracy", "macro_f1"), ("Accuracy", "Macro-F1")):
        for j, corpus in enumerate(corpora):
            values = np.array([table[metric].get((p, corpus), np.nan) for p in protocols], dtype=float)
            shown = ~np.isnan(values)
            bars = ax.bar((x - 0.42 + width * (j + 0.5))[shown], values[shown], width=width * 0.92,
                          color=corpus_color(corpus), label=_corpus_label(corpus))
            ax.bar_label(bars, labels=[f"{v:.1%}" for v in values[shown]], padding=2,
                         fontsize=8, rotation=90 if vertical else 0)
        if chance is not None:
            ax.axhline(chance, color="#555555", ls="--", lw=1.2, label=f"chance ({chance:.1%})")
        ax.set_xticks(x, [_PROTOCOL_LABELS.get(p, str(p)) for p in protocols])
        ax.set_title(name)
        ax.set_xlabel("Evaluation protocol")
        ax.set_ylim(0, 1.17 if vertical else 1.08)
        ax.yaxis.set_major_formatter(_percent_formatter())
        ax.set_yticks(np.linspace(0, 1, 6))
        _tidy(ax, grid="y")
    axes[0].set_ylabel("Score on the test set")
    handles, labels = axes[0].get_legend_handles_labels()
    # matplotlib lists lines before bars; the chance line reads better after the corpora.
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("chance"))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside right upper",
               frameon=False, title="Test clips")
    fig.suptitle("Accuracy on seen (random split) vs unseen speakers (speaker split)")
    return fig


def plot_reliability(
    confidence: np.ndarray,
    correct: np.ndarray,
    *,
    n_bins: int = 15,
    label: str | None = None,
    ax_title: str | None = None,
    ece: float | None = None,
) -> Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal.

    Parameters
    ----------
    confidence : np.ndarray [shape=(n,)]
        Top-class probability of each prediction, in [0, 1].
    correct : np.ndarray [shape=(n,), dtype=bool]
        Whether each prediction was right.
    n_bins : int
        Equal-width bins over [0, 1]; a bin holds confidences in (lower, upper].
    label : str, optional
        Name of the model or calibration step, used in the title.
    ax_title : str, optional
        Title of the diagram; defaults to ``label`` or "Reliability diagram".
    ece : float, optional
        Expected calibration error to print; computed over the same bins when not given.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two axes sharing x: the diagram (accuracy bars, shaded gap to each bin's mean
        confidence, diagonal) and below it the number of predictions per bin.

    Raises
    ------
    ValueError
        Arrays of different lengths, empty, confidences outside [0, 1], ``correct`` not
        boolean, or ``n_bins`` < 1.
    """
    confidence, correct = _check_confidence(confidence, correct)
    fig = _new_figure(6, 6.5)
    ax, ax_counts = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    _draw_reliability(ax, ax_counts, confidence, correct, n_bins=n_bins,
                      title=ax_title or label or "Reliability diagram", ece=ece)
    return fig


def plot_reliability_comparison(
    curves: Mapping[str, tuple],
    *,
    n_bins: int = 15,
    ece: Mapping[str, float] | None = None,
) -> Figure:
    """Reliability diagrams side by side, e.g. before and after calibration.

    Parameters
    ----------
    curves : mapping of str to (confidence, correct)
        Panel name -> ``(confidence [shape=(n,)], correct [shape=(n,), dtype=bool])``, drawn
        left to right in the mapping's order.
    n_bins : int
        Equal-width confidence bins over [0, 1].
    ece : mapping of str to float, optional
        Expected calibration errors to print per panel; computed when missing.

    Returns
    -------
    fig : matplotlib.figure.Figure
        ``2 * len(curves)`` axes: one diagram and one bin-count histogram per panel.

    Raises
    ------
    ValueError
        ``curves`` is empty or a value is not a pair of arrays that :func:`plot_reliability`
        accepts.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(
            "Expected curves as a non-empty dict name -> (confidence, correct), "
            f"got {type(curves).__name__} {curves!r:.60}."
        )
    checked = {}
    for name, pair in curves.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"curves[{name!r}] must be a pair (confidence, correct), got {type(pair).__name__}.")
        try:
            checked[name] = _check_confidence(*pair)
        except ValueError as error:
            raise ValueError(f"curves[{name!r}]: {error}") from error
    ece = dict(ece or {})

    fig = _new_figure(5.2 * len(checked) + 0.5, 6.5)
    axes = fig.subplots(2, len(checked), sharex=True, sharey="row", height_ratios=[3, 1], squeeze=False)
    for k, (name, (confidence, correct)) in enumerate(checked.items()):
        _draw_reliability(axes[0, k], axes[1, k], confidence, correct, n_bins=n_bins,
                          title=str(name), ece=ece.get(name))
        if k:
            axes[0, k].set_ylabel("")
            axes[1, k].set_ylabel("")
    fig.suptitle("Reliability: " + " vs ".join(str(name) for name in checked))
    return fig


def _draw_reliability(ax, ax_counts, confidence, correct, *, n_bins: int, title: str, ece: float | None) -> None:
    counts, accuracy, mean_confidence, edges = _bin_confidence(confidence, correct, n_bins)
    if ece is None:
        ece = expected_calibration_error(confidence, correct, n_bins=n_bins)
    centers = (edges[:-1] + edges[1:]) / 2
    width = 1 / n_bins
    filled = counts > 0

    ax.plot([0, 1], [0, 1], ls="--", color="#666666", lw=1.2, label="perfect calibration", zorder=3)
    ax.bar(centers[filled], accuracy[filled], width=width, color="#1f77b4", edgecolor="white",
           lw=0.8, label="accuracy in bin", zorder=2)
    gap = mean_confidence - accuracy
    ax.bar(centers[filled], gap[filled], bottom=accuracy[filled], width=width, color="#d62728",
           alpha=0.25, edgecolor="#d62728", hatch="///", lw=0.5, label="gap to mean confidence", zorder=2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("auto")
    ax.set_ylabel("Accuracy")
    ax.yaxis.set_major_formatter(_percent_formatter())
    floor = perfect_calibration_ece(confidence, n_bins=n_bins)
    ax.set_title(
        f"{title}\nECE {ece:.1%} · accuracy {correct.mean():.1%} · mean confidence {confidence.mean():.1%}\n"
        f"a perfectly calibrated model: ECE {floor['mean']:.1%} (95% < {floor['p95']:.1%})",
        fontsize=10.5,
    )
    ax.legend(loc="upper left", fontsize=8.5, framealpha=0.9)
    _tidy(ax, grid="both")

    ax_counts.bar(centers, counts, width=width, color="#8c8c8c", edgecolor="white", lw=0.8)
    ax_counts.set_ylabel("Predictions")
    ax_counts.set_xlabel("Confidence (top-class probability)")
    ax_counts.xaxis.set_major_formatter(_percent_formatter())
    ax_counts.yaxis.set_major_locator(MaxNLocator(3, integer=True))
    _tidy(ax_counts, grid="y")


def plot_risk_coverage(confidence: np.ndarray, correct: np.ndarray, *, threshold: float | None = None) -> Figure:
    """Accuracy of the kept predictions against the share kept, most confident first.

    Parameters
    ----------
    confidence : np.ndarray [shape=(n,)]
        Top-class probability of each prediction, in [0, 1].
    correct : np.ndarray [shape=(n,), dtype=bool]
        Whether each prediction was right.
    threshold : float, optional
        A confidence threshold in [0, 1]; predictions with ``confidence >= threshold`` are
        kept. Its coverage and accuracy are marked and annotated.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes; the overall accuracy (coverage 100%) is drawn dashed.

    Raises
    ------
    ValueError
        Arrays of different lengths, empty, confidences outside [0, 1], ``correct`` not
        boolean, or a ``threshold`` outside [0, 1].
    """
    confidence, correct = _check_confidence(confidence, correct)
    if threshold is not None and not 0 <= threshold <= 1:
        raise ValueError(f"Expected threshold as a confidence in [0, 1], got {threshold!r}.")
    order = np.argsort(-confidence, kind="stable")
    kept = np.arange(1, confidence.size + 1)
    coverage = kept / confidence.size
    accuracy = np.cumsum(correct[order]) / kept
    overall = float(correct.mean())

    fig = _new_figure(7.5, 5.2)
    ax = fig.add_subplot()
    ax.plot(coverage, accuracy, color="#1f77b4", lw=2, label="accuracy of kept predictions")
    ax.axhline(overall, color="#555555", ls="--", lw=1.2, label=f"overall accuracy ({overall:.1%})")
    if threshold is not None:
        mask = confidence >= threshold
        share = float(mask.mean())
        if share > 0:
            kept_accuracy = float(correct[mask].mean())
            ax.plot([share], [kept_accuracy], "o", color="#d62728", ms=8, zorder=5,
                    label=f"confidence ≥ {threshold:.2f}")
            ax.vlines(share, 0, kept_accuracy, color="#d62728", ls=":", lw=1)
            text = f"confidence ≥ {threshold:.2f}\nkeeps {share:.1%} of predictions\naccuracy {kept_accuracy:.1%}"
            # The curve falls from top left to bottom right, so below-left of a point is empty.
            right_side = share < 0.3
            ax.annotate(text, (share, kept_accuracy), xytext=(25 if right_side else -25, -60),
                        textcoords="offset points", ha="left" if right_side else "right", fontsize=9,
                        bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#d62728", "alpha": 0.9},
                        arrowprops={"arrowstyle": "->", "color": "#d62728"})
        else:
            ax.text(0.02, 0.04, f"No prediction reaches confidence {threshold:.2f}", transform=ax.transAxes,
                    color="#d62728", fontsize=9)
    # The first few points are single predictions (0% or 100%); scale to the stable part.
    stable = accuracy[coverage >= 0.05] if confidence.size >= 20 else accuracy
    lower = max(0.0, np.floor((min(stable.min(), overall) - 0.05) * 10) / 10)
    ax.set_ylim(lower, 1.01)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(_percent_formatter())
    ax.yaxis.set_major_formatter(_percent_formatter())
    ax.set_xlabel("Coverage (share of predictions kept, most confident first)")
    ax.set_ylabel("Accuracy of the kept predictions")
    ax.set_title(f"Accuracy vs coverage (n = {confidence.size:,})")
    ax.legend(loc="upper right", fontsize=9)
    _tidy(ax, grid="both")
    return fig


# ---------------------------------------------------------------------------------------------
# Long recordings
# ---------------------------------------------------------------------------------------------


def plot_timeline(timeline: pd.DataFrame, *, classes: Iterable[str]) -> Figure:
    """Emotion over time in a long recording: top class per window and all class probabilities.

    Parameters
    ----------
    timeline : pandas.DataFrame [shape=(n_windows, 4 + n_classes)]
        Columns ``start`` and ``end`` (seconds), ``emotion`` (top class, or ``"silent"``),
        ``confidence`` (in [0, 1], NaN for silent windows) and one probability column per
        class of ``classes``. Windows may overlap.
    classes : iterable of str
        The model's classes, in the order to stack them.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two axes sharing x. Top: one band per window from its start to the next window's start
        (the last to its end), coloured by emotion with opacity = confidence; silent windows
        grey and hatched; runs wide enough carry their emotion's name. Bottom: the class
        probabilities stacked over window-centre time, left empty (hatched) where silent.

    Raises
    ------
    ValueError
        Missing columns, no windows, ``end <= start``, an emotion outside ``classes`` and
        ``"silent"``, or confidences outside [0, 1].
    """
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError("Expected at least one class in classes, got none.")
    _check_table(timeline, ("start", "end", "emotion", "confidence", *classes), name="timeline")
    timeline = timeline.sort_values("start", kind="stable").reset_index(drop=True)
    starts, ends = timeline["start"].to_numpy(float), timeline["end"].to_numpy(float)
    if np.any(~(ends > starts)):
        bad = int(np.argmax(~(ends > starts)))
        raise ValueError(f"Every window must end after it starts; window {bad} spans {starts[bad]:g}-{ends[bad]:g} s.")
    unknown = sorted(set(timeline["emotion"].astype(str)) - set(classes) - {_SILENT})
    if unknown:
        raise ValueError(f"timeline['emotion'] holds {unknown}: expected one of {classes} or {_SILENT!r}.")
    confidence = timeline["confidence"].to_numpy(float)
    finite = confidence[~np.isnan(confidence)]
    if np.any((finite < 0) | (finite > 1)):
        raise ValueError(
            "timeline['confidence'] must lie in [0, 1] (NaN when silent), "
            f"got values from {finite.min():g} to {finite.max():g}."
        )

    # Overlapping windows: each band runs to the next start, so bands tile the time axis.
    band_ends = np.append(starts[1:], ends[-1])
    emotions = timeline["emotion"].astype(str).to_numpy()
    span = band_ends[-1] - starts[0]

    fig = _new_figure(13, 5.8)
    ax_top, ax_prob = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2.2])
    _window_bands(ax_top, starts, band_ends, emotions, confidence, span)
    ax_top.set_title("Top class per window (opacity = confidence, hatched = silent)", fontsize=10.5)
    ax_top.tick_params(labelbottom=False)

    centres = (starts + ends) / 2
    probabilities = timeline[classes].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    voiced = (emotions != _SILENT) & np.all(np.isfinite(probabilities), axis=1)
    upper = np.cumsum(np.where(voiced[:, None], probabilities, 0.0), axis=1)
    lower = upper - np.where(voiced[:, None], probabilities, 0.0)
    # fill_between with where= leaves silent stretches empty instead of ramping the stack to 0.
    for k, name in enumerate(classes):
        ax_prob.fill_between(centres, lower[:, k], upper[:, k], where=voiced, color=emotion_color(name),
                             alpha=0.85, lw=0, interpolate=False)
    for start, end, emotion in zip(starts, band_ends, emotions):
        if emotion == _SILENT:
            ax_prob.axvspan(start, end, facecolor="none", edgecolor="#d0d0d0", hatch="///", lw=0)
    ax_prob.set_ylim(0, 1)
    ax_prob.yaxis.set_major_formatter(_percent_formatter())
    ax_prob.set_ylabel("Class probability")
    ax_prob.set_xlabel("Time (s)")
    ax_prob.set_title("Class probabilities (stacked, at window centres)", fontsize=10.5)
    ax_prob.set_xlim(starts[0], band_ends[-1])
    _tidy(ax_prob, grid="y")

    handles = [Patch(facecolor=emotion_color(c), label=c) for c in classes]
    if _SILENT in emotions:
        handles.append(Patch(facecolor=_SILENT_COLOR, edgecolor="#9e9e9e", hatch="///", label=_SILENT))
    fig.legend(handles=handles, title="Emotion", loc="outside right upper", frameon=False)
    fig.suptitle(f"Emotion over time ({span:.1f} s, {len(timeline)} windows)")
    return fig


def _window_bands(ax, starts, band_ends, emotions, confidence, span: float) -> None:
    """One band per window coloured by its emotion (opacity = confidence, silent hatched), runs named once."""
    for start, end, emotion, conf in zip(starts, band_ends, emotions, confidence):
        if emotion == _SILENT:
            ax.axvspan(start, end, facecolor=_SILENT_COLOR, edgecolor="#9e9e9e", hatch="///", lw=0)
        else:
            alpha = 0.2 + 0.8 * (conf if np.isfinite(conf) else 1.0)
            ax.axvspan(start, end, facecolor=emotion_color(emotion), alpha=alpha, lw=0)
    # Name each run of equal windows once, where it is wide enough to hold the word.
    run_start = 0
    for i in range(1, len(emotions) + 1):
        if i == len(emotions) or emotions[i] != emotions[run_start]:
            left, right = starts[run_start], band_ends[i - 1]
            if emotions[run_start] != _SILENT and right - left >= 0.06 * span:
                ax.text((left + right) / 2, 0.5, emotions[run_start], ha="center", va="center",
                        fontsize=9, fontweight="bold", color="#111111")
            run_start = i
    ax.set_yticks([])
    ax.set_ylim(0, 1)


def plot_stream_snapshots(timeline: pd.DataFrame, *, classes: Iterable[str], moments: int = 3) -> Figure:
    """A stream's timeline filling in: the windows shown by a few moments of the audio heard.

    Parameters
    ----------
    timeline : pandas.DataFrame
        A stream's windows (:class:`ser_lib.EmotionStream`): ``start``, ``end``, ``emotion``,
        ``confidence`` and ``heard`` (seconds of audio fed when the window was shown).
    classes : iterable of str
        The model's classes (for the legend).
    moments : int
        How many moments, evenly spread up to the end of the stream.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One strip per moment (as the top of :func:`plot_timeline`), time not yet heard left blank
        and the moment marked.
    """
    classes = [str(c) for c in classes]
    _check_table(timeline, ("start", "end", "emotion", "confidence", "heard"), name="timeline")
    if len(timeline) == 0 or moments < 1:
        raise ValueError(f"Expected a timeline with windows and moments >= 1, got {len(timeline)} windows and moments={moments}.")
    timeline = timeline.sort_values("start", kind="stable").reset_index(drop=True)
    starts, ends = timeline["start"].to_numpy(float), timeline["end"].to_numpy(float)
    band_ends = np.append(starts[1:], ends[-1])
    total = float(timeline["heard"].max())
    fig = _new_figure(13, 1.1 + 1.0 * moments)
    axes = np.atleast_1d(fig.subplots(moments, 1, sharex=True))
    for k, ax in enumerate(axes, start=1):
        moment = total * k / moments
        shown = timeline["heard"].to_numpy(float) <= moment + 1e-9
        _window_bands(ax, starts[shown], band_ends[shown], timeline["emotion"].astype(str).to_numpy()[shown],
                      timeline["confidence"].to_numpy(float)[shown], ends[-1] - starts[0])
        ax.axvline(moment, color="#111111", lw=1.2)
        ax.set_ylabel(f"{moment:.0f} s heard", rotation=0, ha="right", va="center", fontsize=9)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    axes[-1].set_xlim(starts[0], band_ends[-1])
    axes[-1].set_xlabel("Time in the stream (s)")
    handles = [Patch(facecolor=emotion_color(c), label=c) for c in classes]
    fig.legend(handles=handles, title="Emotion", loc="outside right upper", frameon=False)
    fig.suptitle("A live stream: each window shown once it is heard (opacity = confidence)")
    return fig


def plot_emotion_share(distribution: pd.Series, *, title: str | None = None) -> Figure:
    """Horizontal bars of each emotion's share, largest on top, labelled in %.

    Parameters
    ----------
    distribution : pandas.Series [shape=(n_classes,)]
        Class name -> share in [0, 1]; the shares sum to 1 (within 0.01).
    title : str, optional
        Defaults to "Emotion share".

    Returns
    -------
    fig : matplotlib.figure.Figure
        One axes.

    Raises
    ------
    ValueError
        Empty, negative or non-finite shares, or shares that do not sum to 1.
    """
    if not isinstance(distribution, pd.Series):
        raise TypeError(f"Expected distribution as a pandas.Series class -> share, got {type(distribution).__name__}.")
    values = pd.to_numeric(distribution, errors="coerce").astype(float)
    if values.empty:
        raise ValueError("distribution is empty: expected one share per class.")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"distribution must hold finite shares >= 0, got {values.to_dict()}.")
    if not np.isclose(values.sum(), 1.0, atol=0.01):
        raise ValueError(
            f"distribution's shares must sum to 1, got {values.sum():.4g}. "
            "Pass fractions, e.g. counts / counts.sum(), not counts or percentages."
        )
    values = values.sort_values(ascending=False, kind="stable")
    names = [str(n) for n in values.index]

    fig = _new_figure(7.5, 1.4 + 0.45 * len(values))
    ax = fig.add_subplot()
    bars = ax.barh(names, values.to_numpy(), color=[emotion_color(n) for n in names], height=0.7)
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in values], padding=3, fontsize=9)
    ax.invert_yaxis()  # largest share on top
    ax.set_xlim(0, max(values.max() * 1.18, 0.05))
    ax.xaxis.set_major_formatter(_percent_formatter())
    ax.set_xlabel("Share")
    ax.set_ylabel("Emotion")
    ax.set_title(title if title is not None else "Emotion share")
    _tidy(ax, grid="x")
    return fig


# ---------------------------------------------------------------------------------------------
# Colours, checks and small helpers
# ---------------------------------------------------------------------------------------------


def emotion_color(emotion: str) -> str:
    """The colour of an emotion in every chart; a stable colour of its own for other labels."""
    return EMOTION_COLORS.get(str(emotion)) or _stable_color(str(emotion))


def corpus_color(corpus: str) -> str:
    """The colour of a corpus in every chart; ``"all"`` is dark grey."""
    if str(corpus) == "all":
        return _ALL_CORPORA_COLOR
    return CORPUS_COLORS.get(str(corpus)) or _stable_color(str(corpus))


def _stable_color(name: str) -> str:
    # A hash, not the order of appearance: a label keeps its colour from one chart to the next.
    palette = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#9c755f", "#76b7b2", "#ff9da7", "#edc948")
    return palette[zlib.crc32(name.encode()) % len(palette)]


def _corpus_label(corpus: str) -> str:
    return "all corpora" if str(corpus) == "all" else str(corpus)


def _text_color_on(color) -> str:
    red, green, blue = matplotlib.colors.to_rgb(color)
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.55 else "white"


def _format_count(value: float) -> str:
    return f"{int(round(value)):,}" if float(value).is_integer() else f"{value:,.1f}"


def plot_adaptation(table: pd.DataFrame) -> Figure:
    """Speaker adaptation: accuracy and ECE by what is known of each test speaker's voice.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per condition (:func:`ser_lib.evaluate.adaptation_table`, the first being
        ``"per clip"``) with ``condition``, ``accuracy`` (or ``accuracy_mean`` and ``accuracy_std``
        over folds, drawn as error bars), ``ece`` and ``ece_perfect_p95``, fractions in [0, 1].

    Returns
    -------
    fig : matplotlib.figure.Figure
        Left: accuracy per condition, the per-clip level dashed. Right: ECE per condition beside
        the level 95% of perfectly calibrated models stay under (its noise floor).
    """
    accuracy = "accuracy_mean" if "accuracy_mean" in table.columns else "accuracy"
    _check_table(table, ("condition", accuracy, "ece", "ece_perfect_p95"), name="table")
    conditions = table["condition"].tolist()
    x = np.arange(len(conditions))
    colors = ["#9e9e9e" if c == "per clip" else "#3b75af" for c in conditions]
    fig = _new_figure(max(9, 1.5 * len(conditions) + 3), 4.6)
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    error = table["accuracy_std"] if "accuracy_std" in table.columns else None
    bars = left.bar(x, table[accuracy], yerr=error, color=colors, capsize=3, width=0.7)
    left.bar_label(bars, labels=[f"{v:.1%}" for v in table[accuracy]], padding=2, fontsize=8)
    if "per clip" in conditions:
        left.axhline(table.loc[table["condition"] == "per clip", accuracy].iloc[0], color="#555555", ls="--", lw=1,
                     label="per clip")
        left.legend(frameon=False, loc="lower right")
    left.set_ylim(0, 1.05)
    left.set_ylabel("Accuracy on unseen speakers" + (" (mean ± std over folds)" if error is not None else ""))
    right.bar(x, table["ece"], color=colors, width=0.7, label="ECE")
    right.scatter(x, table["ece_perfect_p95"], marker="_", s=300, color="#c0392b", zorder=3,
                  label="95% of perfectly calibrated\nmodels stay under")
    right.set_ylabel("Expected calibration error")
    right.legend(frameon=False, fontsize=8)
    left.yaxis.set_major_formatter(_percent_formatter())
    for ax in (left, right):
        ax.set_xticks(x, conditions, rotation=30, ha="right")
        _tidy(ax, grid="y")
    fig.suptitle("Adapting to the speaker: each test speaker normalised by its own unlabelled clips")
    return fig


def plot_stream_adaptation(table: pd.DataFrame, *, per_clip: float | None = None) -> Figure:
    """A live stream adapting to the voice: window accuracy by the minutes of it heard.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per mode and span of minutes (``benchmarks/stream_adaptation.py``), in order, with
        ``mode`` (``"per window"`` first, e.g. ``"live adapted"``, ``"hindsight"``), ``span`` (a
        label), ``accuracy_mean`` and ``accuracy_std`` over folds, ``gain_mean`` and ``gain_std``
        (accuracy minus per window's on the same windows, over folds), fractions.
    per_clip : float, optional
        The per-clip accuracy of the same models on whole clips, drawn dotted for reference.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Left: one line per mode over the spans, with error bars (std over folds). Right: each
        other mode's gain over per window, the same windows, zero dashed.
    """
    _check_table(table, ("mode", "span", "accuracy_mean", "accuracy_std", "gain_mean", "gain_std"), name="table")
    spans = list(dict.fromkeys(table["span"].astype(str)))
    styles = {"per window": ("#9e9e9e", "o", "-"), "live adapted": ("#3b75af", "s", "-"), "hindsight": ("#c0392b", "^", "--")}
    fig = _new_figure(12, 4.6)
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    for k, (mode, rows) in enumerate(table.groupby("mode", sort=False, observed=True)):
        color, marker, line = styles.get(str(mode), (None, "o", "-"))
        x = np.array([spans.index(str(s)) for s in rows["span"]]) + (k - 1) * 0.06
        left.errorbar(x, rows["accuracy_mean"], yerr=rows["accuracy_std"], color=color, marker=marker, ls=line,
                      capsize=3, label=str(mode))
        if k:
            right.errorbar(x, rows["gain_mean"], yerr=rows["gain_std"], color=color, marker=marker, ls=line, capsize=3,
                           label=str(mode))
    if per_clip is not None:
        left.axhline(per_clip, color="#555555", ls=":", lw=1, label="per clip (whole clips)")
    right.axhline(0, color="#9e9e9e", ls="--", lw=1)
    left.set_ylabel("Window accuracy on unseen speakers\n(mean ± std over folds)")
    right.set_ylabel("Gain over per window, same windows (points)")
    right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:+.0f}"))
    left.yaxis.set_major_formatter(_percent_formatter())
    left.legend(frameon=False, loc="lower left", fontsize=8)
    for ax in (left, right):
        ax.set_xticks(range(len(spans)), spans, rotation=30, ha="right")
        ax.set_xlabel("Minutes of the voice heard when the window ended")
        _tidy(ax, grid="y")
    fig.suptitle("A live stream adapting to the voice as it speaks")
    return fig


def plot_recordings(table: pd.DataFrame) -> Figure:
    """Recording conditions: accuracy and calibration per condition, per clip and adapted to the speaker.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per condition and mode (:func:`ser_lib.evaluate.recording_table`) with
        ``recording``, ``mode`` (``"per clip"``, ``"adapted"``, ...), ``accuracy`` (or ``accuracy_mean``
        and ``accuracy_std`` over folds, drawn as error bars), ``ece``, ``ece_perfect_p95`` and
        ``high_wrong``, fractions in [0, 1].

    Returns
    -------
    fig : matplotlib.figure.Figure
        Left: accuracy per condition, per clip and adapted side by side. Middle: ECE beside the
        level 95% of perfectly calibrated models stay under. Right: the share of wrong answers
        among the high-tier ones (each condition's tier), clean speech's level dashed, and (with
        ``high_wrong_clean_p95``) the level 95% of draws of as many answers as reliable as clean
        speech's stay under.
    """
    accuracy = "accuracy_mean" if "accuracy_mean" in table.columns else "accuracy"
    _check_table(table, ("recording", "mode", accuracy, "ece", "ece_perfect_p95", "high_wrong"), name="table")
    recordings = list(dict.fromkeys(table["recording"]))
    modes = list(dict.fromkeys(table["mode"]))
    x = np.arange(len(recordings))
    width = 0.8 / len(modes)
    colors = {"per clip": "#9e9e9e", "adapted": "#3b75af", "adapted, 2 emotions": "#9ecae1"}
    fig = _new_figure(max(12, 1.6 * len(recordings) + 4), 4.8)
    left, middle, right = fig.subplots(1, 3, width_ratios=(3, 2, 2))
    for k, mode in enumerate(modes):
        rows = table[table["mode"] == mode].set_index("recording").reindex(recordings)
        offset = x + (k - (len(modes) - 1) / 2) * width
        color = colors.get(mode, f"C{k}")
        error = rows["accuracy_std"] if "accuracy_std" in rows.columns else None
        bars = left.bar(offset, rows[accuracy], yerr=error, width=width, color=color, capsize=2, label=mode)
        left.bar_label(bars, labels=[f"{v:.0%}" for v in rows[accuracy]], padding=2, fontsize=7)
        middle.bar(offset, rows["ece"], width=width, color=color, label=f"ECE, {mode}")
        middle.scatter(offset, rows["ece_perfect_p95"], marker="_", s=120, color="#c0392b", zorder=3,
                       label="95% of perfectly calibrated\nmodels stay under" if k == 0 else None)
        right.bar(offset, rows["high_wrong"], width=width, color=color, label=mode)
        if CLEAN in recordings:
            right.axhline(rows.loc[CLEAN, "high_wrong"], color=color, ls="--", lw=1)
        if "high_wrong_clean_p95" in rows.columns:
            right.scatter(offset, rows["high_wrong_clean_p95"], marker="_", s=120, color="#c0392b", zorder=3,
                          label="95% of draws stay under\nas reliable as clean" if k == 0 else None)
    left.set_ylim(0, 1.05)
    left.set_ylabel("Accuracy on unseen speakers" + (" (mean ± std over folds)" if "accuracy_std" in table.columns else ""))
    middle.set_ylabel("Expected calibration error")
    right.set_ylabel("Wrong among high-tier answers")
    for ax in (left, right):
        ax.yaxis.set_major_formatter(_percent_formatter())
    for ax in (left, middle, right):
        ax.set_xticks(x, recordings, rotation=35, ha="right")
        ax.legend(frameon=False, fontsize=7)
        _tidy(ax, grid="y")
    fig.suptitle("Recording conditions: the test speakers' clean clips made into telephone calls, codecs, noise and rooms")
    return fig


def _percent_formatter() -> FuncFormatter:
    # Fractions as "5%", "2.5%", "100%": PercentFormatter prints "5.0%" on ranges below 50%.
    # A new one per axis: a formatter belongs to the axis it is set on.
    return FuncFormatter(lambda value, _: f"{100 * value:.6g}%")


def _format_share(share: float) -> str:
    # "0%" next to a count of 3 reads as a contradiction.
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def _new_figure(width: float, height: float) -> Figure:
    # Constrained layout: tight_layout's goal, but it also makes room for colour bars,
    # suptitles and legends placed outside the axes.
    return Figure(figsize=(width, height), layout="constrained")


def _tidy(ax, *, grid: str | None = None) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    if grid:
        ax.grid(True, axis=grid, **_GRID)
        ax.set_axisbelow(True)


def _ordered(values, preferred) -> list:
    """Known labels in their canonical order, then any others sorted."""
    values = [v for v in pd.unique(pd.Series(list(values))) if pd.notna(v)]
    known = [p for p in preferred if p in values]
    return known + sorted((v for v in values if v not in preferred), key=str)


def _check_table(table, columns, *, name: str = "table") -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"Expected {name} as a pandas.DataFrame, got {type(table).__name__}.")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{name} lacks the column(s) {missing}: expected at least {list(columns)}, got {list(table.columns)}."
        )
    if table.empty:
        raise ValueError(f"{name} has no rows: expected at least one.")


def _crosstab(table, *, rows: str, columns: str) -> pd.DataFrame:
    _check_table(table, (rows, columns))
    counts = pd.crosstab(table[rows], table[columns])
    canonical = {"emotion": EMOTIONS, "corpus": CORPORA}
    return counts.reindex(
        index=_ordered(counts.index, canonical[rows]),
        columns=_ordered(counts.columns, canonical[columns]),
        fill_value=0,
    )


def _check_probabilities(probabilities) -> dict:
    if not isinstance(probabilities, (Mapping, pd.Series)) or len(probabilities) == 0:
        raise ValueError(
            f"Expected probabilities as a non-empty dict class -> probability, got {probabilities!r:.80}."
        )
    checked = {str(k): float(v) for k, v in dict(probabilities).items()}
    outside = {k: v for k, v in checked.items() if not 0 <= v <= 1}
    if outside:
        raise ValueError(f"Probabilities must lie in [0, 1], got {outside}.")
    return checked


def _check_confidence(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct)
    if confidence.ndim != 1 or correct.ndim != 1:
        raise ValueError(
            f"Expected 1-D confidence and correct, got shapes {confidence.shape} and {correct.shape}."
        )
    if confidence.size != correct.size:
        raise ValueError(
            f"confidence and correct must have one entry per prediction: got {confidence.size} "
            f"confidences and {correct.size} correct flags."
        )
    if confidence.size == 0:
        raise ValueError("confidence and correct are empty: expected at least one prediction.")
    if not np.all(np.isfinite(confidence)) or confidence.min() < 0 or confidence.max() > 1:
        raise ValueError(
            f"confidence must hold probabilities in [0, 1], got values from {np.nanmin(confidence):g} "
            f"to {np.nanmax(confidence):g}."
        )
    if correct.dtype != bool:
        if not np.all(np.isin(correct, (0, 1))):
            raise ValueError(
                f"correct must be boolean (prediction == truth), got dtype {correct.dtype} with other values than 0/1."
            )
        correct = correct.astype(bool)
    return confidence, correct


def _bin_confidence(confidence, correct, n_bins: int):
    """Counts, accuracy and mean confidence per equal-width bin [lower, upper) over [0, 1].

    The bins of :func:`ser_lib.evaluate.expected_calibration_error` (1.0 falls in the last), so a
    chart's bars and its ECE agree with the metrics tables.
    """
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"Expected n_bins as a positive integer, got {n_bins!r}.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.minimum((np.asarray(confidence, dtype=float) * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct.astype(float), minlength=n_bins) / counts
        mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / counts
    return counts, accuracy, mean_confidence, edges


def _mark_learning_rate_drops(ax, epochs: np.ndarray, learning_rate: np.ndarray) -> None:
    changes = [i for i in range(1, len(learning_rate)) if learning_rate[i] != learning_rate[i - 1]
               and np.isfinite(learning_rate[i])]
    for n, i in enumerate(changes):
        ax.axvline(epochs[i], color="#999999", ls=":", lw=1, label="learning-rate change" if n == 0 else None)
        # Beyond a handful of changes the labels would collide; the lines alone still show when.
        if len(changes) <= 6:
            ax.text(epochs[i], 0.98, f" lr {learning_rate[i]:.2g}", transform=ax.get_xaxis_transform(),
                    rotation=90, va="top", ha="left", fontsize=7.5, color="#666666")


# --- Chart sets the notebook shows: each returns {file stem: Figure} ---------------------------


def data_charts(table: pd.DataFrame) -> dict:
    """The original's five data charts (01-05) of a corpus table, keyed by their file names."""
    return {
        "01_emotion_distribution": plot_emotion_distribution(table),
        "02_dataset_distribution_pie": plot_dataset_distribution(table),
        "03_emotion_by_dataset_stacked": plot_emotion_by_dataset_stacked(table),
        "04_emotion_dataset_heatmap": plot_emotion_dataset_heatmap(table),
        "05_emotion_by_dataset_grouped": plot_emotion_by_dataset_grouped(table),
    }


def audio_sample_charts(predictions: pd.DataFrame, classes, *, n: int = 4, seed: int = 0) -> dict:
    """Panels of ``n`` test clips of different true emotions (the original's 12_audio_sample_* charts).

    ``predictions`` is a run's table (``path``, ``emotion``, ``p_<class>`` columns); the clips are a
    seeded choice, one per emotion while emotions last.
    """
    if len(predictions) == 0:
        raise ValueError("Expected at least one test prediction to show, got an empty table.")
    shuffled = predictions.sample(frac=1.0, random_state=seed)
    chosen = shuffled.drop_duplicates("emotion").head(n)
    if len(chosen) < n:
        chosen = pd.concat([chosen, shuffled.drop(chosen.index).head(n - len(chosen))])
    charts = {}
    for index, row in enumerate(chosen.itertuples(index=False), start=1):
        y = load_audio(row.path, sr=SAMPLE_RATE, duration=CLIP_SECONDS)
        probabilities = {c: float(getattr(row, f"p_{c}")) for c in classes}
        name = f"12_audio_sample_{index}_{row.emotion}"
        charts[name] = plot_audio_sample(y, SAMPLE_RATE, true_label=row.emotion, probabilities=probabilities, title=Path(row.path).name)
    return charts


def save_figures(figures: dict, directory, *, dpi: int = 120) -> list:
    """Save ``{name: Figure}`` as ``directory/<name>.png``; returns the paths."""
    return [save_figure(figure, Path(directory) / f"{name}.png", dpi=dpi) for name, figure in figures.items()]
