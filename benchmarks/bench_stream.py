"""Live streaming cost on one core: processing time against the audio's duration, and memory over an hour.

    python benchmarks/bench_stream.py [--recipes original best] [--artifacts DIR ...] [--data ../shared/data/ravdess_dev]
                                      [--minutes 60] [--sr 16000] [--chunk 0.1]

Runs on one core (BLAS and OpenMP threads pinned to 1 before NumPy loads). A recording of real speech (60
RAVDESS clips of one actor joined with 1 s pauses, about 5 minutes; the demo corpus's clips without ``--data``)
at ``--sr`` is fed to ``ser_lib.EmotionStream`` (adaptation on) in ``--chunk`` s chunks, looped up to
``--minutes`` of audio. Reports, against the audio in the same run:

- the real-time factor: processing time over the audio's duration, per window (a window's time over the
  3 s it covers, the issue's measure) and for the whole stream (all time over all audio: what a live
  microphone needs below 1, every 1.5 s of audio costing one window);
- the longest single ``feed`` (how late a line can print);
- the process's resident memory at every 5 minutes of audio (flat: the stream keeps no audio or features);
- the same recording's windows through ``predict_emotion`` (the file path) in the same run, per window.

Without ``--artifacts``, each of ``--recipes`` is trained on a small demo corpus first (its cost does not depend
on what it learnt).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ser_lib  # noqa: E402
from adaptive_recordings import join  # noqa: E402
from ser_lib.audio import SAMPLE_RATE  # noqa: E402
from ser_lib.features import original_rows  # noqa: E402

REPORT_EVERY_MINUTES = 5


def demo_bundle(recipe: str, folder: Path) -> Path:
    root = ser_lib.make_demo_corpus(folder / "demo", seed=2, speakers_per_corpus=3, clips_per_emotion=2)
    features = ser_lib.extract_many(ser_lib.scan_corpora(root), recipe=recipe, n_jobs=1, cache_dir=None, progress=False)
    run = ser_lib.train(features, recipe=recipe, protocol="none", seed=0, epochs=8, progress=False)
    return ser_lib.save_bundle(run, folder / f"bundle_{recipe}", overwrite=True)


def speech(data: Path | None, folder: Path) -> tuple[np.ndarray, str]:
    """About five minutes of one voice: 60 clips joined with 1 s pauses (22,050 Hz)."""
    if data is not None and data.is_dir():
        table = ser_lib.scan_corpora(data)
        clips = table[table["speaker"] == sorted(table["speaker"])[0]].head(60)
        source = f"{len(clips)} clips of {clips['speaker'].iloc[0]} from {data}"
    else:
        root = ser_lib.make_demo_corpus(folder / "voices", seed=5, speakers_per_corpus=1, clips_per_emotion=8)
        clips = ser_lib.scan_corpora(root).head(60)
        source = f"{len(clips)} demo clips"
    y, _ = join(clips["path"], clips["emotion"], 1.0)
    return y, source


def stream_cost(bundle: Path, y: np.ndarray, sr: int, chunk_seconds: float, minutes: float) -> dict:
    process = psutil.Process()
    stream = ser_lib.EmotionStream(bundle, sr=sr)
    chunk = int(chunk_seconds * sr)
    total = int(minutes * 60 * sr)
    busy, longest, windows, position, memory = 0.0, 0.0, 0, 0, []
    next_report = REPORT_EVERY_MINUTES * 60 * sr
    while position < total:
        offset = position % len(y)
        piece = y[offset : offset + min(chunk, total - position)]
        start = time.perf_counter()
        windows += len(stream.feed(piece))
        elapsed = time.perf_counter() - start
        busy, longest = busy + elapsed, max(longest, elapsed)
        position += len(piece)
        if position >= next_report:
            memory.append((position / sr / 60, process.memory_info().rss / 2**20))
            next_report += REPORT_EVERY_MINUTES * 60 * sr
    start = time.perf_counter()
    summary = stream.close()
    busy += time.perf_counter() - start
    voiced = int((summary.timeline["emotion"] != "silent").sum())
    return {"windows": len(summary.timeline), "voiced": voiced, "seconds": position / sr, "busy": busy,
            "longest_feed": longest, "memory": memory, "adapted_at_end": summary.n_clips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=["original", "best"])
    parser.add_argument("--artifacts", nargs="+", type=Path, help="bundles to use instead of training demo ones")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ravdess_dev")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sr", type=int, default=16000)
    parser.add_argument("--chunk", type=float, default=0.1)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        bundles = args.artifacts or [demo_bundle(recipe, folder) for recipe in args.recipes]
        y, source = speech(args.data, folder)
        y = soxr.resample(y, SAMPLE_RATE, args.sr).astype(np.float32)
        path = folder / "speech.wav"
        soundfile.write(path, y, args.sr)
        print(f"speech: {source}, {len(y) / args.sr / 60:.1f} min at {args.sr} Hz, looped to {args.minutes:g} min; "
              f"chunks of {args.chunk:g} s; one core", flush=True)
        for bundle in bundles:
            recipe = ser_lib.get_model(bundle).recipe
            start = time.perf_counter()
            whole = ser_lib.predict_emotion(path, bundle, progress=False)
            file_seconds = time.perf_counter() - start
            file_voiced = int((whole.timeline["emotion"] != "silent").sum())
            cost = stream_cost(bundle, y, args.sr, args.chunk, args.minutes)
            per_window = cost["busy"] / cost["voiced"]
            rows.append({
                "recipe": recipe, "audio_min": cost["seconds"] / 60, "windows": cost["windows"], "voiced": cost["voiced"],
                "ms_per_window": 1000 * per_window, "rtf_per_window": per_window / 3.0,
                "rtf_stream": cost["busy"] / cost["seconds"], "longest_feed_ms": 1000 * cost["longest_feed"],
                "file_ms_per_window": 1000 * file_seconds / file_voiced,
                "rss_first_mb": cost["memory"][0][1] if cost["memory"] else np.nan,
                "rss_last_mb": cost["memory"][-1][1] if cost["memory"] else np.nan,
            })
            print(pd.Series(rows[-1]).to_string(), flush=True)
            print("resident memory (MB) by minutes of audio: "
                  + ", ".join(f"{m:.0f} min {mb:.0f}" for m, mb in cost["memory"]), flush=True)
    print("\n" + pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
