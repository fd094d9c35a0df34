# Packaging, deployment and infrastructure checks; included by the Makefile, whose variables
# (PYTHON, VENV, BIN, STAMP) it uses. docs/deploy.md walks through the deployment targets.

# Included before the Makefile's own targets: keep whatever would have been the default goal.
INFRA_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

TF_DIR := infra/terraform
TERRAFORM ?= terraform
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# checkov lives in its own virtualenv: it pins its own (older) python-hcl2 and friends, which
# would fight the project's. Installing it takes about 40 s on a fresh machine.
CHECKOV_REQUIREMENTS := infra/checkov-requirements.txt

.PHONY: package deploy deploy-secrets infra-check terraform-fmt checkov provider-schema \
	google-account-key

## Build dist/<function>.zip for every function (deterministic: same sources, same bytes).
package: $(STAMP)
	$(BIN)/python -m devtools.package --out dist

## First deployment only: enable the APIs and create the empty secrets, so that their values
## can be added before the functions that read them at start (docs/deploy.md).
deploy-secrets: package
	$(TERRAFORM) -chdir=$(TF_DIR) init -input=false
	$(TERRAFORM) -chdir=$(TF_DIR) apply -target=google_secret_manager_secret.secret

## Package and apply: builds, uploads and (re)deploys what changed. Refused first if the TLINK
## receiver would have no protection (devtools/deploy_check.py says what to set).
deploy: package
	$(BIN)/python -m devtools.deploy_check $(TF_DIR)
	$(TERRAFORM) -chdir=$(TF_DIR) init -input=false
	$(TERRAFORM) -chdir=$(TF_DIR) apply

## The key of a further Google account (`make -s google-account-key ACCOUNT=<username>`), as the
## code derives it (docs/decisions/0004): for google_account_keys, or the secret google-secrets-<key>.
google-account-key: $(STAMP)
	@test -n "$(ACCOUNT)" || { echo "usage: make -s google-account-key ACCOUNT=<username>" >&2; exit 2; }
	@$(BIN)/python -c 'import sys; from shared.sources.google.layout import account_key; print(account_key(sys.argv[1]))' "$(ACCOUNT)"

## Static checks of the Terraform: formatting and checkov (part of `make test`). Without
## Terraform both are skipped with a notice (checkov also needs the network to install): a
## newcomer's `make test` runs everything else. With CI set, a missing Terraform fails.
ifeq ($(shell command -v $(TERRAFORM))$(CI),)
infra-check:
	@echo "*** make test: terraform is not installed: SKIPPING the infra checks (terraform fmt, checkov)." >&2
	@echo "*** Install it (https://developer.hashicorp.com/terraform/install) to run them; checkov needs network access." >&2
else
infra-check: terraform-fmt checkov
endif

terraform-fmt:
	@command -v $(TERRAFORM) >/dev/null || { echo "infra-check: terraform is not installed (https://developer.hashicorp.com/terraform/install)" >&2; exit 1; }
	$(TERRAFORM) fmt -check -recursive -diff $(TF_DIR)

$(CHECKOV_STAMP): $(CHECKOV_REQUIREMENTS)
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(CHECKOV_REQUIREMENTS)
	touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --config-file $(TF_DIR)/.checkov.yaml --directory $(TF_DIR)

## The providers' schemas for tests/infra/test_terraform_schema.py (part of `make test`, needs no
## Terraform): HashiCorp's CDKTF bindings, downloaded once (49 MB, a few seconds), never
## installed, checked against the sha256 pinned in infra/provider-schema-requirements.txt.
PROVIDER_SCHEMA_REQUIREMENTS := infra/provider-schema-requirements.txt
PROVIDER_SCHEMA_DIR := .cache/provider-schema
PROVIDER_SCHEMA_STAMP := $(PROVIDER_SCHEMA_DIR)/.downloaded

$(PROVIDER_SCHEMA_STAMP): $(PROVIDER_SCHEMA_REQUIREMENTS) | $(STAMP)
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps \
		--only-binary=:all: --require-hashes -r $(PROVIDER_SCHEMA_REQUIREMENTS) -d $(PROVIDER_SCHEMA_DIR)
	touch $(PROVIDER_SCHEMA_STAMP)

provider-schema: $(PROVIDER_SCHEMA_STAMP)

.DEFAULT_GOAL := $(INFRA_SAVED_DEFAULT_GOAL)
