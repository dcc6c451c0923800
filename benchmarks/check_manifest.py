"""The corpus reader on every file name of the real Kaggle bundle.

    python benchmarks/check_manifest.py [--manifest ../shared/data/kaggle_bundle_manifest.csv]

Creates an empty file for each of the manifest's 12,162 paths in a temporary folder, scans it with
`ser_lib.scan_corpora` and counts the rows whose corpus, speaker and emotion match the manifest.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ser_lib.corpora import scan_corpora  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/data/kaggle_bundle_manifest.csv")
    args = parser.parse_args()
    manifest = pd.read_csv(args.manifest, dtype=str)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        for relative in manifest["path"]:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).touch()
        table, skipped = scan_corpora(root, return_skipped=True)
    table["path"] = [str(Path(p).relative_to(root)) for p in table["path"]]
    merged = manifest.merge(table, on="path", how="left", suffixes=("", "_parsed"))
    matches = (
        (merged["corpus"] == merged["corpus_parsed"])
        & (merged["speaker"] == merged["speaker_parsed"])
        & (merged["emotion"] == merged["emotion_parsed"])
    )
    print(f"{int(matches.sum())} of {len(manifest)} manifest paths parsed to their corpus, speaker and emotion; "
          f"{len(skipped)} skipped")
    if not matches.all():
        print(merged.loc[~matches].head(10).to_string(index=False))
    return 0 if matches.all() else 1


if __name__ == "__main__":
    sys.exit(main())
