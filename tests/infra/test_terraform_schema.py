"""Every `resource` and `data` block of infra/terraform (and the `provider` block's own settings)
against the provider's schema: no unknown argument or nested block (a typo, or one the pinned
provider removed), none required missing, blocks written as blocks. `terraform validate` would
say the same, but needs the provider, which cannot be downloaded here nor in CI; the schema comes
from HashiCorp's CDKTF bindings instead (tests/infra/provider_schema.py says how). Value types and
cross-argument rules (conflicts_with, exactly_one_of) are not checked."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.infra.hcl import TF_DIR
from tests.infra.provider_schema import (
    REFETCH,
    Declared,
    ProviderSchema,
    check,
    declared,
    load,
    required_providers,
    requirements,
)

# Providers infra/terraform may use without a schema to check them against: source → why not.
# versions.tf declares hashicorp/google only. HashiCorp publishes bindings for google-beta
# (cdktf-cdktf-provider-google-beta, same versions), random and archive too: a provider added
# to versions.tf gets its bindings' line in infra/provider-schema-requirements.txt, or a line
# here saying why it cannot.
UNCHECKED_PROVIDERS: dict[str, str] = {}


@pytest.fixture(scope="session")
def schemas() -> dict[str, ProviderSchema]:
    """Provider source → its schema, from the wheels `make provider-schema` downloaded."""
    found = {}
    for requirement in requirements():
        if not requirement.wheel.exists():
            message = f"{requirement.wheel} is missing: {REFETCH}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        schema = load(requirement)
        found[schema.source] = schema
    return found


def tf_files() -> list[Path]:
    return sorted(TF_DIR.glob("*.tf"))


def problems_in(text: str, schemas: dict[str, ProviderSchema]) -> list[str]:
    """What the check says of one .tf file's text (every block served by hashicorp/google)."""
    return [
        problem
        for item in declared(Path("example.tf"), text)
        for problem in check(item, schemas["hashicorp/google"])
    ]


def test_every_resource_and_data_block_matches_the_provider_schema(
    schemas: dict[str, ProviderSchema],
) -> None:
    sources = required_providers(tf_files())
    items: list[Declared] = [item for path in tf_files() for item in declared(path)]
    problems = []
    for item in items:
        source = sources.get(item.provider, f"hashicorp/{item.provider}")
        if source in schemas:
            problems.extend(check(item, schemas[source]))
        elif source not in UNCHECKED_PROVIDERS:
            problems.append(
                f"{item.file}: {item.address}: provider {item.provider} ({source}) has no schema"
                " to check against: add its CDKTF bindings to"
                " infra/provider-schema-requirements.txt, or list it in UNCHECKED_PROVIDERS"
            )
    assert not problems, "\n".join(problems)
    # The check ran over the real configuration, data sources and provider settings included.
    assert {item.mode for item in items} == {"resource", "data", "provider"}
    assert len(items) > 30


def test_every_declared_provider_is_checked_or_listed_with_a_reason(
    schemas: dict[str, ProviderSchema],
) -> None:
    declared_sources = required_providers(tf_files())
    for local, source in declared_sources.items():
        assert source in schemas or UNCHECKED_PROVIDERS.get(source), (
            f"versions.tf: provider {local} ({source}): no schema and no reason in"
            " UNCHECKED_PROVIDERS"
        )
    for source in UNCHECKED_PROVIDERS:
        assert source in declared_sources.values(), f"{source}: not used any more"


def test_the_bindings_are_of_the_provider_version_versions_tf_pins(
    schemas: dict[str, ProviderSchema],
) -> None:
    versions = (TF_DIR / "versions.tf").read_text()
    for source, schema in schemas.items():
        pin = re.search(rf'source\s*=\s*"{source}"\s*\n\s*version\s*=\s*"=\s*([^"]+)"', versions)
        assert pin, f"versions.tf pins no exact version of {source}"
        assert pin.group(1) == schema.version, (
            f"versions.tf pins {source} {pin.group(1)}; the bindings in"
            f" infra/provider-schema-requirements.txt are of {schema.version}: bump them together"
        )


def test_a_misspelt_argument_is_reported_with_file_resource_and_argument(
    schemas: dict[str, ProviderSchema],
) -> None:
    problems = problems_in(
        """
        resource "google_service_account" "build" {
          account_id   = "builder"
          display_nme  = "Builds the functions"
        }
        """,
        schemas,
    )
    assert problems == [
        "example.tf: google_service_account.build: unknown argument `display_nme`"
        " (did you mean `display_name`?)"
    ]


def test_a_correct_resource_passes(schemas: dict[str, ProviderSchema]) -> None:
    problems = problems_in(
        """
        resource "google_service_account" "build" {
          account_id   = "builder"
          display_name = "Builds the functions"
        }

        resource "google_project_iam_custom_role" "none" {
          role_id     = "nothing"
          title       = "Nothing"
          permissions = [] # an argument's value, not an empty run of blocks
        }
        """,
        schemas,
    )
    assert problems == []


def test_misspelt_names_in_nested_blocks_and_data_sources_are_reported(
    schemas: dict[str, ProviderSchema],
) -> None:
    problems = problems_in(
        """
        resource "google_cloud_scheduler_job" "job" {
          name = "job"
          http_target {
            uri         = "https://example.com"
            htp_method  = "POST"
            oidc_token {
              service_account_email = "a@b.iam.gserviceaccount.com"
            }
          }
          retry_konfig {
            retry_count = 1
          }
        }

        data "google_project" "this" {
          project_idd = "p"
        }

        data "google_projekt" "this" {}
        """,
        schemas,
    )
    assert problems == [
        "example.tf: google_cloud_scheduler_job.job.http_target: unknown argument `htp_method`"
        " (did you mean `http_method`?)",
        "example.tf: google_cloud_scheduler_job.job: unknown argument `retry_konfig`"
        " (did you mean `retry_config`?)",
        "example.tf: data.google_project.this: unknown argument `project_idd`"
        " (did you mean `project_id`?)",
        "example.tf: data.google_projekt.this: unknown hashicorp/google data source"
        " `google_projekt` (did you mean `google_project`?)",
    ]


def test_missing_required_arguments_and_blocks_are_reported(
    schemas: dict[str, ProviderSchema],
) -> None:
    problems = problems_in(
        """
        resource "google_storage_bucket_object" "zip" {
          name = "f.zip"
        }

        resource "google_cloudfunctions2_function" "f" {
          name     = "f"
          location = "europe-west1"
          service_config {
            secret_environment_variables {
              key     = "TOKEN"
              secret  = "token"
              version = "latest"
            }
          }
        }
        """,
        schemas,
    )
    assert problems == [
        "example.tf: google_storage_bucket_object.zip: missing required argument `bucket`",
        "example.tf: google_cloudfunctions2_function.f.service_config.secret_environment_variables:"
        " missing required argument `project_id`",
    ]


def test_blocks_and_arguments_must_be_written_as_such(schemas: dict[str, ProviderSchema]) -> None:
    problems = problems_in(
        """
        resource "google_cloud_scheduler_job" "job" {
          name         = "job"
          retry_config = { retry_count = 1 }
          paused {
          }
          http_target {
            uri = "https://example.com/a"
          }
          http_target {
            uri = "https://example.com/b"
          }
        }
        """,
        schemas,
    )
    assert problems == [
        "example.tf: google_cloud_scheduler_job.job: `retry_config` is a block, written as an"
        " argument (`retry_config =`)",
        "example.tf: google_cloud_scheduler_job.job: `paused` is an argument, written as a block",
        "example.tf: google_cloud_scheduler_job.job: at most one `http_target` block",
    ]


def test_meta_arguments_and_dynamic_blocks_are_understood(
    schemas: dict[str, ProviderSchema],
) -> None:
    problems = problems_in(
        """
        resource "google_firestore_index" "composite" {
          for_each   = local.indexes
          provider   = google.other
          depends_on = [google_project_service.enabled]
          collection = each.value.collection

          dynamic "fields" {
            for_each = each.value.fields
            iterator = field
            content {
              field_path = field.value.path
              order      = field.value.order
            }
          }

          lifecycle {
            create_before_destroy = true
            ignore_changes        = [fields, query_scope]
            precondition {
              condition     = length(each.value.fields) > 1
              error_message = "A composite index has two fields or more."
            }
          }
        }

        data "google_project" "this" {
          count = 1
          lifecycle {
            postcondition {
              condition     = self.number != ""
              error_message = "No project."
            }
          }
        }
        """,
        schemas,
    )
    assert problems == []


def test_mistakes_around_meta_arguments_and_dynamic_blocks_are_reported(
    schemas: dict[str, ProviderSchema],
) -> None:
    problems = problems_in(
        """
        resource "google_firestore_index" "composite" {
          count      = 1
          for_each   = local.indexes
          collection = "c"

          dynamic "field" {
            for_each = []
            content {
              field_path = "a"
            }
          }
          dynamic "fields" {
            for_each = []
            content {
              field_pat = "a"
            }
          }

          lifecycle {
            prevent_destroi = true
            ignore_changes  = [colection]
          }
        }
        """,
        schemas,
    )
    assert problems == [
        "example.tf: google_firestore_index.composite: count and for_each together",
        "example.tf: google_firestore_index.composite: lifecycle: unknown argument"
        " `prevent_destroi` (did you mean `prevent_destroy`?)",
        "example.tf: google_firestore_index.composite: lifecycle ignore_changes: unknown"
        " argument `colection` (did you mean `collection`?)",
        "example.tf: google_firestore_index.composite: unknown nested block (dynamic) `field`"
        " (did you mean `fields`?)",
        "example.tf: google_firestore_index.composite.fields: unknown argument `field_pat`"
        " (did you mean `field_path`?)",
    ]


def test_a_misspelt_provider_setting_is_reported(schemas: dict[str, ProviderSchema]) -> None:
    problems = problems_in(
        """
        provider "google" {
          project        = "p"
          default_lables = { app = "traccar-bridge" }
        }
        """,
        schemas,
    )
    assert problems == [
        "example.tf: provider.google: unknown argument `default_lables`"
        " (did you mean `default_labels`?)"
    ]


def test_arguments_whose_camel_case_does_not_round_trip_are_known(
    schemas: dict[str, ProviderSchema],
) -> None:
    """detect_md5hash is detectMd5Hash in the bindings: the Terraform name comes from the docs
    link each property carries, not from undoing the camelCase (which gives detect_md5_hash)."""
    problems = problems_in(
        """
        resource "google_storage_bucket_object" "zip" {
          bucket         = "b"
          name           = "f.zip"
          source         = "dist/f.zip"
          detect_md5hash = "x"
        }
        """,
        schemas,
    )
    assert problems == []
