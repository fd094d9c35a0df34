# Least privilege: one runtime service account per function, each granted only what its code
# calls; a scheduler account that may only invoke sync_device and refresh_devices; a build
# account for Cloud Build. Only additive *_iam_member resources: nothing here can remove a
# grant that something else in the project made.

locals {
  functions = toset(["api", "sync_device", "refresh_devices", "webhooks"])

  # Secrets each function's code reads (roles/secretmanager.secretAccessor on that secret
  # only), traced from the entry point to the secrets adapter's read(). A secret environment
  # variable counts as a read: Cloud Run resolves it as the runtime account.
  secret_readers = {
    api = [
      "api-token",                 # API_TOKEN
      "google-secrets",            # /auth/*, GET /devices, GET /devices/<id>/locations, manual sync
      "traccar-api-token",         # the pipeline creates devices Traccar does not know
      "traccar-command-key",       # checks Traccar's commands (/devices/<uniqueId>/position-*)
      "smtp-password",             # POST /notify/test, the Google expiry email
      "smartcar-client-secret",    # Connect (start, exchange); manual sync of a vehicle refreshes tokens
      "smartcar-tokens",           # Connect stores a user's tokens; manual sync of a vehicle
      "tlink-credentials",         # manual sync of a TLINK device pulls it
      "state-encryption-key",      # the cached Google and TLINK access tokens (Firestore state/)
      "smartcar-management-token", # DELETE /devices/<id> disconnects a vehicle at Smartcar
    ]
    sync_device = [
      "google-secrets",         # the locate
      "traccar-api-token",      # the pipeline creates devices Traccar does not know
      "traccar-command-key",    # written onto the devices the pipeline creates or finds
      "smtp-password",          # the Google expiry email
      "smartcar-client-secret", # a vehicle's pull refreshes its access token
      "smartcar-tokens",        # a vehicle's pull
      "tlink-credentials",      # a TLINK device's pull
      "state-encryption-key",   # the cached Google and TLINK access tokens (Firestore state/)
    ]
    refresh_devices = [
      "google-secrets",         # the device list, the FCM expiry watch
      "traccar-api-token",      # gives existing Traccar devices the command attributes
      "traccar-command-key",    # written onto existing Traccar devices (a rotated key too)
      "smtp-password",          # new device, auto-registered, FCM token expiring, Google expiry
      "smartcar-client-secret", # renews refresh tokens near their end
      "smartcar-tokens",        # renews refresh tokens near their end
      "tlink-credentials",      # lists the TLINK account's devices (auto-registration)
      "state-encryption-key",   # the cached Google and TLINK access tokens (Firestore state/)
    ]
    # Not state-encryption-key: the public function reads Firestore (datastore.user is per
    # database) but must not be able to open the cached vendor access tokens there.
    webhooks = [
      "traccar-api-token",         # the pipeline creates devices Traccar does not know
      "smartcar-management-token", # SC-Signature and VERIFY challenges
      "tlink-webhook-secret",      # X-TLink-Signature (TLINK_REQUIRE_SIGNATURE)
      "tlink-path-token",          # /tlink/<token> (TLINK_REQUIRE_PATH_TOKEN)
    ]
  }

  # Secrets each function adds versions to (and disables the superseded ones, listing the
  # enabled ones first), through the custom role below; never project-wide. Every function that
  # writes a secret also reads it, and the role's versions.list serves the reader's fallback
  # when the newest version was just disabled by a racing rotation (shared/secrets.py read).
  secret_writers = {
    api = [
      "google-secrets",  # PUT /auth/secrets, PUT /auth/aas-token; Google expiry strips aas_token
      "smartcar-tokens", # Connect stores a user's tokens; refreshed tokens on a manual sync
    ]
    sync_device = [
      "google-secrets",  # Google expiry (BadAuthentication) strips the dead aas_token
      "smartcar-tokens", # refreshed access tokens
    ]
    refresh_devices = [
      "google-secrets",  # Google expiry met while listing devices strips the dead aas_token
      "smartcar-tokens", # renewed refresh tokens
    ]
  }

  # Cloud Scheduler methods each function's code calls on the per-device sync jobs
  # (shared/scheduler.py CloudSchedulerJobs), as cloudscheduler.jobs.<verb> permissions:
  # upsert = create, then update when the job exists; pause; resume = enable; delete; get reads
  # a job back when a pause or resume finds it in that state already.
  job_managers = {
    # Services (PUT/DELETE /devices/<id>/services, exclusions), new Google credentials (resume,
    # or re-create a lost job), smart tracking and Google expiry during a manual sync.
    # Traccar's "locate now" command runs the device's job at once (run).
    api = ["create", "delete", "enable", "get", "pause", "run", "update"]
    # Smart tracking re-plans the device's job (upsert); Google expiry pauses the Google jobs;
    # a run of a "locate now" one-shot job deletes that job.
    sync_device = ["create", "delete", "get", "pause", "update"]
    # Auto-registration (upsert, paused at once while Google credentials are expired), smart
    # tracking's end (upsert), Google expiry met while listing devices (pause).
    refresh_devices = ["create", "get", "pause", "update"]
  }

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

  account_id   = local.function_names[each.key]
  display_name = "traccar-bridge ${each.key} function"

  depends_on = [google_project_service.enabled]
}

# The identity whose OIDC token Cloud Scheduler jobs carry (the hourly refresh job here, the
# per-device sync jobs the job managers create and update).
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
# add_version and disable_versions, write_secrets of the Google credentials, the Smartcar
# token store). Narrower than secretVersionManager: no destroy, no enable. The secrets exist
# (secrets.tf): no secretmanager.secrets.create, so add_version's create-on-missing fallback
# cannot make secrets outside Terraform.
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

# Destroying the old disabled versions of a secret rewritten on a schedule (shared/secrets.py
# destroy_disabled, the Smartcar token store after each change): Secret Manager bills disabled
# versions until they are destroyed. Only the secret that needs it, only its writers.
locals {
  secret_pruners = {
    api             = ["smartcar-tokens"] # Connect, refreshed tokens on a manual sync
    sync_device     = ["smartcar-tokens"] # refreshed access tokens
    refresh_devices = ["smartcar-tokens"] # renewed refresh tokens
  }
  secret_prune_grants = merge([
    for function, secrets in local.secret_pruners : {
      for secret in secrets : "${function}/${secret}" => { function = function, secret = secret }
    }
  ]...)
}

resource "google_project_iam_custom_role" "secret_pruner" {
  role_id     = "${local.role_prefix}_secret_pruner"
  title       = "traccar-bridge secret version pruning"
  description = "List a secret's disabled versions and destroy the old ones."
  permissions = [
    "secretmanager.versions.destroy",
    "secretmanager.versions.list",
  ]
}

resource "google_secret_manager_secret_iam_member" "pruner" {
  for_each = local.secret_prune_grants

  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = google_project_iam_custom_role.secret_pruner.name
  member    = "serviceAccount:${google_service_account.runtime[each.value.function].email}"
}

# Rotation with a grace period (issue 20): the checker of a rotated credential lists the enabled
# versions with their creation times (shared/secrets.py versions) and accepts the previous one
# until ROTATION_GRACE_HOURS after the newest was added. Listing only; reading each version is
# the secretAccessor grant above.
locals {
  secret_listers = {
    api      = ["api-token", "traccar-command-key"]         # the bearer token's, Traccar's commands' key
    webhooks = ["tlink-path-token", "tlink-webhook-secret"] # TLINK's push path and signature
  }
  secret_list_grants = merge([
    for function, secrets in local.secret_listers : {
      for secret in secrets : "${function}/${secret}" => { function = function, secret = secret }
    }
  ]...)
}

resource "google_project_iam_custom_role" "secret_version_lister" {
  role_id     = "${local.role_prefix}_secret_lister"
  title       = "traccar-bridge rotated secret check"
  description = "List a secret's versions, to accept the previous one during the rotation grace."
  permissions = ["secretmanager.versions.list"]
}

resource "google_secret_manager_secret_iam_member" "lister" {
  for_each = local.secret_list_grants

  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = google_project_iam_custom_role.secret_version_lister.name
  member    = "serviceAccount:${google_service_account.runtime[each.value.function].email}"
}

# Further Google accounts (secrets.tf, docs/decisions/0004): each account's secret gets exactly
# what google-secrets gets, derived from the tables above so that the two cannot drift apart:
# read by every function that reads google-secrets (any of them may meet any account's devices),
# rotated by every function that rotates it (PUT /auth/secrets, an expired aas_token stripped).
# google-secrets has no lister grant (a test checks that this still covers all of its grants).
locals {
  google_account_read_grants = merge([
    for function, secrets in local.secret_readers : {
      for key in keys(local.google_account_secrets) : "${function}/${key}" => { function = function, key = key }
    } if contains(secrets, "google-secrets")
  ]...)
  google_account_write_grants = merge([
    for function, secrets in local.secret_writers : {
      for key in keys(local.google_account_secrets) : "${function}/${key}" => { function = function, key = key }
    } if contains(secrets, "google-secrets")
  ]...)
}

resource "google_secret_manager_secret_iam_member" "google_account_accessor" {
  for_each = local.google_account_read_grants

  secret_id = google_secret_manager_secret.google_account[each.value.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime[each.value.function].email}"
}

resource "google_secret_manager_secret_iam_member" "google_account_rotator" {
  for_each = local.google_account_write_grants

  secret_id = google_secret_manager_secret.google_account[each.value.key].id
  role      = google_project_iam_custom_role.secret_rotator.name
  member    = "serviceAccount:${google_service_account.runtime[each.value.function].email}"
}

# One role per job-managing function, with exactly the Cloud Scheduler permissions its code
# needs (job_managers above). Narrower than roles/cloudscheduler.admin: running a job by hand
# only for the api (Traccar's "locate now" command), no listing, no other locations' settings;
# sync_device deletes only the one-shot job of a "locate now" it runs (its code); refresh_devices
# cannot delete or resume a job.
resource "google_project_iam_custom_role" "scheduler_jobs" {
  for_each = local.job_managers

  role_id     = "${local.role_prefix}_jobs_${each.key}"
  title       = "traccar-bridge sync jobs (${each.key})"
  description = "The Cloud Scheduler calls the ${each.key} function makes on per-device sync jobs."
  permissions = [for verb in each.value : "cloudscheduler.jobs.${verb}"]
}

# Cloud Scheduler jobs live in the project, not in a resource that IAM can scope further.
resource "google_project_iam_member" "scheduler_jobs" {
  for_each = local.job_managers

  project = var.project_id
  role    = google_project_iam_custom_role.scheduler_jobs[each.key].name
  member  = "serviceAccount:${google_service_account.runtime[each.key].email}"
}

# Creating or updating a job that carries the scheduler account's OIDC token takes
# iam.serviceAccounts.actAs on that account: granted on that one account, not project-wide.
# Every job manager upserts (sync_device for smart tracking).
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

# Public: Smartcar and TLINK post here without Google credentials. A Smartcar delivery is
# checked against SC-Signature, a TLINK push against its path token (/tlink/<token>) or
# X-TLink-Signature, before any work; a TLINK receiver with neither refuses every push.
resource "google_cloud_run_service_iam_member" "webhooks_public" {
  #checkov:skip=CKV_GCP_102:Public by design: vendors post without Google credentials; a signature or path token is checked before any work.
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
# What Cloud Build needs to turn a zip into a function image: write its logs (project-level: logs
# are no resource IAM scopes), push the image to the gcf-artifacts repository (made by Cloud
# Functions on the first deployment, so Terraform cannot grant on the repository beforehand:
# project-level) and read the function's source (below, never every bucket of the project).

resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/artifactregistry.writer",
    "roles/logging.logWriter",
  ])

  project = var.project_id
  role    = each.key
  member  = "serviceAccount:${google_service_account.build.email}"
}

locals {
  # Cloud Functions copies each zip from our bucket into its own gcf-v2-sources-<project
  # number>-<region> bucket ("Build process overview" in the Cloud Functions documentation) and
  # the build reads it there. That bucket is created by the first deployment: a bucket-level
  # grant on it cannot exist before the build that needs it, so it is a project-level grant
  # conditioned on the bucket's name (objects: projects/_/buckets/<bucket>/objects/<name>).
  functions_source_bucket = "gcf-v2-sources-${data.google_project.current.number}-${var.region}"
}

resource "google_project_iam_member" "build_reads_staged_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.build.email}"

  condition {
    title       = "function sources only"
    description = "The bucket Cloud Functions stages the function sources in, nothing else."
    expression  = "resource.name == \"projects/_/buckets/${local.functions_source_bucket}\" || resource.name.startsWith(\"projects/_/buckets/${local.functions_source_bucket}/\")"
  }
}

# The zips `make package` uploads (storage.tf), on that bucket only.
resource "google_storage_bucket_iam_member" "build_reads_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}
