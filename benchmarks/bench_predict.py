"""Prediction speed against baselines measured in the same run: cold start, a 1-hour recording, a folder.

    .venv/bin/python benchmarks/bench_predict.py [--artifacts DIR] [--data ../shared/data/ravdess_dev]
        [--hours 1.0] [--clips 96] [--repeats 3]

1. Cold ``ser predict`` on one 3 s clip (a new process each time, median of ``--repeats``) against the
   Keras path of the original usage guide (a new process that loads ``best_ser_model.keras`` with
   Keras, ``scaler.pkl``, computes the same features and predicts, then applies the bundle's calibration
   temperature); their probabilities must agree.
2. A generated recording of ``--hours`` (real RAVDESS clips with 0.5-3 s pauses, written as 44.1 kHz
   FLAC so resampling is part of the work) analysed by ``predict_emotion(n_jobs=-1)`` in a new process:
   wall time and peak memory (the process and its workers, sampled every 0.1 s), against the time
   ``extract_many(n_jobs=-1)`` takes for the same number of windows (measured on a sample of windows
   written as 3 s files, scaled to the count).
3. ``ser predict`` on a folder of ``--clips`` real clips against ``extract_many(n_jobs=-1)`` on the same
   folder, each in a new process (imports and worker start-up included): clips/s and the ratio.

Without ``--artifacts`` a bundle is trained first on the synthetic demo corpus (``ser train --epochs 5``);
without ``../shared/data`` the demo corpus's clips stand in for RAVDESS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SR = 22050

KERAS_BASELINE = r'''
import os, sys, pickle, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np, ser_lib
bundle, clip = sys.argv[1], sys.argv[2]
model = keras.models.load_model(os.path.join(bundle, "best_ser_model.keras"))
scaler = pickle.load(open(os.path.join(bundle, "scaler.pkl"), "rb"))
features = ser_lib.extract_features(clip).reshape(1, -1)
standardised = scaler.transform(features)
probabilities = model.predict(standardised, verbose=0)
# ser_lib's answers are calibrated: the bundle's temperature (growing with the clip's atypicality) applied to the logits.
temperature = ser_lib.load_bundle(bundle).temperatures(standardised)[:, None]
print(json.dumps(ser_lib.model.softmax(np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature)[0].tolist()))
'''

LONG_RUN = r'''
import json, sys, threading, time
import psutil
peak = [0]
def sample():
    me = psutil.Process()
    while True:
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        peak[0] = max(peak[0], total)
        time.sleep(0.1)
threading.Thread(target=sample, daemon=True).start()
start = time.perf_counter()
from ser_lib.predict import predict_emotion
result = predict_emotion(sys.argv[1], sys.argv[2], n_jobs=-1, progress=False)
wall = time.perf_counter() - start
import resource
print(json.dumps({"wall": wall, "peak_tree_mb": peak[0] / 2**20,
                  "peak_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "n_windows": result.n_windows, "n_silent": result.n_silent, "emotion": result.emotion,
                  "duration": result.duration}))
'''

EXTRACT_MANY = r'''
import sys, time, json
start = time.perf_counter()
import pandas as pd, ser_lib
paths = open(sys.argv[1]).read().split("\n")
features = ser_lib.extract_many(pd.DataFrame({"path": paths}), n_jobs=-1, cache_dir=None, progress=False)
print(json.dumps({"wall": time.perf_counter() - start, "n": len(features)}))
'''


def run(command, **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, **kwargs)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall, out


def source_clips(data: Path | None, work: Path) -> list[Path]:
    if data is not None and data.is_dir():
        clips = sorted(data.rglob("*.flac")) + sorted(data.rglob("*.wav"))
        if clips:
            return clips
    import ser_lib

    root = ser_lib.make_demo_corpus(work / "demo_clips", seed=0, speakers_per_corpus=4, clips_per_emotion=2)
    return sorted(root.rglob("*.wav"))


def train_bundle(work: Path) -> Path:
    out = work / "bundle"
    print("No --artifacts: training a demo bundle (ser train --data <demo> --epochs 5) ...", flush=True)
    run([str(BIN / "ser"), "train", "--data", "demo", "--out", str(out), "--epochs", "5"], cwd=work)
    return out


def write_long_recording(clips: list[Path], path: Path, hours: float, seed: int = 0) -> float:
    """Real clips with 0.5-3 s pauses, written at 44.1 kHz FLAC block by block."""
    import soundfile
    import soxr

    rng = np.random.default_rng(seed)
    target = int(hours * 3600 * SR)
    written = 0
    resampler = soxr.ResampleStream(SR, 44100, 1, dtype="float32", quality="HQ")
    with soundfile.SoundFile(path, "w", 44100, 1, "PCM_16") as out:
        while written < target:
            y, sr = soundfile.read(clips[rng.integers(len(clips))], dtype="float32", always_2d=True)
            y = y.mean(axis=1)
            if sr != SR:
                y = soxr.resample(y, sr, SR)
            piece = np.concatenate([y, np.zeros(int(rng.uniform(0.5, 3.0) * SR), np.float32)])[: target - written]
            written += piece.size
            out.write(resampler.resample_chunk(piece, last=written >= target))
    return written / SR


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, help="a bundle (default: train a demo bundle first)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ravdess_dev")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--clips", type=int, default=96, help="clips in the folder of part 3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window-sample", type=int, default=200, help="windows written as files for the baseline of part 2")
    args = parser.parse_args(argv)

    import soundfile

    results = []
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        work = Path(tmp)
        bundle = args.artifacts or train_bundle(work)
        clips = source_clips(args.data, work)
        print(f"bundle: {bundle}\nclips: {len(clips)} from {clips[0].parent.parent}", flush=True)

        # 1. Cold start on one 3 s clip.
        y, sr = soundfile.read(clips[0], dtype="float32")
        clip = work / "clip3s.wav"
        soundfile.write(clip, np.resize(y, 3 * sr) if y.size < 3 * sr else y[: 3 * sr], sr)
        ser_times, keras_times = [], []
        for _ in range(args.repeats):
            wall, out = run([str(BIN / "ser"), "predict", str(clip), "--artifacts", str(bundle), "--quiet",
                             "--csv", str(work / "one.csv")])
            ser_times.append(wall)
            wall, keras_out = run([sys.executable, "-c", KERAS_BASELINE, str(bundle), str(clip)])
            keras_times.append(wall)
        import pandas as pd

        ours = pd.read_csv(work / "one.csv")
        keras_probabilities = np.array(json.loads(keras_out.stdout.strip().splitlines()[-1]))
        classes = json.loads((Path(bundle) / "model_metadata.json").read_text())["classes"]
        difference = float(np.abs(ours.loc[0, classes].to_numpy(float) - keras_probabilities).max())
        ser_cold, keras_cold = statistics.median(ser_times), statistics.median(keras_times)
        results.append(("cold `ser predict` 3 s clip (s, median)", f"{ser_cold:.2f}", f"{keras_cold:.2f} (Keras)",
                        f"{keras_cold / ser_cold:.1f}x faster", "<= 3.5 s"))
        print(f"[1] cold start: ser {ser_times} s; keras {keras_times} s; max |p_ser - p_keras| = {difference:.2e}", flush=True)

        # 1b. Warm predict_emotion in this process: the whole call, its features alone, its model alone.
        import ser_lib

        ser_lib.predict_emotion(clip, bundle, progress=False)
        model = ser_lib.get_model(bundle)
        features = ser_lib.compute_features(ser_lib.load_audio(clip), sr=SR)
        timings = {"predict_emotion": [], "features (load + compute)": [], "model (predict_proba)": []}
        for _ in range(20):
            start = time.perf_counter()
            ser_lib.predict_emotion(clip, bundle, progress=False)
            timings["predict_emotion"].append(time.perf_counter() - start)
            start = time.perf_counter()
            ser_lib.compute_features(ser_lib.load_audio(clip), sr=SR)
            timings["features (load + compute)"].append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict_proba(features)
            timings["model (predict_proba)"].append(time.perf_counter() - start)
        warm = {name: 1000 * statistics.median(values) for name, values in timings.items()}
        results.append(("warm `predict_emotion` 3 s clip (ms, median of 20)", f"{warm['predict_emotion']:.1f}",
                        f"features {warm['features (load + compute)']:.1f}, model {warm['model (predict_proba)']:.2f}",
                        "", "features dominate"))
        print(f"[1b] warm: {warm}", flush=True)

        # 2. A long recording.
        long_path = work / "long.flac"
        seconds = write_long_recording(clips, long_path, args.hours)
        print(f"[2] wrote {seconds / 3600:.2f} h to {long_path.name} ({long_path.stat().st_size / 2**20:.0f} MB)", flush=True)
        _, out = run([sys.executable, "-c", LONG_RUN, str(long_path), str(bundle)])
        long = json.loads(out.stdout.strip().splitlines()[-1])
        # Baseline: extract_many on a sample of the same windows written as 3 s files, scaled to the count.
        from ser_lib.predict import _windows

        sample_dir = work / "windows"
        sample_dir.mkdir()
        every = max(1, long["n_windows"] // args.window_sample)
        names = []
        for k, (start, samples) in enumerate(_windows(long_path, SR, 3 * SR, 3 * SR // 2)):
            if k % every == 0 and np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 1e-3:
                names.append(str(sample_dir / f"w{k:05d}.wav"))
                soundfile.write(names[-1], samples, SR)
            if len(names) >= args.window_sample:
                break
        (work / "windows.txt").write_text("\n".join(names))
        _, out = run([sys.executable, "-c", EXTRACT_MANY, str(work / "windows.txt")])
        sample = json.loads(out.stdout)
        per_window = sample["wall"] / sample["n"]
        voiced = long["n_windows"] - long["n_silent"]
        results.append((f"{seconds / 3600:.2f} h recording (s)", f"{long['wall']:.1f}",
                        f"{per_window * long['n_windows']:.1f} (extract_many, all {long['n_windows']} windows)",
                        f"{per_window * long['n_windows'] / long['wall']:.2f}x", "<= 60 s"))
        results.append(("  same, baseline on the non-silent windows only", "", f"{per_window * voiced:.1f} ({voiced} windows)",
                        f"{per_window * voiced / long['wall']:.2f}x", ""))
        results.append(("  peak memory, process + workers (MB)", f"{long['peak_tree_mb']:.0f}",
                        f"main process {long['peak_main_mb']:.0f}", "", "< 1024 MB"))
        print(f"[2] {json.dumps(long)}; extract_many: {sample['n']} windows in {sample['wall']:.1f} s", flush=True)

        # 3. A folder.
        folder = work / "folder"
        folder.mkdir()
        step = max(1, len(clips) // args.clips)
        chosen = clips[::step][: args.clips]
        for index, path in enumerate(chosen):
            (folder / f"{index:04d}_{path.name}").symlink_to(path.resolve())
        ser_wall, _ = run([str(BIN / "ser"), "predict", str(folder), "--artifacts", str(bundle), "--quiet",
                           "--csv", str(work / "folder.csv")])
        table = pd.read_csv(work / "folder.csv", keep_default_na=False)
        (work / "folder.txt").write_text("\n".join(sorted(str(p) for p in folder.iterdir())))
        _, out = run([sys.executable, "-c", EXTRACT_MANY, str(work / "folder.txt")])
        extract = json.loads(out.stdout)
        n = len(chosen)
        ours_rate, theirs_rate = n / ser_wall, n / extract["wall"]
        results.append((f"`ser predict` folder of {n} clips (clips/s)", f"{ours_rate:.2f}",
                        f"{theirs_rate:.2f} (extract_many)", f"{ours_rate / theirs_rate:.2f}", ">= 0.80"))
        print(f"[3] ser predict {ser_wall:.1f} s ({(table['error'] != '').sum()} errors); "
              f"extract_many {extract['wall']:.1f} s", flush=True)

    print("\n| measure | ser_lib | baseline | ratio | target |\n| --- | --- | --- | --- | --- |")
    for row in results:
        print("| " + " | ".join(row) + " |")
    print(f"\nmax |p(ser predict) - p(Keras)| on the clip: {difference:.1e} (must be <= 1e-5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
