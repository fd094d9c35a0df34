# The two commands a newcomer needs: `make run` and `make test`. Both build the virtualenv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

include infra/infra.mk

.PHONY: run test lint typecheck format venv clean protos

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

## Run the whole product locally: Firestore emulator, the four functions, the scheduler loop.
run: $(STAMP)
	$(BIN)/python -m devtools.run

## Lint, type-check and test everything (needs Java 17 and the Firestore emulator; see README).
test: $(STAMP) lint typecheck infra-check
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests: failing" >&2; fi; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Type-check shared/, functions/ and devtools/ (settings in pyproject.toml's [tool.mypy]).
typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dist

## Regenerate the checked-in protobuf modules of the Google source from their .proto files.
PROTO_DIR := shared/sources/google/proto
protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. $(PROTO_DIR)/*.proto

## Benchmarks (cold start, webhook ingest, sync cost, decryption) into bench/RESULTS.md.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m bench
