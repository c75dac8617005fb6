# Every target bootstraps what it needs from nothing: a Python 3.11 venv, torch==2.13.0, the package
# (editable) and the generated protobuf code.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/ltx/v1/*.proto)
GEN_STAMP := ltx/v1/.generated

.PHONY: setup proto postgres run test test-slow test-unit bench lint clean

setup: $(STAMP) $(GEN_STAMP)

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The generated code must exist before the editable install so that the `ltx` package is mapped.
# mypy-protobuf writes typed stubs (.pyi) for the messages and the gRPC stubs, so mypy sees every field.
$(GEN_STAMP): $(PROTOS) | $(VENV)/bin/python
	$(BIN)/pip install --quiet 'grpcio-tools==1.81.*' 'protobuf>=5.29,<7' 'mypy-protobuf>=3.6'
	mkdir -p ltx/v1
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --grpc_python_out=. \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=. \
		--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=. $(PROTOS)
	touch ltx/__init__.py ltx/v1/__init__.py $@

$(STAMP): pyproject.toml $(GEN_STAMP) | $(VENV)/bin/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

proto: $(GEN_STAMP)

# Runs the service on its embedded default: the tiny preset, in-process engine, gRPC on :50051.
run: setup
	$(BIN)/ltx-serve

# The integration tests start a real PostgreSQL; install it where the image lacks it (as root, Debian).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } || \
		echo "PostgreSQL not installed: its tests will be skipped"

test: setup postgres
	$(BIN)/python -m pytest -q

# The suites marked slow (deselected by `make test`).
test-slow: setup
	$(BIN)/python -m pytest -q -m slow

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

# The CPU benchmarks, one after the other (bench/README.md has their results; transformer_step needs a GPU).
bench: setup
	$(BIN)/python -m bench.service_overhead
	$(BIN)/python -m bench.triton_overhead
	$(BIN)/python -m bench.two_pass_vs_single
	$(BIN)/python -m bench.long_video_memory

# Lint: ruff (rules in pyproject.toml), the formatting check, and mypy (which sees protobuf through the
# generated stubs: a misspelt field fails it).
LINT_PATHS := service export tests bench model_repository
lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) ltx var .pytest_cache
