"""The Terraform of infra/terraform, parsed once per session."""

from __future__ import annotations

import pytest

from tests.infra.hcl import TF_DIR, Terraform, load


@pytest.fixture(scope="session")
def terraform() -> Terraform:
    return load(TF_DIR)
