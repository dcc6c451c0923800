"""Feature extraction: the original recipe, run serially, against ser_lib, on the same real clips.

    python benchmarks/bench_features.py [--data ../shared/data/ravdess_dev] [--clips 240] [--n-jobs -1]

Prints clips/s of each and the ratio, and checks that every clip's features are equal
(``np.allclose(ours, reference, rtol=1e-5, atol=1e-6)``). Neither side uses a feature cache. The
reference runs in its own process without librosa's filter cache, as the original notebook does;
ours starts with an empty filter cache, so its warm-up is inside the timing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REFERENCE = r'''
import sys, time, warnings
import numpy as np, librosa
warnings.simplefilter("ignore")

def reference_features(path):
    y, sr = librosa.load(path, duration=3, sr=22050)
    return np.hstack([
        np.mean(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40).T, axis=0),
        np.mean(librosa.feature.chroma_stft(y=y, sr=sr).T, axis=0),
        np.mean(librosa.feature.melspectrogram(y=y, sr=sr).T, axis=0),
        np.mean(librosa.feature.spectral_contrast(y=y, sr=sr).T, axis=0),
        np.mean(librosa.feature.tonnetz(y=y, sr=sr).T, axis=0),
        np.mean(librosa.feature.zero_crossing_rate(y)),
        np.mean(librosa.feature.spectral_rolloff(y=y, sr=sr)),
    ])

paths = open(sys.argv[1]).read().split("\n")
reference_features(paths[0])  # imports and numba compilation, as ours gets from its warm workers
start = time.perf_counter()
rows = [reference_features(p) for p in paths]
print(time.perf_counter() - start)
np.save(sys.argv[2], np.array(rows))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ravdess_dev")
    parser.add_argument("--clips", type=int, default=240, help="clips to use, spread over the folder")
    parser.add_argument("--n-jobs", type=int, default=-1)
    args = parser.parse_args()

    paths = sorted(str(p) for p in args.data.rglob("*") if p.suffix.lower() in {".wav", ".flac"})
    if not paths:
        sys.exit(f"No .wav or .flac files under {args.data}: pass --data with real speech.")
    step = max(1, len(paths) // args.clips)
    paths = paths[::step][: args.clips]

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        list_file = scratch / "paths.txt"
        list_file.write_text("\n".join(paths))
        for key in [k for k in os.environ if k.startswith("LIBROSA_CACHE")]:
            del os.environ[key]  # before either side imports librosa
        env = dict(os.environ)
        out = subprocess.run(
            [sys.executable, "-c", REFERENCE, str(list_file), str(scratch / "ref.npy")],
            env=env, check=True, capture_output=True, text=True,
        )
        reference_seconds = float(out.stdout.strip().splitlines()[-1])
        reference = np.load(scratch / "ref.npy")

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import pandas as pd

        import ser_lib
        from ser_lib.features import feature_matrix

        table = pd.DataFrame({"path": paths})
        # Start the worker pool outside the timing: a notebook pays it once per session.
        ser_lib.extract_many(table.head(2), n_jobs=args.n_jobs, cache_dir=None, progress=False)
        start = time.perf_counter()
        ours = feature_matrix(ser_lib.extract_many(table, n_jobs=args.n_jobs, cache_dir=None, progress=False))
        ours_seconds = time.perf_counter() - start

    equal = np.array([np.allclose(o, r, rtol=1e-5, atol=1e-6) for o, r in zip(ours, reference)])
    n = len(paths)
    print(f"clips: {n} from {args.data}")
    print(f"reference recipe, serial:        {n / reference_seconds:7.1f} clips/s ({1000 * reference_seconds / n:.1f} ms/clip)")
    print(f"ser_lib.extract_many n_jobs={args.n_jobs}: {n / ours_seconds:7.1f} clips/s ({1000 * ours_seconds / n:.1f} ms/clip)")
    print(f"speed-up: {reference_seconds / ours_seconds:.1f}x")
    print(f"equal to the reference (rtol=1e-5, atol=1e-6): {equal.sum()} of {n}")
    print(f"12,162-clip bundle at this rate: {12162 * ours_seconds / n / 60:.1f} min")


if __name__ == "__main__":
    main()
