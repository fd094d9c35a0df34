# The two commands a newcomer needs: `make run` and `make test`. Both build the virtualenv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

include infra/infra.mk

.PHONY: run demo test lint typecheck format venv clean protos secret secrets

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

## Run the whole product locally: Firestore emulator, the four functions, the scheduler loop.
## Data is kept in LOCAL_DATA_DIR (.local-data/) between runs; `make run RESET=1` starts empty.
run: $(STAMP)
	$(BIN)/python -m devtools.run $(if $(filter 1 true yes,$(RESET)),--reset)

## A first look without any vendor account (a DEMO, local only): the stack of `make run` with
## simulated Google, Smartcar and TLINK vendors and a Traccar stand-in printing each position.
## Its own folder (DEMO_DIR, .local/demo/, emptied at each start) and ports (8180.., 8190).
demo: $(STAMP)
	$(BIN)/python -m devtools.demo

## Local secrets (SECRETS_DIR, same names as Secret Manager): `make secret NAME=<name>` adds a
## version (value from stdin or a prompt that does not echo); `make secrets` lists names and
## versions, never values.
secret: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make secret NAME=<secret name>  (make secrets lists them)" >&2; exit 2; }
	@$(BIN)/python -m devtools.secrets set "$(NAME)"

secrets: $(STAMP)
	@$(BIN)/python -m devtools.secrets list

## Lint, type-check and test everything (needs Java 17 and the Firestore emulator; see README).
test: $(STAMP) lint typecheck infra-check provider-schema browser
	@$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests: failing" >&2; fi; \
	exit $$status

## Debian's Chromium for the status page's browser test: installed in CI (root, fresh clone);
## elsewhere the test is skipped until `apt-get install chromium chromium-driver`.
.PHONY: browser
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$CI" = true ]; then apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "make test: no chromium/chromedriver: the browser test will be skipped"; fi

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

## Schemathesis, every phase, 300 examples per operation, against `make run` (API_TOKEN, FUZZ_URL).
.PHONY: fuzz
fuzz: $(STAMP)
	$(BIN)/python -m devtools.fuzz --max-examples 300

## Benchmarks (cold start, webhook ingest, sync cost, decryption) into bench/RESULTS.md.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m bench
