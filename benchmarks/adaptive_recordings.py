"""Should the windows of a long recording adapt to each other? Window accuracy with and without, on real RAVDESS.

    python benchmarks/adaptive_recordings.py [--data ../shared/data/ravdess_dev] [--recipe best]
                                             [--test-actors 13 14 15 16] [--pause 1.0] [--seed 0]

Trains the recipe (per clip and adaptive) on the other actors of ``--data``, then for each test actor joins
clips into recordings with ``--pause`` s of silence between them: ``all`` (all 60 clips, every emotion, in a
random order) and ``skewed`` (one recording per pair of emotions: the actor's clips of two emotions only). Each
recording is predicted as ``predict_emotion`` does (3 s windows every 1.5 s, silence gate), once per clip-window
(``adapt=False``) and once with its voiced windows adapted to each other (``adapt=True``, the default). A window is
scored against the clip that fills most of it; windows mostly in a pause are not scored. Prints window
accuracy per recording kind and actor, and overall.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ser_lib  # noqa: E402
from ser_lib.audio import SAMPLE_RATE, load_audio  # noqa: E402
from ser_lib.features import original_rows  # noqa: E402


def join(paths, emotions, pause: float):
    """The recording and each clip's (start, end, emotion) in seconds."""
    silence = np.zeros(int(pause * SAMPLE_RATE), dtype=np.float32)
    pieces, segments, t = [silence], [], pause
    for path, emotion in zip(paths, emotions):
        y = load_audio(path, sr=SAMPLE_RATE, duration=None)
        segments.append((t, t + len(y) / SAMPLE_RATE, emotion))
        pieces += [y, silence]
        t += len(y) / SAMPLE_RATE + pause
    return np.concatenate(pieces), segments


def window_labels(timeline: pd.DataFrame, segments) -> list:
    """The emotion of the clip covering most of each window (None when most of it is pause)."""
    labels = []
    for start, end in zip(timeline["start"], timeline["end"]):
        overlaps = [(min(end, b) - max(start, a), emotion) for a, b, emotion in segments]
        best, emotion = max(overlaps)
        labels.append(emotion if best > (end - start) / 2 else None)
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ravdess_dev")
    parser.add_argument("--recipe", default="best")
    parser.add_argument("--test-actors", type=int, nargs="+", default=[13, 14, 15, 16])
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    table = ser_lib.scan_corpora(args.data)
    features = ser_lib.extract_many(table, n_jobs=-1, recipe=args.recipe, progress=False)
    clips = original_rows(features)
    actor = clips["speaker"].str.slice(-2).astype(int)
    split = pd.Series(np.where(actor.isin(args.test_actors), "test", "train"), index=clips.index, name="split")
    run = ser_lib.train(features, recipe=args.recipe, split=split, seed=args.seed, progress=False)
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        bundle = ser_lib.save_bundle(run, Path(folder) / "bundle")
        for speaker, own in run.predictions.groupby("speaker"):
            emotions = rng.permutation(own["emotion"].unique())
            recordings = {"all": own.sample(frac=1, random_state=args.seed)}
            for k in range(0, len(emotions) - 1, 2):
                recordings[f"skewed {k // 2}"] = own[own["emotion"].isin(emotions[k : k + 2])].sample(frac=1, random_state=k)
            for name, part in recordings.items():
                y, segments = join(part["path"], part["emotion"], args.pause)
                path = Path(folder) / f"{speaker}_{name}.wav"
                soundfile.write(path, y, SAMPLE_RATE)
                for adapt in (False, True):
                    result = ser_lib.predict_emotion(path, bundle, adapt=adapt, progress=False, n_jobs=-1)
                    truth = window_labels(result.timeline, segments)
                    scored = [(t, e) for t, e in zip(truth, result.timeline["emotion"]) if t is not None and e != "silent"]
                    rows.append({"speaker": speaker, "recording": name.split()[0], "adapted": adapt, "windows": len(scored),
                                 "correct": sum(t == e for t, e in scored), "seconds": len(y) / SAMPLE_RATE})
    results = pd.DataFrame(rows)
    summary = results.groupby(["recording", "adapted"])[["windows", "correct"]].sum()
    summary["accuracy"] = summary["correct"] / summary["windows"]
    per_speaker = results.groupby(["recording", "speaker", "adapted"])[["windows", "correct"]].sum()
    per_speaker["accuracy"] = per_speaker["correct"] / per_speaker["windows"]
    print(per_speaker.round(3).to_string())
    print(f"\nwindow accuracy, {args.recipe} trained on actors other than {args.test_actors}:")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
