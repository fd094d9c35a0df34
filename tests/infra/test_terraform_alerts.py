"""Issue 20, point 2: Cloud Monitoring mails the incidents the bridge alerts on itself and any
function error to the user's address; a budget alert when a billing account is given."""

from __future__ import annotations

import inspect

from shared import alerts, traccar_status
from tests.infra.hcl import Terraform, block, expression


def test_each_incident_the_code_opens_has_a_log_based_policy(terraform: Terraform) -> None:
    names = {*alerts.OWN_ALERTS, traccar_status.TRACCAR_DOWN}
    assert set(terraform.locals["incident_policies"]) == names
    # What the policies match is what the code logs when an alert opens.
    for module in (alerts, traccar_status):
        assert '"alert opened' in inspect.getsource(module)
    policy = terraform.resource("google_monitoring_alert_policy", "incident")
    assert "local.alerting" in expression(policy["for_each"])
    condition = block(block(policy, "conditions"), "condition_matched_log")
    assert 'jsonPayload.message:"alert opened"' in condition["filter"]
    assert "severity=ERROR" in condition["filter"]
    assert "jsonPayload.alert" in condition["filter"]
    # A log-based policy must say how often it may notify.
    assert "notification_rate_limit" in block(policy, "alert_strategy")


def test_function_errors_are_alerted_apart_from_the_incidents(terraform: Terraform) -> None:
    policy = terraform.resource("google_monitoring_alert_policy", "function_errors")
    condition = block(block(policy, "conditions"), "condition_matched_log")
    assert "severity>=ERROR" in condition["filter"]
    assert "NOT jsonPayload.message" in condition["filter"]


def test_alerts_go_to_the_users_email_only_when_given(terraform: Terraform) -> None:
    assert terraform.variables["alert_email"]["default"] == ""
    channel = terraform.resource("google_monitoring_notification_channel", "email")
    assert channel["type"] == "email"
    assert channel["labels"]["email_address"] == "${var.alert_email}"
    assert "local.alerting" in expression(channel["count"])
    assert 'var.alert_email != ""' in expression(terraform.locals["alerting"])


def test_a_budget_exists_only_with_a_billing_account(terraform: Terraform) -> None:
    assert terraform.variables["billing_account_id"]["default"] == ""
    budget = terraform.resource("google_billing_budget", "monthly")
    assert 'var.billing_account_id != ""' in expression(budget["count"])
    assert budget["billing_account"] == "${var.billing_account_id}"
    services = expression(terraform.locals["services"])
    assert '"billingbudgets.googleapis.com"' in services
    assert '"monitoring.googleapis.com"' in services


def test_checkers_of_rotated_secrets_may_list_their_versions(terraform: Terraform) -> None:
    role = terraform.resource("google_project_iam_custom_role", "secret_version_lister")
    assert role["permissions"] == ["secretmanager.versions.list"]
    listers = terraform.locals["secret_listers"]
    assert listers == {
        "api": ["api-token", "traccar-command-key"],
        "webhooks": ["tlink-path-token", "tlink-webhook-secret"],
    }
    for function, secrets in listers.items():
        assert set(secrets) <= set(terraform.locals["secret_readers"][function]), function
