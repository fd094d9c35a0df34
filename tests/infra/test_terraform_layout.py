"""What infra/terraform must hold: least privilege, the functions' settings, Firestore's TTL
policies and indexes, no secret values in state, references that resolve.

What the Terraform must match in the code (which function reads which secret, calls which
Cloud Scheduler method, which collections expire or need indexes) is in
test_terraform_matches_code.py."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import TypeAdapter

from shared.config import Settings
from tests.infra.hcl import (
    FUNCTION,
    TF_DIR,
    Terraform,
    block,
    environment_names,
    expression,
    secret_environment,
    service_config,
    setting_names,
)

FUNCTIONS = {"api", "sync_device", "refresh_devices", "webhooks"}
PUBLIC = {"api", "webhooks"}
PRIVATE = FUNCTIONS - PUBLIC
INVOKER_RESOURCES = (
    "google_cloud_run_service_iam_member",
    "google_cloud_run_service_iam_binding",
    "google_cloud_run_v2_service_iam_member",
    "google_cloud_run_v2_service_iam_binding",
    "google_cloudfunctions2_function_iam_member",
    "google_cloudfunctions2_function_iam_binding",
)
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
SCHEDULER_MEMBER = "serviceAccount:${google_service_account.scheduler.email}"
# The jitter slept before a locate is at most 60 s (Settings and variables.tf agree).
MAX_JITTER_SECONDS = 60
# OAuth, Nova, Traccar, Firestore and a Smartcar or TLINK pull on top of jitter and FCM wait.
RUN_OVERHEAD_SECONDS = 30


def upper_bound(terraform: Terraform, variable: str) -> int:
    """The `var.<name> <= N` bound of a variable's validation."""
    (validation,) = terraform.variables[variable]["validation"]
    match = re.search(rf"var\.{variable} <= (\d+)", validation["condition"])
    assert match, f"{variable}: no upper bound in its validation"
    return int(match.group(1))


def members(body: dict[str, Any]) -> set[str]:
    return {body["member"]} if "member" in body else set(body.get("members", []))


def invoked_function(body: dict[str, Any]) -> str:
    target = " ".join(str(body.get(key, "")) for key in ("service", "name", "cloud_function"))
    match = re.search(rf"{FUNCTION}\.(\w+)\.", target)
    assert match, f"invoker grant on something that is not one of the functions: {target}"
    return match.group(1)


def invoker_grants(terraform: Terraform) -> list[tuple[str, set[str]]]:
    """(function, members) of every invoker grant on a function's service."""
    return [
        (invoked_function(body), members(body))
        for kind in INVOKER_RESOURCES
        for body in terraform.of_type(kind).values()
    ]


def project_roles(terraform: Terraform) -> list[str]:
    return [body["role"] for body in terraform.of_type("google_project_iam_member").values()]


def test_provider_is_pinned_to_an_exact_version(terraform: Terraform) -> None:
    (settings,) = terraform.terraform
    assert settings["required_version"] == ">= 1.6"
    (providers,) = settings["required_providers"]
    google = providers["google"]
    assert google["source"] == "hashicorp/google"
    assert re.fullmatch(r"= \d+\.\d+\.\d+", google["version"]), google["version"]
    assert set(providers) == {"google"}


def test_terraform_is_split_by_concern() -> None:
    files = {path.name for path in TF_DIR.glob("*.tf")}
    assert {
        "versions.tf",
        "variables.tf",
        "outputs.tf",
        "apis.tf",
        "firestore.tf",
        "secrets.tf",
        "storage.tf",
        "functions.tf",
        "iam.tf",
        "scheduler.tf",
    } <= files
    assert (TF_DIR / "terraform.tfvars.example").is_file()


def test_the_four_functions_use_their_folder_entry_points(terraform: Terraform) -> None:
    assert set(terraform.of_type(FUNCTION)) == FUNCTIONS
    assert re.fullmatch(r"python3\d+", terraform.variables["python_runtime"]["default"])
    for function in FUNCTIONS:
        build = block(terraform.resource(FUNCTION, function), "build_config")
        assert build["entry_point"] == function
        assert expression(build["runtime"]) == "var.python_runtime"
        storage = block(block(build, "source"), "storage_source")
        assert f'google_storage_bucket_object.source["{function}"]' in storage["object"]


def test_each_function_runs_as_its_own_service_account(terraform: Terraform) -> None:
    accounts = {
        function: expression(service_config(terraform, function)["service_account_email"])
        for function in FUNCTIONS
    }
    for function, account in accounts.items():
        assert account == f'google_service_account.runtime["{function}"].email'
    assert len(set(accounts.values())) == len(FUNCTIONS)
    runtime = terraform.resource("google_service_account", "runtime")
    assert expression(runtime["for_each"]) == "local.functions"
    assert expression(terraform.locals["functions"]) == (
        'toset(["api", "sync_device", "refresh_devices", "webhooks"])'
    )


def test_every_function_sets_memory_timeout_and_concurrency(terraform: Terraform) -> None:
    for function in FUNCTIONS:
        config = service_config(terraform, function)
        assert re.fullmatch(r"\d+(M|Mi|G|Gi)", config["available_memory"]), function
        assert isinstance(config["timeout_seconds"], int), function
        assert config["max_instance_request_concurrency"] == 1, function
        assert isinstance(config["max_instance_count"], int), function


def test_the_function_lifetimes_python_counts_with_are_terraforms_timeouts(
    terraform: Terraform,
) -> None:
    """The sweep stops starting runs, and gives each run a lease, by its function's lifetime
    (`shared.models`): a Terraform timeout changed alone would make it count wrong."""
    from shared.models import (
        API_LIFETIME,
        REFRESH_DEVICES_LIFETIME,
        SYNC_DEVICE_LIFETIME,
        WEBHOOKS_LIFETIME,
    )

    lifetimes = {
        "api": API_LIFETIME,
        "sync_device": SYNC_DEVICE_LIFETIME,
        "refresh_devices": REFRESH_DEVICES_LIFETIME,
        "webhooks": WEBHOOKS_LIFETIME,
    }
    assert set(lifetimes) == set(FUNCTIONS)
    for function, lifetime in lifetimes.items():
        timeout = service_config(terraform, function)["timeout_seconds"]
        assert timeout == lifetime.total_seconds(), function


def test_sync_device_never_runs_two_locates_at_once(terraform: Terraform) -> None:
    from shared.pipeline import LEASE_DURATION

    config = service_config(terraform, "sync_device")
    assert config["max_instance_request_concurrency"] == 1
    assert config["max_instance_count"] == 1
    # Long enough for the jitter, the longest FCM wait the cloud allows and the rest of a run,
    # so the instance is never handed the next run while a session is live; shorter than the
    # lease, so a run never outlives its lease.
    for variable in ("auto_register_delta", "smart_tracking_delta"):
        assert upper_bound(terraform, variable) <= MAX_JITTER_SECONDS, variable
    fcm_wait = upper_bound(terraform, "fcm_timeout")
    settings_bound = max(getattr(m, "le", 0) for m in Settings.model_fields["fcm_timeout"].metadata)
    assert fcm_wait <= settings_bound
    needed = MAX_JITTER_SECONDS + fcm_wait + RUN_OVERHEAD_SECONDS
    assert config["timeout_seconds"] >= needed
    assert config["timeout_seconds"] < LEASE_DURATION.total_seconds()
    # A manual sync runs the same locate inside an api request.
    assert service_config(terraform, "api")["timeout_seconds"] >= fcm_wait + RUN_OVERHEAD_SECONDS


def test_every_environment_variable_is_a_setting(terraform: Terraform) -> None:
    known = setting_names()
    for function in FUNCTIONS:
        names = environment_names(terraform, function)
        names |= set(secret_environment(terraform, function))
        assert names <= known, f"{function}: not in shared.config.Settings: {names - known}"


# Deployed defaults that differ from the settings' on purpose: a deployed TLINK receiver wants
# its path token, a local one (tests, `make run`, which makes its own token) decides itself.
DEPLOYED_DEFAULTS = {"tlink_require_path_token": True}


def test_terraform_defaults_match_the_settings_defaults(terraform: Terraform) -> None:
    compared = 0
    for name, variable in terraform.variables.items():
        info = Settings.model_fields.get(name)
        if info is None or "default" not in variable or info.default is None:
            continue
        if name in DEPLOYED_DEFAULTS:
            assert variable["default"] == DEPLOYED_DEFAULTS[name], name
            continue
        # Read as Settings reads the environment: "https://x" is the URL https://x/.
        field_type = (
            Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        )
        assert TypeAdapter(field_type).validate_python(variable["default"]) == info.default, name
        compared += 1
    assert compared >= 25


def test_functions_use_the_cloud_adapters(terraform: Terraform) -> None:
    base = terraform.locals["base_environment"]
    assert base["SECRETS_BACKEND"] == "secret_manager"
    assert base["SCHEDULER_BACKEND"] == "cloud_scheduler"
    assert expression(base["GCP_PROJECT"]) == "var.project_id"
    assert expression(base["GCP_REGION"]) == "var.region"
    for function in FUNCTIONS:
        assert set(base) <= environment_names(terraform, function), function


def test_secret_environment_comes_from_secrets_the_function_may_read(
    terraform: Terraform,
) -> None:
    readers = terraform.locals["secret_readers"]
    assert secret_environment(terraform, "api")["API_TOKEN"] == {"api-token"}
    for function in FUNCTIONS:
        for key, secrets in secret_environment(terraform, function).items():
            assert secrets <= set(readers[function]), f"{function} cannot read {key}"
            if key == "NOTIFY_SMTP_PASS":
                assert secrets == {"smtp-password"}


def test_only_the_api_reads_the_api_token(terraform: Terraform) -> None:
    readers = terraform.locals["secret_readers"]
    assert {function for function, secrets in readers.items() if "api-token" in secrets} == {"api"}


def test_secrets_exist_without_versions_in_terraform(terraform: Terraform) -> None:
    secret = terraform.resource("google_secret_manager_secret", "secret")
    assert expression(secret["for_each"]) == "local.secrets"
    versions = [
        kind
        for kind in [*terraform.resources, *terraform.data]
        if kind.startswith("google_secret_manager_secret_version")
    ]
    assert versions == [], "a secret version would put its value in the state"


def test_secret_access_is_granted_per_secret_never_project_wide(terraform: Terraform) -> None:
    assert not any("secretmanager" in role for role in project_roles(terraform))
    for kind in ("google_project_iam_binding", "google_project_iam_policy"):
        assert not terraform.of_type(kind), f"{kind} is authoritative: it would drop grants"
    grants = terraform.of_type("google_secret_manager_secret_iam_member")
    # lister: the checkers of rotated credentials list versions (issue 20, rotation grace);
    # pruner: the Smartcar token secret's writers destroy its old disabled versions;
    # google_account_*: the further Google accounts' secrets (test_terraform_google_accounts.py).
    assert set(grants) == {
        "accessor",
        "rotator",
        "lister",
        "pruner",
        "google_account_accessor",
        "google_account_rotator",
    }
    for name, grant in grants.items():
        assert expression(grant["secret_id"]) == (
            "google_secret_manager_secret.google_account[each.value.key].id"
            if name.startswith("google_account_")
            else "google_secret_manager_secret.secret[each.value.secret].id"
        )
        assert grant["member"] == (
            "serviceAccount:${google_service_account.runtime[each.value.function].email}"
        )
    assert grants["accessor"]["role"] == "roles/secretmanager.secretAccessor"
    for table in ("secret_readers", "secret_writers"):
        for function, secrets in terraform.locals[table].items():
            assert function in FUNCTIONS, table
            assert set(secrets) <= set(terraform.locals["secrets"]), f"{table}[{function}]"
    rotation = terraform.resource("google_project_iam_custom_role", "secret_rotator")
    assert set(rotation["permissions"]) == {
        "secretmanager.versions.add",
        "secretmanager.versions.disable",
        "secretmanager.versions.list",
    }
    assert "google-secrets" in terraform.locals["secret_writers"]["api"]  # PUT /auth/secrets


def test_the_build_account_reads_the_function_sources_only(terraform: Terraform) -> None:
    build = "serviceAccount:${google_service_account.build.email}"
    grants = {
        name: body
        for name, body in terraform.of_type("google_project_iam_member").items()
        if body["member"] == build
    }
    assert set(grants) == {"build", "build_reads_staged_sources"}
    # Project-wide: the logs, and the gcf-artifacts repository Cloud Functions creates.
    assert expression(grants["build"]["for_each"]) == (
        'toset(["roles/artifactregistry.writer", "roles/logging.logWriter"])'
    )
    # Reading objects: the bucket Cloud Functions stages the sources in (it exists only after
    # the first deployment, hence a condition on its name rather than a bucket grant) ...
    staged = grants["build_reads_staged_sources"]
    assert staged["role"] == "roles/storage.objectViewer"
    (condition,) = staged["condition"]
    bucket = "projects/_/buckets/${local.functions_source_bucket}"
    assert condition["expression"] == (
        f'resource.name == "{bucket}" || resource.name.startsWith("{bucket}/")'
    )
    assert terraform.locals["functions_source_bucket"] == (
        "gcf-v2-sources-${data.google_project.current.number}-${var.region}"
    )
    # ... and our own bucket of zips, on that bucket.
    (on_bucket,) = terraform.of_type("google_storage_bucket_iam_member").values()
    assert expression(on_bucket["bucket"]) == "google_storage_bucket.sources.name"
    assert (on_bucket["role"], on_bucket["member"]) == ("roles/storage.objectViewer", build)
    # No storage role anywhere without a scope.
    for body in terraform.of_type("google_project_iam_member").values():
        if "storage" in str(body.get("role")) or "storage" in str(body.get("for_each")):
            assert "condition" in body, body
    # Every build waits for its read grants.
    for function in FUNCTIONS:
        waits = {expression(ref) for ref in terraform.resource(FUNCTION, function)["depends_on"]}
        for grant in (
            "google_project_iam_member.build",
            "google_project_iam_member.build_reads_staged_sources",
            "google_storage_bucket_iam_member.build_reads_sources",
        ):
            assert grant in waits, (function, grant)


def test_only_api_and_webhooks_are_public(terraform: Terraform) -> None:
    public = {function for function, who in invoker_grants(terraform) if who & PUBLIC_MEMBERS}
    assert public == PUBLIC
    for kind in ("google_cloudfunctions_function_iam_member", "google_cloud_run_v2_job_iam_member"):
        assert not terraform.of_type(kind)


def test_only_the_scheduler_account_invokes_the_scheduled_functions(
    terraform: Terraform,
) -> None:
    for function in PRIVATE:
        who = set().union(*(m for f, m in invoker_grants(terraform) if f == function))
        assert who == {SCHEDULER_MEMBER}, function
    scheduler_targets = {f for f, m in invoker_grants(terraform) if SCHEDULER_MEMBER in m}
    assert scheduler_targets == PRIVATE
    assert not any("invoker" in role for role in project_roles(terraform))


def test_private_functions_take_internal_traffic_only(terraform: Terraform) -> None:
    for function in PRIVATE:
        assert service_config(terraform, function)["ingress_settings"] == "ALLOW_INTERNAL_ONLY"


def test_job_managers_manage_jobs_and_act_as_the_scheduler_account_only(
    terraform: Terraform,
) -> None:
    managers = terraform.locals["job_managers"]
    assert "webhooks" not in managers
    role = terraform.resource("google_project_iam_custom_role", "scheduler_jobs")
    assert expression(role["for_each"]) == "local.job_managers"
    # One role per manager, made of exactly its table entry.
    assert (
        expression(role["permissions"])
        == '[for verb in each.value : "cloudscheduler.jobs.${verb}"]'
    )
    assert "${each.key}" in role["role_id"]
    for function, verbs in managers.items():
        assert "list" not in verbs
        # Running a job by hand: only the api, for Traccar's "locate now" command (issue 15).
        assert ("run" in verbs) == (function == "api")
    grant = terraform.resource("google_project_iam_member", "scheduler_jobs")
    assert expression(grant["for_each"]) == "local.job_managers"
    assert expression(grant["role"]) == (
        "google_project_iam_custom_role.scheduler_jobs[each.key].name"
    )
    assert grant["member"] == "serviceAccount:${google_service_account.runtime[each.key].email}"
    act_as = terraform.of_type("google_service_account_iam_member")
    assert len(act_as) == 1
    (grant,) = act_as.values()
    assert expression(grant["service_account_id"]) == "google_service_account.scheduler.name"
    assert grant["role"] == "roles/iam.serviceAccountUser"
    assert expression(grant["for_each"]) == "local.job_managers"
    assert not any(
        role.startswith(("roles/iam.", "roles/cloudscheduler.", "roles/owner", "roles/editor"))
        for role in project_roles(terraform)
    )


def test_refresh_job_calls_refresh_devices_hourly_with_an_oidc_token(
    terraform: Terraform,
) -> None:
    jobs = terraform.of_type("google_cloud_scheduler_job")
    assert set(jobs) == {"refresh_devices", "sweep_handoffs"}, "sync jobs are made at run time"
    job = jobs["refresh_devices"]
    assert terraform.variables["refresh_schedule"]["default"] == "0 * * * *"
    target = block(job, "http_target")
    uri = f"{FUNCTION}.refresh_devices.service_config[0].uri"
    assert expression(target["uri"]) == uri
    token = block(target, "oidc_token")
    assert expression(token["service_account_email"]) == "google_service_account.scheduler.email"
    assert expression(token["audience"]) == uri
    deadline = int(job["attempt_deadline"].removesuffix("s"))
    assert deadline > service_config(terraform, "refresh_devices")["timeout_seconds"]
    # A cold start or a transient error gets a retry, not a lost hour.
    retry = block(job, "retry_config")
    assert retry["retry_count"] >= 1
    assert int(retry["min_backoff_duration"].removesuffix("s")) >= 30


def cron_interval_minutes(schedule: str) -> int:
    """The longest gap, in minutes, between two runs of a cron schedule firing every hour."""
    minute, hour, day, month, weekday = schedule.split()
    assert (hour, day, month, weekday) == ("*", "*", "*", "*"), f"{schedule}: not every hour"
    if minute == "*":
        return 1
    if minute.startswith("*/"):
        step = int(minute.removeprefix("*/"))
        assert 60 % step == 0, f"{schedule}: uneven steps across the hour"
        return step
    minutes = sorted(int(part) for part in minute.split(","))
    return max(b - a for a, b in zip(minutes, [*minutes[1:], minutes[0] + 60], strict=True))


def test_the_sweep_job_calls_refresh_devices_sweep_only_at_most_every_5_minutes(
    terraform: Terraform,
) -> None:
    """Issue 16: a delivery handed off to a busy device and not delivered by its lease holder
    waits at most one sweep interval once the lease ends, webhook-only devices included."""
    job = terraform.resource("google_cloud_scheduler_job", "sweep_handoffs")
    assert expression(job["schedule"]) == "var.sweep_schedule"
    from shared.pipeline import PULL_LEASE_DURATION, WEBHOOK_LEASE_DURATION

    interval = cron_interval_minutes(terraform.variables["sweep_schedule"]["default"])
    assert interval <= 5
    # Behind a holder that died: its lease, then one sweep interval, within 5 minutes. A lease
    # outlives the function its run lives in, so a live run never loses it.
    for lease in (WEBHOOK_LEASE_DURATION, PULL_LEASE_DURATION):
        assert lease.total_seconds() + interval * 60 <= 5 * 60
    assert (
        WEBHOOK_LEASE_DURATION.total_seconds()
        > service_config(terraform, "webhooks")["timeout_seconds"]
    )
    assert (
        PULL_LEASE_DURATION.total_seconds()
        > service_config(terraform, "sync_device")["timeout_seconds"]
    )
    assert cron_interval_minutes("* * * * *") == 1  # the helper itself
    assert cron_interval_minutes("*/5 * * * *") == 5
    assert cron_interval_minutes("0,30 * * * *") == 30
    target = block(job, "http_target")
    uri = f"{FUNCTION}.refresh_devices.service_config[0].uri"
    assert target["uri"] == "${" + uri + "}/?sweep=only"
    assert target["http_method"] == "POST"
    token = block(target, "oidc_token")
    assert expression(token["service_account_email"]) == "google_service_account.scheduler.email"
    assert expression(token["audience"]) == uri  # Cloud Run checks the bare URL
    deadline = int(job["attempt_deadline"].removesuffix("s"))
    assert deadline > service_config(terraform, "refresh_devices")["timeout_seconds"]


def test_ttl_policies_are_on_expire_at(terraform: Terraform) -> None:
    ttl = terraform.resource("google_firestore_field", "ttl")
    assert expression(ttl["for_each"]) == "toset(local.ttl_collections)"
    assert expression(ttl["collection"]) == "each.key"
    assert ttl["field"] == "expire_at"
    assert "ttl_config" in ttl
    index = terraform.resource("google_firestore_index", "composite")
    assert expression(index["for_each"]) == "local.composite_indexes"


def test_firestore_is_the_default_native_database(terraform: Terraform) -> None:
    database = terraform.resource("google_firestore_database", "default")
    assert database["name"] == "(default)"
    assert database["type"] == "FIRESTORE_NATIVE"
    assert database["delete_protection_state"] == "DELETE_PROTECTION_ENABLED"


def test_function_zips_are_uploaded_under_their_md5(terraform: Terraform) -> None:
    zips = expression(terraform.locals["function_zips"])
    assert all(f'"{function}"' in zips for function in FUNCTIONS)
    source = terraform.resource("google_storage_bucket_object", "source")
    assert "filemd5(each.value)" in source["name"]
    bucket = terraform.resource("google_storage_bucket", "sources")
    assert bucket["uniform_bucket_level_access"] is True
    assert block(bucket, "versioning")["enabled"] is True


def test_outputs_give_the_urls_to_register(terraform: Terraform) -> None:
    outputs = {name: expression(body["value"]) for name, body in terraform.outputs.items()}
    assert outputs["api_url"] == f"{FUNCTION}.api.url"
    assert terraform.outputs["smartcar_webhook_url"]["value"].endswith("/smartcar")
    assert terraform.outputs["tlink_webhook_url"]["value"].endswith("/tlink")
    assert outputs["smartcar_redirect_uri"] == "local.smartcar_redirect_uri"
    assert outputs["sync_device_url"] == 'local.run_urls["sync_device"]'


def test_the_apis_the_functions_need_are_enabled(terraform: Terraform) -> None:
    services = expression(terraform.locals["services"])
    for api in (
        "cloudfunctions",
        "run",
        "cloudbuild",
        "artifactregistry",
        "firestore",
        "secretmanager",
        "cloudscheduler",
    ):
        assert f'"{api}.googleapis.com"' in services, api


def test_every_reference_resolves(terraform: Terraform) -> None:
    """What `terraform validate` would say about names, without the provider."""
    for name, text in terraform.texts.items():
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        # A `moved` block names an address that no longer exists, by design; its target must.
        for target in re.findall(r"^moved \{.*?^\s*to\s*=\s*(\S+)", code, re.S | re.M):
            kind, resource = target.split("[", 1)[0].split(".")
            assert resource in terraform.of_type(kind), f"{name}: moved to {target}"
        code = re.sub(r"^moved \{.*?^\}", "", code, flags=re.S | re.M)
        for variable in re.findall(r"\bvar\.(\w+)", code):
            assert variable in terraform.variables, f"{name}: var.{variable}"
        for local in re.findall(r"\blocal\.(\w+)", code):
            assert local in terraform.locals, f"{name}: local.{local}"
        for kind, resource in re.findall(r"(?<![\w.])(google_\w+)\.(\w+)", code):
            assert resource in terraform.of_type(kind), f"{name}: {kind}.{resource}"
        for kind, source in re.findall(r"\bdata\.(google_\w+)\.(\w+)", code):
            assert source in terraform.data.get(kind, {}), f"{name}: data.{kind}.{source}"


def test_tfvars_example_sets_what_is_required_and_only_known_variables(
    terraform: Terraform,
) -> None:
    lines = (TF_DIR / "terraform.tfvars.example").read_text().splitlines()
    assignment = re.compile(r"^(#\s*)?(\w+)\s*=")
    matches = [match for line in lines if (match := assignment.match(line))]
    set_names = {match.group(2) for match in matches if match.group(1) is None}
    all_names = {match.group(2) for match in matches}
    required = {name for name, body in terraform.variables.items() if "default" not in body}
    assert required <= set_names
    assert all_names <= set(terraform.variables)


def test_accepted_checkov_findings_are_skipped_inline_with_a_reason(
    terraform: Terraform,
) -> None:
    skips = [
        match
        for text in terraform.texts.values()
        for match in re.finditer(r"#checkov:skip=(\w+):(.*)", text)
    ]
    assert skips
    for skip in skips:
        assert len(skip.group(2).strip()) > 20, skip.group(0)
    config = (TF_DIR / ".checkov.yaml").read_text()
    assert not re.search(r"^skip-check", config, re.MULTILINE), "skip on the resource instead"


def test_unindexed_fields_get_an_empty_index_config_and_no_ttl(terraform: Terraform) -> None:
    field = terraform.resource("google_firestore_field", "unindexed")
    for_each = expression(field["for_each"])
    assert "local.unindexed_fields" in for_each
    assert '"${pair.collection}.${pair.field}" => pair' in for_each
    assert (expression(field["collection"]), expression(field["field"])) == (
        "each.value.collection",
        "each.value.field",
    )
    assert field["index_config"] in ({}, [{}])  # empty: no single-field indexes at all
    assert "ttl_config" not in field
    unindexed = terraform.locals["unindexed_fields"]
    assert "delivered" in unindexed["device_state"]
    for collection, fields in unindexed.items():
        assert fields and len(set(fields)) == len(fields), collection
        # A TTL field has its exemption in google_firestore_field.ttl (one config per field).
        assert collection not in terraform.locals["ttl_collections"] or "expire_at" not in fields


def test_the_delivered_maps_former_resource_is_moved_not_recreated(terraform: Terraform) -> None:
    assert "unindexed_delivered" not in terraform.of_type("google_firestore_field")
    assert re.search(
        r"moved \{\s*from = google_firestore_field\.unindexed_delivered\s*"
        r'to\s*= google_firestore_field\.unindexed\["device_state\.delivered"\]\s*\}',
        terraform.texts["firestore.tf"],
    )
