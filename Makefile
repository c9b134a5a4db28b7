# dmmp-rec: `make demo` runs the main job, `make test` the whole suite. Both create .venv and
# install the pinned stack first; a second run installs nothing (the stamp file is up to date).
#
# DEVICE picks the fbgemm build: cpu (fbgemm-gpu-cpu) when no NVIDIA GPU answers nvidia-smi,
# cuda (fbgemm-gpu) when one does. Override with `make test DEVICE=cpu`. Switching an existing
# .venv is safe both ways: the other fbgemm build is removed first (both install into the same
# fbgemm_gpu/ folder), and DEVICE=cuda replaces a CPU-only torch by the CUDA one, or stops.
# What a GPU host needs (driver >= 580, compute capability >= 7.5): README, "GPU hosts".

PYTHON ?= python3
VENV ?= .venv
DEVICE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
TORCH_VERSION := 2.13.0
TORCHREC_VERSION := 1.8.0
FBGEMM_VERSION := 1.8.0
FBGEMM_NAME_cpu := fbgemm-gpu-cpu
FBGEMM_NAME_cuda := fbgemm-gpu
FBGEMM_OTHER_cpu := $(FBGEMM_NAME_cuda)
FBGEMM_OTHER_cuda := $(FBGEMM_NAME_cpu)
# PyPI's torch 2.13.0 is this CUDA build; the same wheel with its local tag, from PyTorch's index,
# is how DEVICE=cuda replaces a CPU-only torch (a +cpu wheel satisfies ==2.13.0 for pip)
TORCH_CUDA_TAG := cu130
TORCH_CUDA_INDEX := https://download.pytorch.org/whl/$(TORCH_CUDA_TAG)
STAMP ?= $(VENV)/.installed-$(DEVICE)
PY ?= $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
TORCH_HAS_CUDA := $(PY) -c 'import sys, torch; sys.exit(torch.version.cuda is None)'
DEMO_CONFIG ?= configs/synthetic.yaml

.PHONY: install demo test lint format bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@case "$(DEVICE)" in cpu|cuda) ;; *) echo "DEVICE must be cpu or cuda, got '$(DEVICE)'"; exit 2;; esac
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the pinned stack for DEVICE=$(DEVICE) into $(VENV)"
	# the other fbgemm build shares the fbgemm_gpu/ folder: remove both, then install one cleanly
	@if $(PIP) show $(FBGEMM_OTHER_$(DEVICE)) >/dev/null 2>&1; then \
	  echo "removing $(FBGEMM_OTHER_$(DEVICE)) (DEVICE=$(DEVICE) uses $(FBGEMM_NAME_$(DEVICE)))"; \
	  $(PIP) uninstall -y $(FBGEMM_OTHER_$(DEVICE)) $(FBGEMM_NAME_$(DEVICE)); fi
	# torch first and pinned, so nothing later can pull another (CUDA) build on a CPU machine
	$(PIP) install torch==$(TORCH_VERSION) $(FBGEMM_NAME_$(DEVICE))==$(FBGEMM_VERSION)
	# DEVICE=cuda: a CPU-only torch (torch.version.cuda is None) is replaced by the CUDA build
	@if [ "$(DEVICE)" = cuda ] && ! $(TORCH_HAS_CUDA); then \
	  echo "replacing the CPU-only torch of $(VENV) by torch==$(TORCH_VERSION)+$(TORCH_CUDA_TAG)"; \
	  $(PIP) uninstall -y torch; \
	  $(PIP) install --extra-index-url $(TORCH_CUDA_INDEX) torch==$(TORCH_VERSION)+$(TORCH_CUDA_TAG) \
	  || true; fi
	@if [ "$(DEVICE)" = cuda ] && ! $(TORCH_HAS_CUDA); then \
	  echo "DEVICE=cuda: the torch in $(VENV) has no CUDA (torch.version.cuda is None) even after reinstalling it from $(TORCH_CUDA_INDEX); install torch==$(TORCH_VERSION)+$(TORCH_CUDA_TAG) by hand or use DEVICE=cpu"; \
	  exit 1; fi
	# torchrec declares the CUDA fbgemm-gpu: install it alone, its other needs come from pyproject
	$(PIP) install --no-deps torchrec==$(TORCHREC_VERSION)
	$(PIP) install -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/dmmp-rec demo --config $(DEMO_CONFIG)

test: lint
	$(PY) -m pytest -q

# ruff (style, imports) and mypy (the type hints of dmmp_rec/, settings in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check dmmp_rec tests benchmarks launchers scripts
	$(VENV)/bin/ruff format --check dmmp_rec tests benchmarks launchers scripts
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format dmmp_rec tests benchmarks launchers scripts
	$(VENV)/bin/ruff check --fix dmmp_rec tests benchmarks launchers scripts

# Benchmarks (benchmarks/README.md): 16-21 min on 2 shared cores; writes benchmarks/results/latest.{json,md}
bench: $(STAMP)
	$(PY) -m benchmarks.run

# On a fresh CUDA machine, after `make test` (docs/training.md): plan, train 200 steps on every
# local GPU through torchx (every logged loss finite), kill a rank and resume, eval on the GPUs
# and the same checkpoint on the CPU (equal within tolerances), export, retrieve, benchmarks.
# Writes runs/gpu_check/gpu_check.json; exits non-zero if any step fails or passes its deadline.
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py --out runs/gpu_check

clean:
	rm -rf $(VENV) data runs .pytest_cache
