# xmask3d: `make demo` runs the whole pipeline, `make test` runs the test suite.
# Both create .venv on first use and install the project with torch pinned (constraints.txt),
# so pip never pulls a CUDA build of torch on a CPU machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-stamp
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install test demo bench checkpoint clean lint browser

install: $(STAMP) browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[test,train,view]"
	touch $(STAMP)

# Debian's chromium for the viewer's browser test (tests/viewer/test_browser.py); never fails the
# build: without root or apt-get that test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the viewer's browser test"; \
	    apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
	    echo "chromium could not be installed: the browser test will be skipped"; \
	  else echo "no chromium and no root apt-get: the viewer's browser test will be skipped"; fi; }

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: install
	$(VENV)/bin/xmask3d demo --out runs/demo

bench: install
	$(PY) -m benchmarks --out docs --jobs 2

# The bundled checkpoint: the CPU recipe of docs/training.md (1,100 steps of 4 views, 1 thread) on
# 288 generated training rooms, 30 % of them studios, with per-room colour casts.
CKPT_RUN   ?= runs/checkpoint
CKPT_SYNTH ?= --scenes 360 --views 10 --seed 0 --studio 0.3 --color-cast 0.3
checkpoint: install
	$(VENV)/bin/xmask3d synth --out $(CKPT_RUN)/data $(CKPT_SYNTH) --overwrite --no-progress
	$(VENV)/bin/xmask3d train --config tiny/scannet_b15n4 --out $(CKPT_RUN)/train --max-steps 1100 \
		--set data.root=$(CKPT_RUN)/data --set data.loop=2 --set data.select_fraction=0 \
		--set train.eval_every=0 --set train.seed=0 --set train.threads=1 --no-progress
	$(VENV)/bin/xmask3d eval --ckpt $(CKPT_RUN)/train/last.pt --out $(CKPT_RUN)/eval --no-progress
	$(PY) -c "from xmask3d.engine.checkpoint import export_model_checkpoint as e; \
		e('$(CKPT_RUN)/train/last.pt', 'src/xmask3d/resources/tiny_synthetic.pt')"

lint: install
	$(PY) -m ruff check src tests

clean:
	rm -rf $(VENV) runs .pytest_cache build *.egg-info src/*.egg-info
