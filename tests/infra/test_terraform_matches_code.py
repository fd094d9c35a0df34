"""infra/terraform against the code it deploys: every setting, secret, scheduler call, expiring
collection and query the code has is provided for, and nothing more is granted.

The tables below are the code traced by hand from each function's entry point (which function
reads which secret, calls which Cloud Scheduler method, needs which setting); the tests check
that the Terraform grants exactly that, and that the code still has exactly the secret-naming
settings, client calls and `expire_at` models the tables were traced from: a new one fails
here until it is traced and provided for.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

import shared
from shared.config import Settings
from shared.store import smartcar as smartcar_records
from shared.store import tlink as tlink_store
from tests.infra.hcl import (
    FUNCTION,
    TF_DIR,
    Terraform,
    environment_locals,
    environment_names,
    expression,
    secret_environment,
    service_config,
    setting_names,
)

ROOT = TF_DIR.parents[1]
FUNCTIONS = {"api", "sync_device", "refresh_devices", "webhooks"}
GOOGLE_USERS = {"api", "sync_device", "refresh_devices"}

# Settings naming a secret → the functions whose code reads that secret.
SECRET_NAME_READERS: dict[str, set[str]] = {
    # Pipeline.push creates a device Traccar does not know: every function that pushes;
    # refresh_devices gives existing devices the command attributes (CommandProvisioning).
    "traccar_api_token_secret": {"api", "sync_device", "webhooks", "refresh_devices"},
    # Traccar's commands: the api checks the key; sync_device writes it onto the Traccar
    # devices its pipeline creates or finds, refresh_devices onto the devices that existed
    # before. Never the public webhooks function.
    "traccar_command_key_secret": {"api", "sync_device", "refresh_devices"},
    # api: /auth/*, GET /devices, GET /devices/<id>/locations, manual sync; sync_device: the
    # locate; refresh_devices: the device list and the FCM expiry watch.
    "google_secret_name": GOOGLE_USERS,
    # ClientFactory: Connect (api), a vehicle's pull (sync_device, the api's manual sync), the
    # hourly renewal of refresh tokens (refresh_devices).
    "smartcar_client_secret_secret": GOOGLE_USERS,
    "smartcar_tokens_secret": GOOGLE_USERS,
    # SC-Signature and VERIFY (webhooks); disconnecting a removed vehicle (api, issue 20).
    "smartcar_management_token_secret": {"webhooks", "api"},
    # A TLINK device's pull: sync_device, and the api's manual sync (the views read Firestore);
    # the hourly discovery of the account's devices (refresh_devices).
    "tlink_credentials_secret": GOOGLE_USERS,
    # The optional push protections: the webhooks only.
    "tlink_webhook_secret_name": {"webhooks"},
    "tlink_path_token_secret": {"webhooks"},
    # The key sealing the cached access tokens in Firestore: whoever uses Google's token (the
    # three above) or TLINK's (api, sync_device). Never the webhooks, which read Firestore.
    "state_key_secret": GOOGLE_USERS,
}
# Secrets the code adds versions to → the functions that do.
SECRET_NAME_WRITERS: dict[str, set[str]] = {
    # PUT /auth/secrets and /auth/aas-token (api); Google's refusal strips the dead aas_token
    # in whichever function meets it (expiry.py: api, sync_device, refresh_devices).
    "google_secret_name": GOOGLE_USERS,
    # Connect (api), refreshed access tokens (sync_device, the api's manual sync), renewed
    # refresh tokens (refresh_devices).
    "smartcar_tokens_secret": GOOGLE_USERS,
}
# Secrets whose old disabled versions the code destroys (destroy_disabled) → the functions
# that do: the Smartcar token store prunes after each change it writes.
SECRET_NAME_PRUNERS: dict[str, set[str]] = {"smartcar_tokens_secret": GOOGLE_USERS}
# Secret values Cloud Run injects as environment variables → (secret, the functions that get it).
SECRET_VALUES: dict[str, tuple[str, set[str]]] = {
    "API_TOKEN": ("api-token", {"api"}),
    # Mail: the expiry email (api, sync_device, refresh_devices), /notify/test (api), the
    # refresh's notices. Webhooks send no mail.
    "NOTIFY_SMTP_PASS": ("smtp-password", GOOGLE_USERS),
}
# Settings Terraform leaves at their defaults on purpose.
LEFT_AT_DEFAULT = {
    # Vendor endpoints: seams for the tests' fakes; the defaults are the real services.
    "GOOGLE_AUTH_URL",
    "GOOGLE_NOVA_URL",
    "GOOGLE_MCS_HOST",
    "GOOGLE_MCS_PORT",
    "GOOGLE_CHECKIN_URL",
    "GOOGLE_SPOT_URL",
    "SMARTCAR_API_ORIGIN",
    "SMARTCAR_AUTH_ORIGIN",
    "SMARTCAR_CONNECT_ORIGIN",
    "SMARTCAR_MANAGEMENT_ORIGIN",
    "SMARTCAR_VEHICLE_API_URL",
    "SMARTCAR_IAM_TOKEN_URL",
    # Smartcar's call budget: 500 fits common plans; a Terraform variable when plans differ.
    "SMARTCAR_MONTHLY_CALLS",
    # Workstation only: the local secrets folder, the local loop's refresh target.
    "SECRETS_DIR",
    "REFRESH_DEVICES_URL",
    # GCP_PROJECT's other name.
    "GOOGLE_CLOUD_PROJECT",
    # What input may claim (issue 13): the defaults fit a family or a small fleet.
    "MAX_FUTURE_SKEW",
    "TLINK_MAX_SENSORS_PER_DEVICE",
    "SMARTCAR_MAX_SIGNALS_PER_VEHICLE",
    "RECEIVER_MAX_DEVICES",
    # Google's pacing and Traccar's "approximate" mark (issue 14): the defaults follow upstream.
    "GOOGLE_LOCATE_CONCURRENCY",
    "GOOGLE_APPROXIMATE_ACCURACY",
    "GOOGLE_SILENT_BACKOFF_MAX",
}
# Settings each function's code reads beyond base_environment.
NEEDED_ENVIRONMENT: dict[str, set[str]] = {
    "api": {
        "FCM_TIMEOUT",  # manual sync, GET /devices/<id>/locations
        "SMART_TRACKING_ENABLED",  # a manual sync observes movement
        "NOTIFY_SMTP_HOST",
        "NOTIFY_EMAIL_TO",
        "SYNC_DEVICE_URL",  # services, restored jobs
        "SCHEDULER_SERVICE_ACCOUNT",
        "SCHEDULER_TIME_ZONE",
        "SMARTCAR_CLIENT_ID",  # Connect
        "SMARTCAR_REDIRECT_URI",
        "SMARTCAR_SCOPE",
        "SMARTCAR_MODE",
        "TLINK_API_URL",  # manual sync of a TLINK device
        "TLINK_TIME_ZONE",  # the TLINK views' times
        "TLINK_READING_RETENTION_DAYS",
    },
    "sync_device": {
        "FCM_TIMEOUT",
        "SMART_TRACKING_ENABLED",
        "SMART_TRACKING_DISTANCE",
        "SMART_TRACKING_TIMER",
        "SMART_TRACKING_DELTA",
        "SMART_TRACKING_DURATION",
        "NOTIFY_SMTP_HOST",  # the expiry email
        "NOTIFY_EMAIL_TO",
        "SYNC_DEVICE_URL",  # smart tracking re-plans the device's own job
        "API_URL",  # command.findHub.url on the devices the pipeline creates or finds
        "SCHEDULER_SERVICE_ACCOUNT",
        "SMARTCAR_CLIENT_ID",  # token refresh goes through the SDK's AuthClient
        "SMARTCAR_REDIRECT_URI",
        "SMARTCAR_MODE",
        "TLINK_API_URL",
        "TLINK_TIME_ZONE",
        "TLINK_READING_RETENTION_DAYS",
    },
    "refresh_devices": {
        "AUTO_REGISTER_SERVICES",
        "AUTO_REGISTER_TIMER",
        "AUTO_REGISTER_DELTA",
        "SMART_TRACKING_ENABLED",  # the sweep
        "NOTIFY_SMTP_HOST",
        "NOTIFY_EMAIL_TO",
        "SYNC_DEVICE_URL",  # auto-registration
        "API_URL",  # command.findHub.url on the Traccar devices that existed before
        "SCHEDULER_SERVICE_ACCOUNT",
        "SMARTCAR_CLIENT_ID",  # renewal of refresh tokens
        "SMARTCAR_REDIRECT_URI",
        "SMARTCAR_MODE",
        "TLINK_API_URL",  # the discovery of the TLINK account's devices
        "TLINK_TIME_ZONE",
        "TLINK_READING_RETENTION_DAYS",
    },
    "webhooks": {
        "TLINK_TIME_ZONE",
        "TLINK_READING_RETENTION_DAYS",
        "TLINK_REQUIRE_SIGNATURE",
        "TLINK_REQUIRE_PATH_TOKEN",
        "SMARTCAR_EVENT_RETENTION_DAYS",
    },
}
# Cloud Scheduler permissions (cloudscheduler.jobs.<verb>) each function's code needs.
JOB_VERBS: dict[str, set[str]] = {
    # Services and exclusions (upsert, pause while auth_required, delete), new credentials
    # (resume, or upsert a lost job), smart tracking and Google expiry in a manual sync.
    # Traccar's "locate now" runs the device's job at once.
    "api": {"create", "update", "pause", "enable", "delete", "get", "run"},
    # Smart tracking (upsert), Google expiry (pause every Google job), a "locate now"
    # one-shot job's run deletes that job.
    "sync_device": {"create", "update", "pause", "get", "delete"},
    # Auto-registration (upsert, pause), smart tracking's end (upsert), Google expiry (pause).
    "refresh_devices": {"create", "update", "pause", "get"},
}
# CloudSchedulerJobs' client methods → the permission each needs.
SCHEDULER_METHODS = {
    "create_job": "create",
    "update_job": "update",
    "pause_job": "pause",
    "resume_job": "enable",
    "delete_job": "delete",
    "get_job": "get",
    "run_job": "run",
}
# SecretManagerStore's client methods → the permission each needs.
SECRET_METHODS = {
    "access_secret_version": "secretmanager.versions.access",  # read
    "list_secret_versions": "secretmanager.versions.list",  # read's fallback, disable_versions
    "add_secret_version": "secretmanager.versions.add",  # add_version
    "disable_secret_version": "secretmanager.versions.disable",  # disable_versions
    "destroy_secret_version": "secretmanager.versions.destroy",  # destroy_disabled
    "create_secret": "secretmanager.secrets.create",  # add_version on a missing secret
}
# Models with an `expire_at` field → the collection they are stored in.
EXPIRING_MODELS = {
    "shared.models.PushLogEntry": "push_log",
    "shared.store.smartcar.WebhookClaim": smartcar_records.WEBHOOK_EVENTS,
    "shared.store.smartcar.StoredEvent": smartcar_records.EVENTS,
    "shared.store.smartcar.ConnectState": smartcar_records.CONNECT_STATES,
    "shared.store.tlink.TlinkEvent": tlink_store.EVENTS,
    "shared.store.tlink.TlinkReading": tlink_store.READINGS,
}
# Collection → the fields its queries in shared/ filter or order on (traced by hand; a test
# checks the code still names exactly these fields in its queries).
QUERIED_FIELDS: dict[str, set[str]] = {
    # Repository.list: every document, ordered by id.
    **{collection: {"id"} for collection in ("devices", "services", "excluded_devices")},
    **{collection: {"id"} for collection in ("local_jobs", "smart_tracking")},
    # SmartcarStore: the vehicles, ordered by id.
    smartcar_records.VEHICLES: {"id"},
    # DeliveryRepository.outbox and .push_log.
    "outbox": {"device_id", "location.timestamp"},
    "push_log": {"device_id", "attempted_at"},
    # DeliveryRepository.due: the states whose outbox the sweep retries (issue 16, a backoff
    # ended); .with_parked: the states with parked positions (the positions_parked alert).
    "device_state": {"retry_at", "parked_count"},
    # TraccarCommands.device: the device pushing to Traccar under a unique id.
    "devices": {"id", "traccar_unique_id"},
    # TlinkRepository: a user's devices, a sensor's history.
    tlink_store.DEVICES: {"user_id", "device_id"},
    tlink_store.READINGS: {"device_id", "sensor_id", "time"},
}
# Collection → the model its documents are (for the fields exempted from indexing).
STORED_MODELS = {
    "device_state": "shared.models.DeviceState",
    "push_log": "shared.models.PushLogEntry",
    smartcar_records.VEHICLES: "shared.store.smartcar.VehicleRecord",
    tlink_store.DEVICES: "shared.store.tlink.TlinkDevice",
}
PROJECT_NUMBER = "123456789012"
# What `terraform console` cannot know without the provider: the project number and the
# scheduler account's address.
SCHEDULER_EMAIL = "bridge-scheduler@my-bridge.iam.gserviceaccount.com"
STUBS = {
    "data.google_project.current.number": f'"{PROJECT_NUMBER}"',
    "google_service_account.scheduler.email": f'"{SCHEDULER_EMAIL}"',
}
REQUIRED_VARIABLES = {
    "project_id": "my-bridge",
    "traccar_server_url": "https://traccar.example.com",
}


def secret_name_fields() -> dict[str, str]:
    """Settings fields whose value is the name of a secret → their default."""
    return {
        name: str(info.default)
        for name, info in Settings.model_fields.items()
        if name.endswith(("_secret", "_secret_name"))
    }


def readers_of(terraform: Terraform, secret: str) -> set[str]:
    return {f for f, secrets in terraform.locals["secret_readers"].items() if secret in secrets}


def writers_of(terraform: Terraform, secret: str) -> set[str]:
    return {f for f, secrets in terraform.locals["secret_writers"].items() if secret in secrets}


def client_methods(path: Path, class_name: str, pattern: str) -> set[str]:
    """Methods of `self._client` a class calls, directly or named as a string (getattr)."""
    tree = ast.parse(path.read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    found = set()
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "_client"
        ):
            found.add(node.attr)
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and re.fullmatch(pattern, node.value):
            found.add(node.value)
    return found


def query_fields() -> set[str]:
    """Field names the code in shared/ filters (`FieldFilter`, `where`) or orders on."""
    found = set()
    for path in Path(shared.__path__[0]).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else None
            if isinstance(function, ast.Name):
                name = function.id
            first = node.args[0]
            if name in ("FieldFilter", "where", "order_by") and isinstance(first, ast.Constant):
                found.add(first.value)
    return found


def model_class(qualified: str) -> type[BaseModel]:
    module, _, name = qualified.rpartition(".")
    return getattr(importlib.import_module(module), name)


def expiring_models() -> set[str]:
    """Every pydantic model in shared/ with an `expire_at` field."""
    found = set()
    for info in pkgutil.walk_packages(shared.__path__, "shared."):
        # shared.openapi's own models describe answers (a push-log entry as shown): never stored.
        if info.name.endswith("__main__") or info.name == "shared.openapi":
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
                and "expire_at" in value.model_fields
            ):
                found.add(f"{value.__module__}.{value.__qualname__}")
    return found


# --- Secrets ---------------------------------------------------------------------------------


def test_every_secret_setting_names_a_secret_terraform_creates(terraform: Terraform) -> None:
    fields = secret_name_fields()
    assert set(fields) == set(SECRET_NAME_READERS), "trace the new secret setting's readers"
    for field, secret in fields.items():
        assert secret in terraform.locals["secrets"], f"{field}: no secret {secret}"
    # The functions keep the defaults: the names cannot drift from the secrets' ids.
    for function in FUNCTIONS:
        assert not {field.upper() for field in fields} & environment_names(terraform, function)


def test_each_secret_is_readable_by_exactly_the_functions_whose_code_reads_it(
    terraform: Terraform,
) -> None:
    for field, secret in secret_name_fields().items():
        assert readers_of(terraform, secret) == SECRET_NAME_READERS[field], secret
    for key, (secret, functions) in SECRET_VALUES.items():
        assert readers_of(terraform, secret) == functions, secret
        for function in FUNCTIONS:
            got = secret_environment(terraform, function).get(key)
            assert got == ({secret} if function in functions else None), (function, key)


def test_only_the_functions_that_use_a_cached_token_may_open_it(terraform: Terraform) -> None:
    # Firestore's IAM is per database: every function may read `state/`. What keeps the public
    # webhooks function from the Google and TLINK access tokens cached there is the key.
    key = secret_name_fields()["state_key_secret"]
    token_users = (
        SECRET_NAME_READERS["google_secret_name"] | SECRET_NAME_READERS["tlink_credentials_secret"]
    )
    assert readers_of(terraform, key) == token_users
    assert "webhooks" not in readers_of(terraform, key) | writers_of(terraform, key)
    # Nobody adds versions at run time: the operator does (docs/deploy.md), the local backend
    # makes its own.
    assert writers_of(terraform, key) == set()
    assert f"gcloud secrets versions add {key}" in (ROOT / "docs" / "deploy.md").read_text()
    # Whoever opens the tokens deploys the cipher (shared/store/sealed.py imports Crypto).
    for function in token_users:
        requirements = (ROOT / "functions" / function / "requirements.txt").read_text()
        assert "\npycryptodome==" in requirements, function


def test_only_the_functions_that_rotate_a_secret_may_add_versions(terraform: Terraform) -> None:
    names = secret_name_fields()
    expected = {names[field]: functions for field, functions in SECRET_NAME_WRITERS.items()}
    written = {s for secrets in terraform.locals["secret_writers"].values() for s in secrets}
    assert written == set(expected)
    for secret, functions in expected.items():
        assert writers_of(terraform, secret) == functions, secret
        # Every reader of a rotated secret holds versions.list (the rotator role), which the
        # read falls back to when a racing rotation just disabled the newest version.
        assert readers_of(terraform, secret) <= writers_of(terraform, secret), secret


def test_terraform_creates_no_secret_the_code_does_not_use(terraform: Terraform) -> None:
    used = set(secret_name_fields().values()) | {s for s, _ in SECRET_VALUES.values()}
    assert set(terraform.locals["secrets"]) == used


def test_secret_permissions_cover_the_secret_manager_calls(terraform: Terraform) -> None:
    methods = client_methods(
        ROOT / "shared" / "secrets.py", "SecretManagerStore", r"\w+_secret(_version)?s?"
    )
    assert methods == set(SECRET_METHODS), "map the new Secret Manager call to its permission"
    rotator = set(
        terraform.resource("google_project_iam_custom_role", "secret_rotator")["permissions"]
    )
    # add_version, disable_versions (which lists first); the secrets exist, so never create.
    assert rotator == {
        SECRET_METHODS["add_secret_version"],
        SECRET_METHODS["list_secret_versions"],
        SECRET_METHODS["disable_secret_version"],
    }
    pruner = set(
        terraform.resource("google_project_iam_custom_role", "secret_pruner")["permissions"]
    )
    # destroy_disabled lists the disabled versions, then destroys the old ones.
    assert pruner == {
        SECRET_METHODS["list_secret_versions"],
        SECRET_METHODS["destroy_secret_version"],
    }


def test_only_the_functions_that_prune_a_secret_may_destroy_its_versions(
    terraform: Terraform,
) -> None:
    names = secret_name_fields()
    expected = {names[field]: functions for field, functions in SECRET_NAME_PRUNERS.items()}
    pruners = terraform.locals["secret_pruners"]
    assert {s for secrets in pruners.values() for s in secrets} == set(expected)
    for secret, functions in expected.items():
        assert {f for f, secrets in pruners.items() if secret in secrets} == functions, secret
        # Whoever changes the token secret prunes it (tokens.TokenStore._change).
        assert writers_of(terraform, secret) == functions, secret


# --- Settings ----------------------------------------------------------------------------------


def test_every_setting_is_set_or_deliberately_left_at_its_default(terraform: Terraform) -> None:
    plain = set().union(*(environment_names(terraform, f) for f in FUNCTIONS))
    secret_values = set().union(*(secret_environment(terraform, f) for f in FUNCTIONS))
    secret_names = {field.upper() for field in secret_name_fields()}
    assert not plain & LEFT_AT_DEFAULT
    assert plain | secret_values | secret_names | LEFT_AT_DEFAULT == setting_names()
    # Secret values only ever come from Secret Manager, never as plain text.
    secret_str = {
        name.upper()
        for name, info in Settings.model_fields.items()
        if SecretStr in (info.annotation, *getattr(info.annotation, "__args__", ()))
    }
    assert secret_str == set(SECRET_VALUES)
    assert not secret_str & plain


def test_each_function_gets_the_settings_its_code_reads(terraform: Terraform) -> None:
    for function, needed in NEEDED_ENVIRONMENT.items():
        missing = needed - environment_names(terraform, function)
        assert not missing, f"{function} lacks {missing}"
    # The push protections are the receiver's alone.
    for function in FUNCTIONS - {"webhooks"}:
        assert "webhooks_environment" not in environment_locals(terraform, function)


def test_smartcar_connect_returns_to_the_apis_exchange_route(terraform: Terraform) -> None:
    redirect = expression(terraform.locals["smartcar_redirect_uri"])
    assert 'local.run_urls["api"]}/smartcar/exchange' in redirect
    assert "var.smartcar_redirect_uri" in redirect
    api = (ROOT / "functions" / "api" / "main.py").read_text()
    assert '@app.get("/smartcar/exchange")' in api
    webhooks = (ROOT / "functions" / "webhooks" / "main.py").read_text()
    for route in ('@app.post("/smartcar")', '@app.post("/tlink")', '@app.post("/tlink/<token>")'):
        assert route in webhooks, route


# --- Cloud Scheduler ---------------------------------------------------------------------------


def test_each_job_manager_holds_exactly_the_scheduler_permissions_its_code_needs(
    terraform: Terraform,
) -> None:
    managers = {f: set(verbs) for f, verbs in terraform.locals["job_managers"].items()}
    assert managers == JOB_VERBS
    methods = client_methods(ROOT / "shared" / "scheduler.py", "CloudSchedulerJobs", r"[a-z]+_job")
    assert methods <= set(SCHEDULER_METHODS), "map the new Cloud Scheduler call to its permission"
    assert {SCHEDULER_METHODS[m] for m in methods} == set().union(*JOB_VERBS.values())


def test_job_managers_know_the_sync_url_and_the_scheduler_account(terraform: Terraform) -> None:
    scheduler = terraform.locals["scheduler_environment"]
    # Not sync_device.service_config[0].uri: sync_device itself needs it (a cycle).
    assert expression(scheduler["SYNC_DEVICE_URL"]) == 'local.run_urls["sync_device"]'
    assert expression(scheduler["SCHEDULER_SERVICE_ACCOUNT"]) == (
        "google_service_account.scheduler.email"
    )
    for function in JOB_VERBS:
        assert "scheduler_environment" in environment_locals(terraform, function), function
    assert "scheduler_environment" not in environment_locals(terraform, "webhooks")


def test_function_names_are_the_names_their_urls_are_computed_from(terraform: Terraform) -> None:
    for function in FUNCTIONS:
        name = terraform.resource(FUNCTION, function)["name"]
        assert expression(name) == f'local.function_names["{function}"]'
    account = terraform.resource("google_service_account", "runtime")
    assert expression(account["account_id"]) == "local.function_names[each.key]"
    run_urls = expression(terraform.locals["run_urls"])
    assert "data.google_project.current.number" in run_urls
    assert "local.function_names" in run_urls
    project = terraform.data["google_project"]["current"]
    assert expression(project["project_id"]) == "var.project_id"


def evaluate(tmp_path: Path, variables: dict[str, str], query: str) -> object:
    """`query` evaluated by `terraform console` over the real variables and locals."""
    blocks = [
        match.group(0)
        for path in sorted(TF_DIR.glob("*.tf"))
        for match in re.finditer(r"^locals \{\n.*?^\}\n", path.read_text(), re.S | re.M)
    ]
    text = "\n".join(blocks)
    for reference, value in STUBS.items():
        text = text.replace(reference, value)
    (tmp_path / "variables.tf").write_text((TF_DIR / "variables.tf").read_text())
    (tmp_path / "locals.tf").write_text(text)
    arguments = [a for key, value in variables.items() for a in ("-var", f"{key}={value}")]
    result = subprocess.run(
        ["terraform", f"-chdir={tmp_path}", "console", *arguments],
        input=f"jsonencode({query})\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # console reports an error in any locals block (an unknown function, a failed validation)
    # on stderr and still answers with exit 0.
    assert "Error" not in result.stderr, result.stderr
    return json.loads(json.loads(result.stdout.strip().splitlines()[-1]))


needs_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="terraform is not installed"
)


@needs_terraform
def test_urls_are_cloud_runs_deterministic_urls(tmp_path: Path) -> None:
    query = "[local.run_urls, local.smartcar_redirect_uri]"
    assert evaluate(tmp_path, REQUIRED_VARIABLES, query) == [
        {
            "api": f"https://bridge-api-{PROJECT_NUMBER}.europe-west1.run.app",
            "sync_device": f"https://bridge-sync-device-{PROJECT_NUMBER}.europe-west1.run.app",
            "refresh_devices": (
                f"https://bridge-refresh-devices-{PROJECT_NUMBER}.europe-west1.run.app"
            ),
            "webhooks": f"https://bridge-webhooks-{PROJECT_NUMBER}.europe-west1.run.app",
        },
        f"https://bridge-api-{PROJECT_NUMBER}.europe-west1.run.app/smartcar/exchange",
    ]
    # The longest prefix name_prefix allows still leaves a DNS label Cloud Run can serve.
    longest = {
        **REQUIRED_VARIABLES,
        "name_prefix": "a" * 13,
        "smartcar_redirect_uri": "https://bridge.example.com/smartcar/exchange",
    }
    urls = evaluate(tmp_path, longest, query)
    assert isinstance(urls, list)
    for url in urls[0].values():
        label = url.removeprefix("https://").split(".")[0]
        assert len(label) <= 63, url
    assert urls[1] == "https://bridge.example.com/smartcar/exchange"


@needs_terraform
def test_every_function_environment_is_valid_settings(
    terraform: Terraform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each function's environment, as Terraform computes it, loads as Settings."""
    from shared.config import load_settings

    queries = {
        function: expression(service_config(terraform, function)["environment_variables"])
        for function in sorted(FUNCTIONS)
    }
    query = "{" + ", ".join(f"{function} = {q}" for function, q in queries.items()) + "}"
    environments = evaluate(tmp_path, REQUIRED_VARIABLES, query)
    assert isinstance(environments, dict)
    for function, environment in environments.items():
        with monkeypatch.context() as patch:
            for name in setting_names():
                patch.delenv(name, raising=False)
            for name, value in environment.items():
                patch.setenv(name, value)
            settings = load_settings(_env_file=None)
        assert settings.secrets_backend == "secret_manager", function
        assert settings.scheduler_backend == "cloud_scheduler", function
        if function in JOB_VERBS:
            assert str(settings.sync_device_url) == (
                f"https://bridge-sync-device-{PROJECT_NUMBER}.europe-west1.run.app/"
            )
            assert settings.scheduler_service_account == SCHEDULER_EMAIL
        if "SMARTCAR_REDIRECT_URI" in environment:
            assert str(settings.smartcar_redirect_uri).endswith("/smartcar/exchange")


# --- Firestore ---------------------------------------------------------------------------------


def test_every_collection_that_stores_expire_at_has_a_ttl_policy(terraform: Terraform) -> None:
    assert expiring_models() == set(EXPIRING_MODELS), "map the new expiring model to its collection"
    assert set(terraform.locals["ttl_collections"]) == set(EXPIRING_MODELS.values())


def test_the_queries_name_exactly_the_traced_fields() -> None:
    assert query_fields() == set().union(*QUERIED_FIELDS.values()), "trace the new query"


def test_no_query_or_composite_index_needs_an_unindexed_field(terraform: Terraform) -> None:
    unindexed = terraform.locals["unindexed_fields"]
    composite = {
        (index["collection"], field["field_path"])
        for index in terraform.locals["composite_indexes"].values()
        for field in index["fields"]
    }
    for collection, fields in unindexed.items():
        for field in fields:
            needed = QUERIED_FIELDS.get(collection, set()) | {
                path for name, path in composite if name == collection
            }
            # An exempted map also exempts its keys: a query on `field.key` needs it too.
            assert not any(path.split(".")[0] == field for path in needed), (collection, field)


def test_unindexed_fields_are_fields_of_the_stored_documents(terraform: Terraform) -> None:
    unindexed = terraform.locals["unindexed_fields"]
    assert set(unindexed) <= set(STORED_MODELS)
    for collection, fields in unindexed.items():
        assert set(fields) <= set(model_class(STORED_MODELS[collection]).model_fields), collection


def test_composite_indexes_cover_the_queries(terraform: Terraform) -> None:
    indexes = {
        index["collection"]: [(field["field_path"], field["order"]) for field in index["fields"]]
        for index in terraform.locals["composite_indexes"].values()
    }
    assert indexes == {
        # DeliveryRepository.push_log: device_id == , order by attempted_at desc.
        "push_log": [("device_id", "ASCENDING"), ("attempted_at", "DESCENDING")],
        # DeliveryRepository.outbox: device_id == , order by location.timestamp.
        "outbox": [("device_id", "ASCENDING"), ("location.timestamp", "ASCENDING")],
        # TlinkRepository.user_devices / count_user_devices: user_id == , order by device_id.
        tlink_store.DEVICES: [("user_id", "ASCENDING"), ("device_id", "ASCENDING")],
        # TlinkRepository.history: device_id == , sensor_id == , time range, order by time desc.
        tlink_store.READINGS: [
            ("device_id", "ASCENDING"),
            ("sensor_id", "ASCENDING"),
            ("time", "DESCENDING"),
        ],
    }
