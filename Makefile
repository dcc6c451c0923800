# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The whole tested environment, exact versions (`make lock` refreshes it); requirements.txt is the
# loose list for installing ser_lib into an environment of your own.
LOCK := requirements.lock

.PHONY: demo test install bench lock readme-charts

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded synthetic demo corpus (offline): the notebook, headless.
demo: $(STAMP)
	$(VENV)/bin/papermill speech_emotion_recognition.ipynb speech_emotion_recognition.executed.ipynb \
		-p DATA_SOURCE demo --cwd . --progress-bar
	@echo "Executed notebook: speech_emotion_recognition.executed.ipynb; see charts/, outputs/, artifacts/"

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_features.py

# Resolve requirements.txt again to the newest releases, for every platform and Python >= 3.11
# (uv's universal resolution); then run `make demo test` before committing the new lock.
lock: $(STAMP)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile requirements.txt --universal --python-version 3.11 --upgrade --quiet \
		--custom-compile-command "make lock" -o $(LOCK)

# The README's charts: the notebook on the real RAVDESS actors in ../shared/data/ravdess_dev (about 7 min).
readme-charts: $(STAMP)
	$(PY) docs/readme_charts.py
