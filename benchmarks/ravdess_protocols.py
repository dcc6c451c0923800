"""The original recipe on real speech: random split vs unseen speakers, over several seeds.

    python benchmarks/ravdess_protocols.py [--data ../shared/data/ravdess_dev] [--seeds 0 1 2] [--epochs 100]

For each seed and protocol it trains the original MLP with `ser_lib.train` and reports test accuracy and
macro-F1; for the speaker protocol it also predicts the held-out actors' files through the saved bundle
(`ser_lib.predict_many`, the path `ser predict` uses) and checks that it gives the same accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ser_lib  # noqa: E402
from ser_lib import evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ravdess_dev")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()

    table = ser_lib.scan_corpora(args.data)
    features = ser_lib.extract_many(table, n_jobs=-1)
    rows = []
    for seed in args.seeds:
        for protocol in ("random", "speaker"):
            run = ser_lib.train(features, protocol=protocol, seed=seed, epochs=args.epochs, progress=False)
            row = {"seed": seed, "protocol": protocol, **run.metrics, "epochs_run": len(run.history),
                   "train_seconds": round(run.train_seconds, 1)}
            if protocol == "speaker":
                with tempfile.TemporaryDirectory() as bundle:
                    ser_lib.save_bundle(run, bundle)
                    predicted = ser_lib.predict_many(run.predictions["path"], bundle, n_jobs=-1, progress=False)
                row["predict_accuracy"] = evaluate.summary_metrics(run.predictions["emotion"], predicted["emotion"], run.classes)["accuracy"]
                row["test_speakers"] = " ".join(sorted(run.predictions["speaker"].unique()))
            rows.append(row)
            print(rows[-1], flush=True)
    results = pd.DataFrame(rows)
    print(f"\n{len(features)} clips, {features['speaker'].nunique()} speakers from {args.data}")
    print(results.drop(columns=["weighted_f1"]).to_string(index=False))
    print("\nmean (std) over seeds:")
    print(results.groupby("protocol")[["accuracy", "macro_f1"]].agg(["mean", "std"]).round(3).to_string())


if __name__ == "__main__":
    main()
