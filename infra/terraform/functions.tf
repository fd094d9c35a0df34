# The four functions (Cloud Functions 2nd gen: Cloud Run services built from the zips of
# storage.tf). Each runs as its own service account (iam.tf). Every environment variable name
# below is a field of shared/config.py's Settings (a test checks it); values not set here keep
# Settings' defaults.
#
# Sizes: 2nd gen gives a 256M instance 1/6 vCPU and a 512M one 1/3 vCPU; serving more than one
# request at a time needs a whole vCPU (six times the price), so every function takes one
# request per instance and scales out by instances instead. The bridge's traffic (a person, a
# few scripts, a handful of devices every few minutes) fits that and the free tier.

locals {
  # What every function needs in the cloud: the Google adapters instead of the local ones.
  base_environment = {
    SECRETS_BACKEND         = "secret_manager"
    SCHEDULER_BACKEND       = "cloud_scheduler"
    GCP_PROJECT             = var.project_id
    GCP_REGION              = var.region
    LOG_LEVEL               = var.log_level
    TRACCAR_SERVER_URL      = var.traccar_server_url
    TRACCAR_API_URL         = var.traccar_api_url
    PUSH_LOG_RETENTION_DAYS = tostring(var.push_log_retention_days)
  }

  # What the functions that sync, register devices or send mail need.
  tracking_environment = {
    AUTO_REGISTER_SERVICES  = tostring(var.auto_register_services)
    AUTO_REGISTER_TIMER     = tostring(var.auto_register_timer)
    AUTO_REGISTER_DELTA     = tostring(var.auto_register_delta)
    SMART_TRACKING_ENABLED  = tostring(var.smart_tracking_enabled)
    SMART_TRACKING_DISTANCE = tostring(var.smart_tracking_distance)
    SMART_TRACKING_TIMER    = tostring(var.smart_tracking_timer)
    SMART_TRACKING_DELTA    = tostring(var.smart_tracking_delta)
    SMART_TRACKING_DURATION = tostring(var.smart_tracking_duration)
    NOTIFY_SMTP_HOST        = var.notify_smtp_host
    NOTIFY_SMTP_PORT        = tostring(var.notify_smtp_port)
    NOTIFY_SMTP_USER        = var.notify_smtp_user
    NOTIFY_EMAIL_FROM       = var.notify_email_from
    NOTIFY_EMAIL_TO         = var.notify_email_to
    NOTIFY_SMTP_SSL         = tostring(var.notify_smtp_ssl)
  }

  # What the functions that create, pause and delete per-device sync jobs at run time need.
  # The run.app URI (not the cloudfunctions.net URL) is both the jobs' target and their OIDC
  # audience: Cloud Run accepts a token minted for its own URI.
  scheduler_environment = {
    SYNC_DEVICE_URL           = google_cloudfunctions2_function.sync_device.service_config[0].uri
    SCHEDULER_SERVICE_ACCOUNT = google_service_account.scheduler.email
    SCHEDULER_TIME_ZONE       = var.scheduler_time_zone
  }

  # NOTIFY_SMTP_PASS comes from the smtp-password secret only when notifications are on: a
  # secret environment variable whose secret has no version stops the function deploying.
  notify_enabled = var.notify_smtp_host != "" && var.notify_email_to != ""
}

# The REST API: public over HTTPS (iam.tf), protected by its bearer token (API_TOKEN).
resource "google_cloudfunctions2_function" "api" {
  #checkov:skip=CKV_GCP_124:The API is called from anywhere (phones, scripts, Traccar); its bearer token protects it.
  name        = "${var.name_prefix}-api"
  location    = var.region
  description = "traccar-bridge REST API"

  build_config {
    runtime         = var.python_runtime
    entry_point     = "api"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source["api"].name
      }
    }
  }

  service_config {
    # SPEC: the api peaks under 200 MiB.
    available_memory = "256M"
    # A manual sync (PUT /traccar/devices/<id>/locations) runs a Google locate in the request:
    # up to ~60 s waiting for the FCM answer, plus OAuth, Traccar and Firestore round trips.
    timeout_seconds                  = 180
    max_instance_request_concurrency = 1
    min_instance_count               = 0
    max_instance_count               = 3
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.runtime["api"].email

    environment_variables = merge(local.base_environment, local.tracking_environment, local.scheduler_environment)

    secret_environment_variables {
      key        = "API_TOKEN"
      project_id = var.project_id
      secret     = google_secret_manager_secret.secret["api-token"].secret_id
      version    = "latest"
    }

    dynamic "secret_environment_variables" {
      for_each = local.notify_enabled ? ["smtp-password"] : []
      content {
        key        = "NOTIFY_SMTP_PASS"
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  # The build account needs its roles before the first build, and the runtime account must be
  # able to read its secrets before the first revision starts.
  depends_on = [google_project_iam_member.build, google_secret_manager_secret_iam_member.accessor]
}

# One device's pipeline run, called by its Cloud Scheduler job (OIDC) only.
resource "google_cloudfunctions2_function" "sync_device" {
  name        = "${var.name_prefix}-sync-device"
  location    = var.region
  description = "traccar-bridge: sync one device (called by its Cloud Scheduler job)"

  build_config {
    runtime         = var.python_runtime
    entry_point     = "sync_device"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source["sync_device"].name
      }
    }
  }

  service_config {
    # SPEC: sync_device peaks under 400 MiB (decryption, protobuf, the FCM client).
    available_memory = "512M"
    # Google allows one FCM (MCS) session per account at a time: a second login displaces the
    # first, so two locate sessions must never overlap. One instance taking one request at a
    # time serialises the runs. The timeout is bounded above the locate's own limit: the run
    # sleeps its jitter (at most 60 s, variables.tf), a locate waits at most ~60 s for its FCM
    # answer and then gives up, and the rest (OAuth, Nova, Traccar, Firestore) takes seconds.
    # So a session is always over before the instance is free for the next request, even when
    # a run hits the timeout. 180 s is also Cloud Scheduler's default attempt deadline for the
    # per-device jobs. Cloud Run may briefly exceed max_instance_count in a surge: the
    # Firestore lease (shared/pipeline.py LEASE_DURATION, longer than this timeout) keeps two
    # runs of one device apart whatever happens.
    timeout_seconds                  = 180
    max_instance_request_concurrency = 1
    min_instance_count               = 0
    max_instance_count               = 1
    # Cloud Scheduler in the same project counts as internal traffic; nothing else calls it.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.runtime["sync_device"].email

    environment_variables = merge(local.base_environment, local.tracking_environment)

    dynamic "secret_environment_variables" {
      for_each = local.notify_enabled ? ["smtp-password"] : []
      content {
        key        = "NOTIFY_SMTP_PASS"
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  depends_on = [google_project_iam_member.build, google_secret_manager_secret_iam_member.accessor]
}

# The hourly refresh: device lists, new-device notices, auto-registration, token expiry.
resource "google_cloudfunctions2_function" "refresh_devices" {
  name        = "${var.name_prefix}-refresh-devices"
  location    = var.region
  description = "traccar-bridge: refresh the device lists (hourly Cloud Scheduler job)"

  build_config {
    runtime         = var.python_runtime
    entry_point     = "refresh_devices"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source["refresh_devices"].name
      }
    }
  }

  service_config {
    # It loads the Google source (protobuf device list) like sync_device, once an hour.
    available_memory = "512M"
    # Lists every source, then creates a Cloud Scheduler job per new device: a few seconds
    # each. Five minutes leaves room for a large account; the job's deadline is set above it.
    timeout_seconds                  = 300
    max_instance_request_concurrency = 1
    min_instance_count               = 0
    # Hourly: one run at a time is all it ever needs.
    max_instance_count             = 1
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.runtime["refresh_devices"].email

    environment_variables = merge(local.base_environment, local.tracking_environment, local.scheduler_environment)

    dynamic "secret_environment_variables" {
      for_each = local.notify_enabled ? ["smtp-password"] : []
      content {
        key        = "NOTIFY_SMTP_PASS"
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  depends_on = [google_project_iam_member.build, google_secret_manager_secret_iam_member.accessor]
}

# Vendor webhooks (Smartcar, TLINK): public, every delivery checked against its signature.
resource "google_cloudfunctions2_function" "webhooks" {
  #checkov:skip=CKV_GCP_124:Smartcar and TLINK post from the internet; every delivery is checked against its signature.
  name        = "${var.name_prefix}-webhooks"
  location    = var.region
  description = "traccar-bridge: Smartcar and TLINK webhooks"

  build_config {
    runtime         = var.python_runtime
    entry_point     = "webhooks"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source["webhooks"].name
      }
    }
  }

  service_config {
    # SPEC: webhooks peak under 200 MiB; no Google stack is imported here.
    available_memory = "256M"
    # Smartcar wants a 2xx within 15 s and retries otherwise (the handler is idempotent); a
    # delivery is verify, dedupe, store, push: well under that. 30 s caps a stuck Traccar call.
    timeout_seconds                  = 30
    max_instance_request_concurrency = 1
    min_instance_count               = 0
    # Smartcar may deliver concurrently; a few instances absorb a burst, and the cap bounds
    # what a flood of (rejected) unsigned requests can cost.
    max_instance_count             = 5
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.runtime["webhooks"].email

    environment_variables = local.base_environment
  }

  depends_on = [google_project_iam_member.build, google_secret_manager_secret_iam_member.accessor]
}
