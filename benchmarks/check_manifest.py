"""Materialise the bundle manifest as empty files and check every row parses to its labels."""
import csv, sys, tempfile, warnings
from pathlib import Path
sys.path.insert(0, "/work/main")
from ser_lib.corpora import scan_corpora
rows = list(csv.DictReader(open("/work/shared/data/kaggle_bundle_manifest.csv")))
with tempfile.TemporaryDirectory() as tmp:
    for r in rows:
        p = Path(tmp, r["path"]); p.parent.mkdir(parents=True, exist_ok=True); p.touch()
    table, skipped = scan_corpora(tmp, return_skipped=True)
    got = {str(Path(p).relative_to(Path(tmp).resolve())): (c, s, e) for p, c, s, e in table[["path","corpus","speaker","emotion"]].itertuples(index=False)}
ok = sum(got.get(r["path"]) == (r["corpus"], r["speaker"], r["emotion"]) for r in rows)
print(f"{ok} of {len(rows)} manifest paths parsed to their labels; skipped {len(skipped)}")
for r in rows:
    if got.get(r["path"]) != (r["corpus"], r["speaker"], r["emotion"]): print("MISMATCH", r, got.get(r["path"])); break
