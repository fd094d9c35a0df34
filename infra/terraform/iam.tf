# Least privilege: one runtime service account per function, each granted only what its code
# calls; a scheduler account that may only invoke sync_device and refresh_devices; a build
# account for Cloud Build. Only additive *_iam_member resources: nothing here can remove a
# grant that something else in the project made.

locals {
  functions = toset(["api", "sync_device", "refresh_devices", "webhooks"])

  # Secrets each function reads (roles/secretmanager.secretAccessor on that secret only).
  # A secret environment variable counts as a read: Cloud Run resolves it as the runtime account.
  secret_readers = {
    api = [
      "api-token",              # API_TOKEN
      "google-secrets",         # token status, device list refresh, manual locate
      "traccar-api-token",      # creates and names devices in Traccar
      "smtp-password",          # POST /notify/test, auth-expired notice
      "smartcar-client-secret", # Smartcar Connect code exchange
      "smartcar-tokens",        # Smartcar vehicle views
      "tlink-credentials",      # TLINK device and history views
    ]
    sync_device = [
      "google-secrets",
      "traccar-api-token",
      "smtp-password", # auth-expired notice
      "smartcar-client-secret",
      "smartcar-tokens",
      "tlink-credentials",
    ]
    refresh_devices = [
      "google-secrets",
      "traccar-api-token",
      "smtp-password", # new device, auto-registered, token expiring
      "smartcar-client-secret",
      "smartcar-tokens",
      "tlink-credentials",
    ]
    webhooks = [
      "traccar-api-token",
      "smartcar-management-token", # SC-Signature and VERIFY challenges
      "tlink-webhook-secret",      # X-TLink-Signature
    ]
  }

  # Secrets each function writes new versions of (and disables the superseded ones), through
  # the custom role below; never project-wide.
  secret_writers = {
    api = [
      "google-secrets",  # PUT /auth/secrets, PUT /auth/aas-token
      "smartcar-tokens", # Smartcar Connect stores a vehicle's tokens
    ]
    sync_device = [
      "google-secrets",  # drops a revoked aas_token (BadAuthentication)
      "smartcar-tokens", # refreshed access tokens
    ]
    refresh_devices = [
      "smartcar-tokens", # refreshed access tokens
    ]
  }

  # Functions that create, update, pause, resume and delete per-device sync jobs at run time.
  job_managers = toset(["api", "refresh_devices"])

  secret_read_grants = merge([
    for function, secrets in local.secret_readers : {
      for secret in secrets : "${function}/${secret}" => { function = function, secret = secret }
    }
  ]...)
  secret_write_grants = merge([
    for function, secrets in local.secret_writers : {
      for secret in secrets : "${function}/${secret}" => { function = function, secret = secret }
    }
  ]...)

  # Custom role ids allow letters, digits, '_' and '.', not '-'.
  role_prefix = replace(var.name_prefix, "-", "_")
}

# --- Service accounts ---------------------------------------------------------------------------

resource "google_service_account" "runtime" {
  for_each = local.functions

  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = "traccar-bridge ${each.key} function"

  depends_on = [google_project_service.enabled]
}

# The identity whose OIDC token Cloud Scheduler jobs carry (the hourly refresh job here, the
# per-device sync jobs the api and refresh_devices create).
resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "traccar-bridge Cloud Scheduler jobs"

  depends_on = [google_project_service.enabled]
}

# Cloud Build builds each function as this account instead of a default one: since 2024 new
# projects build as the Compute Engine default account, which may hold no roles at all (or far
# too many).
resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "traccar-bridge function builds"

  depends_on = [google_project_service.enabled]
}

# --- Runtime accounts ---------------------------------------------------------------------------

# Every function reads and writes Firestore documents, and nothing more of Datastore.
resource "google_project_iam_member" "firestore_user" {
  for_each = local.functions

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.runtime[each.key].email}"
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = local.secret_read_grants

  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime[each.value.function].email}"
}

# Adding a version, listing versions and disabling the superseded ones (shared/secrets.py
# add_version and disable_versions). Narrower than secretVersionManager: no destroy, no enable.
resource "google_project_iam_custom_role" "secret_rotator" {
  role_id     = "${local.role_prefix}_secret_rotator"
  title       = "traccar-bridge secret rotation"
  description = "Add a secret version and disable the superseded ones."
  permissions = [
    "secretmanager.versions.add",
    "secretmanager.versions.disable",
    "secretmanager.versions.list",
  ]
}

resource "google_secret_manager_secret_iam_member" "rotator" {
  for_each = local.secret_write_grants

  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = google_project_iam_custom_role.secret_rotator.name
  member    = "serviceAccount:${google_service_account.runtime[each.value.function].email}"
}

# What shared/scheduler.py CloudSchedulerJobs calls: create (update when it exists), pause,
# resume (cloudscheduler.jobs.enable) and delete; get and list to read back a job. Narrower than
# roles/cloudscheduler.admin: no running jobs by hand, no other locations' settings.
resource "google_project_iam_custom_role" "scheduler_jobs" {
  role_id     = "${local.role_prefix}_scheduler_jobs"
  title       = "traccar-bridge sync job management"
  description = "Create, update, pause, resume and delete Cloud Scheduler jobs."
  permissions = [
    "cloudscheduler.jobs.create",
    "cloudscheduler.jobs.delete",
    "cloudscheduler.jobs.enable",
    "cloudscheduler.jobs.get",
    "cloudscheduler.jobs.list",
    "cloudscheduler.jobs.pause",
    "cloudscheduler.jobs.update",
  ]
}

# Cloud Scheduler jobs live in the project, not in a resource that IAM can scope further.
resource "google_project_iam_member" "scheduler_jobs" {
  for_each = local.job_managers

  project = var.project_id
  role    = google_project_iam_custom_role.scheduler_jobs.name
  member  = "serviceAccount:${google_service_account.runtime[each.key].email}"
}

# A job that carries the scheduler account's OIDC token can only be made by someone who may
# act as that account: granted on that one account, not project-wide.
resource "google_service_account_iam_member" "job_managers_act_as_scheduler" {
  for_each = local.job_managers

  service_account_id = google_service_account.scheduler.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.runtime[each.key].email}"
}

# --- Invokers -----------------------------------------------------------------------------------
# 2nd gen functions are Cloud Run services: invoking one takes roles/run.invoker on its service.

# Public: anyone may call the API over HTTPS; every route but /health and /versions demands
# the bearer token (API_TOKEN).
resource "google_cloud_run_service_iam_member" "api_public" {
  #checkov:skip=CKV_GCP_102:Public by design: callers have no Google identity; the bearer token guards every route but /health and /versions.
  location = google_cloudfunctions2_function.api.location
  service  = google_cloudfunctions2_function.api.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Public: Smartcar and TLINK post here without Google credentials; each delivery is checked
# against its signature (SC-Signature, X-TLink-Signature) before any work.
resource "google_cloud_run_service_iam_member" "webhooks_public" {
  #checkov:skip=CKV_GCP_102:Public by design: vendors post without Google credentials; signatures are checked before any work.
  location = google_cloudfunctions2_function.webhooks.location
  service  = google_cloudfunctions2_function.webhooks.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Private: only the scheduler account's OIDC token gets in.
resource "google_cloud_run_service_iam_member" "scheduler_invokes_sync_device" {
  location = google_cloudfunctions2_function.sync_device.location
  service  = google_cloudfunctions2_function.sync_device.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_run_service_iam_member" "scheduler_invokes_refresh_devices" {
  location = google_cloudfunctions2_function.refresh_devices.location
  service  = google_cloudfunctions2_function.refresh_devices.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# --- Build account ------------------------------------------------------------------------------
# What Cloud Build needs to turn a zip into a function image: write its logs, push the image to
# the gcf-artifacts repository (made by Cloud Functions, hence project-level) and read the
# source that Cloud Functions stages in its own bucket (also project-level).

resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
    "roles/storage.objectViewer",
  ])

  project = var.project_id
  role    = each.key
  member  = "serviceAccount:${google_service_account.build.email}"
}
