# diffexplain — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FORBIDDEN := ^(torchvision|torch-fidelity|nvidia-)

.PHONY: help install lint test test-slow demo bench world slurm-example evidence clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

install: ## Create .venv and install diffexplain (editable) with the pinned CPU torch
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c constraints.txt -e ".[dev]"
	@if $(PY) -m pip list 2>/dev/null | grep -iE '$(FORBIDDEN)'; then echo "error: packages above must not be installed (they break this torch)"; exit 1; fi
	@$(PY) -c "import torch; print('torch', torch.__version__)"

lint: ## Check the code with ruff (configured in pyproject.toml)
	$(VENV)/bin/ruff check src tests benchmarks run.py

test: ## Run the fast test suite
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(VENV)/bin/pytest -q

test-slow: ## Run the slow tests (long trainings and measurements)
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(VENV)/bin/pytest -q -m slow

demo: ## DF-RISE and DF-CAM x 2 similarities on the Shapes model, evaluated against random, then the sweep's report
	HF_HUB_OFFLINE=1 $(PY) run.py -m experiment=demo

slurm-example: ## Print the SLURM settings of a paper-scale sweep (no submission): edit conf/hydra/launcher/slurm.yaml
	@HF_HUB_OFFLINE=1 $(PY) -m diffexplain.launcher hydra.launcher.partition=gpu model=sd15 runner=gpu \
		data=coco_captions data.prompt_file=captions.txt
	@echo "# submit: $(PY) run.py -m hydra/launcher=slurm hydra.launcher.partition=gpu model=sd15 runner=gpu \\"
	@echo "#   data=coco_captions data.prompt_file=captions.txt explainer=rise,cam similarity=ssim,fid"

EVIDENCE ?= outputs/evidence
evidence: ## Regenerate the README's evidence table (outputs/evidence/report.md) and the held-out check
	for e in evidence evidence_rise evidence_rise_estimator evidence_rise_final evidence_cam; do \
		HF_HUB_OFFLINE=1 $(PY) run.py -m experiment=$$e hydra.sweep.dir=$(EVIDENCE)/$$e logger=none || exit 1; done
	HF_HUB_OFFLINE=1 $(PY) run.py pipeline=report sweep_dir=$(EVIDENCE) logger=none
	HF_HUB_OFFLINE=1 $(PY) run.py -m experiment=evidence_heldout hydra.sweep.dir=$(EVIDENCE)-heldout logger=none

world: ## Train the Shapes world model and classifier into models/ (resumable; ~25 min on 2 CPU cores)
	HF_HUB_OFFLINE=1 $(PY) run.py pipeline=train_world logger=none

clean: ## Remove outputs, caches and build leftovers (keeps .venv and models/)
	rm -rf outputs multirun wandb .pytest_cache src/*.egg-info
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

bench: ## Run the benchmarks (JSON under benchmarks/results/)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_rise.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_cross_attention.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_transformers.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_evaluate.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_outputs.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_errors.py
