"""The `ser` command as a newcomer meets it: one `error:` line for every expected mistake, --version, `ser info`."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import ser_lib
from ser_lib import cli
from ser_lib.recipes import functionals_fusion


def run_cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code, err, *fragments):
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def tess_only(tmp_path_factory):
    root = ser_lib.make_demo_corpus(tmp_path_factory.mktemp("demo"), speakers_per_corpus=2, clips_per_emotion=1)
    for corpus in ("Crema", "Ravdess", "Savee"):
        shutil.rmtree(root / corpus)
    return root


@pytest.fixture(scope="module")
def fusion_bundle(tmp_path_factory):
    """A bundle of the fusion recipe, trained on synthetic feature rows (no audio needed)."""
    rng = np.random.default_rng(0)
    rows = [{"path": f"/data/Actor_{s:02d}/{c:02d}.wav", "corpus": "RAVDESS", "speaker": f"Actor_{s:02d}", "gender": "female",
             "emotion": ["angry", "happy", "sad"][c % 3]} for s in range(1, 7) for c in range(6)]
    table = pd.DataFrame(rows)
    x = rng.standard_normal((len(table), functionals_fusion.N_FEATURES)).astype(np.float32)
    features = pd.concat([table, pd.DataFrame(x, columns=list(functionals_fusion.FEATURE_NAMES))], axis=1)
    with pytest.warns(UserWarning, match="36 of 36 training clips gave no babble 10 dB copy and train without one, e.g. No audio"):
        run = ser_lib.train(features, recipe="best", protocol="none", progress=False)  # babble copies need the audio
    return ser_lib.save_bundle(run, tmp_path_factory.mktemp("fusion") / "bundle")


def test_missing_data_folder(tmp_path, capsys):
    code, _, err = run_cli(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")], capsys)
    assert_one_error_line(code, err, "nowhere")


def test_too_few_speakers_for_the_split_says_what_would_do(tess_only, tmp_path, capsys):
    code, _, err = run_cli(["train", "--data", str(tess_only), "--out", str(tmp_path / "out"), "--epochs", "1"], capsys)
    assert_one_error_line(code, err, "The speaker split left ['validation'] empty", "--split random", "Add corpora with more speakers")


def test_no_network_for_kaggle(offline, tmp_path, capsys):
    code, _, err = run_cli(["train", "--data", "kaggle", "--out", str(tmp_path / "out")], capsys)
    assert_one_error_line(code, err, "Could not get the Kaggle bundle", "--data")


def test_a_bundle_needing_opensmile_where_it_is_missing_names_what_to_install(fusion_bundle, monkeypatch, write_wav, capsys):
    monkeypatch.setitem(functionals_fusion.SETTINGS, "opensmile", {**functionals_fusion.SETTINGS["opensmile"], "version": None})
    code, _, err = run_cli(["predict", str(write_wav()), "--artifacts", str(fusion_bundle), "--quiet"], capsys)
    version = json.loads((fusion_bundle / "model_metadata.json").read_text())["feature_settings"]["opensmile"]["version"]
    assert_one_error_line(code, err, f"needs openSMILE {version}", "pip install 'ser_lib[best]'")


def test_training_without_tensorflow_names_what_to_install(monkeypatch, tmp_path, capsys):
    root = ser_lib.make_demo_corpus(tmp_path / "demo", speakers_per_corpus=3, clips_per_emotion=1)
    monkeypatch.setitem(sys.modules, "keras", None)  # as if it were not installed
    code, _, err = run_cli(["train", "--data", str(root), "--out", str(tmp_path / "out"), "--workers", "1"], capsys)
    assert_one_error_line(code, err, "TensorFlow", "pip install 'ser_lib[train]'")


def test_debug_shows_the_traceback_for_a_bug_report(tmp_path):
    argv = ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]
    plain = subprocess.run([sys.executable, "-m", "ser_lib.cli", *argv], capture_output=True, text=True)
    debug = subprocess.run([sys.executable, "-m", "ser_lib.cli", "--debug", *argv], capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and plain.stderr.startswith("error: ")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"ser {ser_lib.__version__}"


def test_info_says_what_a_bundle_is(fusion_bundle, capsys):
    code, out, _ = run_cli(["info", str(fusion_bundle)], capsys)
    assert code == 0
    for fragment in ("recipe", "functionals_fusion", "angry, happy, sad", "split", "none", "calibration",
                     "T = ", "opensmile", "trained on"):
        assert fragment in out, out
    code, out, _ = run_cli(["info", str(fusion_bundle), "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["recipe"] == "functionals_fusion" and info["classes"] == ["angry", "happy", "sad"]
    assert info["calibration"]["temperature"] > 0 and "versions" in info


def test_info_on_a_folder_without_a_bundle(tmp_path, capsys):
    code, _, err = run_cli(["info", str(tmp_path)], capsys)
    assert_one_error_line(code, err, "missing model_metadata.json")


@pytest.mark.parametrize("command", ["predict", "listen"])
def test_help_prints_percent_signs_once(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert "70%" in out and "%%" not in out


def test_a_sigterm_stops_the_worker_processes_too():
    # Python's default SIGTERM leaves joblib's workers orphaned, computing the queued jobs (a killed training's ran
    # on for 40 minutes); within sigterm_exits, as in every ser command, it unwinds and they stop with it.
    import time

    import psutil

    code = ("import time\nfrom ser_lib.cli import sigterm_exits\nfrom ser_lib.workers import run_jobs\n"
            "with sigterm_exits():\n    for _ in run_jobs(time.sleep, [(60,)] * 4, n_jobs=2):\n        pass\n")
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline, workers = time.monotonic() + 60, []
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = [child for child in psutil.Process(process.pid).children(recursive=True)
                   if "LokyProcess" in " ".join(child.cmdline())]
    assert len(workers) == 2, "the job's two worker processes never started"
    time.sleep(1)  # each in its 60 s job
    process.terminate()
    assert process.wait(timeout=30) == 143
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"{len(alive)} worker processes outlived the SIGTERM"
