# The four functions (Cloud Functions 2nd gen: Cloud Run services built from the zips of
# storage.tf). Each runs as its own service account (iam.tf). Every environment variable name
# below is a field of shared/config.py's Settings (a test checks it, and that every Settings
# field is either set here or deliberately left at its default); values not set here keep
# Settings' defaults: the vendors' endpoints (GOOGLE_AUTH_URL, GOOGLE_NOVA_URL, GOOGLE_MCS_*,
# SMARTCAR_*_ORIGIN are seams for the tests' fakes) and the secret names (*_SECRET,
# *_SECRET_NAME), whose defaults are the ids secrets.tf creates.
#
# Sizes: 2nd gen gives a 256M instance 1/6 vCPU and a 512M one 1/3 vCPU; serving more than one
# request at a time needs a whole vCPU (six times the price), so every function takes one
# request per instance and scales out by instances instead. The bridge's traffic (a person, a
# few scripts, a handful of devices every few minutes) fits that and the free tier.

# The project number, for the functions' deterministic URLs below.
data "google_project" "current" {
  project_id = var.project_id
}

locals {
  # Each function's name, which is also the name of the Cloud Run service a 2nd gen function
  # runs as, and the id of its service account (iam.tf).
  function_names = {
    for function in local.functions : function => "${var.name_prefix}-${replace(function, "_", "-")}"
  }

  # The deterministic URL Cloud Run gives every service whose "<service>-<project number>" fits
  # in a 63-character DNS label (here at most 29 + 1 + the project number's digits; variables.tf
  # bounds name_prefix): https://<service>-<project number>.<region>.run.app (Cloud Run docs,
  # "Service URL" / "Deterministic URL"). It is known before the service exists, so a function
  # can be told its own URL: sync_device needs SYNC_DEVICE_URL because smart tracking re-plans
  # its own device's job, and the api needs its own /smartcar/exchange URL for Smartcar
  # Connect; google_cloudfunctions2_function.<f>.service_config[0].uri would make both a
  # dependency cycle. docs/decisions/0001-terraform-layout.md.
  run_urls = {
    for function, name in local.function_names :
    function => "https://${name}-${data.google_project.current.number}.${var.region}.run.app"
  }

  smartcar_redirect_uri = var.smartcar_redirect_uri != "" ? var.smartcar_redirect_uri : "${local.run_urls["api"]}/smartcar/exchange"

  # What every function needs in the cloud: the Google adapters instead of the local ones,
  # Traccar, the push log's retention and the log level.
  base_environment = {
    SECRETS_BACKEND         = "secret_manager"
    SCHEDULER_BACKEND       = "cloud_scheduler"
    GCP_PROJECT             = var.project_id
    GCP_REGION              = var.region
    LOG_LEVEL               = var.log_level
    TRACCAR_SERVER_URL      = var.traccar_server_url
    TRACCAR_API_URL         = var.traccar_api_url
    TRACCAR_API_AUTH        = var.traccar_api_auth
    TRACCAR_DEVICE_USER_ID  = var.traccar_device_user_id
    TRACCAR_DEVICE_GROUP_ID = var.traccar_device_group_id
    PUSH_LOG_RETENTION_DAYS = tostring(var.push_log_retention_days)
    # Issue 20: the rotation grace of the API token and TLINK's secrets, and the alerts.
    ROTATION_GRACE_HOURS        = tostring(var.rotation_grace_hours)
    ALERT_TRACCAR_DOWN_MINUTES  = tostring(var.alert_traccar_down_minutes)
    ALERT_DEVICE_SILENT_HOURS   = tostring(var.alert_device_silent_hours)
    ALERT_WEBHOOKS_SILENT_HOURS = tostring(var.alert_webhooks_silent_hours)
  }

  # What the functions that locate Google trackers, register sync services, run smart
  # tracking or send mail need (api, sync_device, refresh_devices).
  tracking_environment = {
    FCM_TIMEOUT             = tostring(var.fcm_timeout)
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

  # What the functions that create, update, pause or resume per-device sync jobs at run time
  # need (iam.tf job_managers): the api (services, new credentials), refresh_devices
  # (auto-registration, smart tracking's end) and sync_device (smart tracking re-plans the
  # job; Google's refusal pauses the Google jobs). Every one of them writes the same target,
  # so a job keeps its URL whoever touched it last; that URL is also the jobs' OIDC audience
  # (Cloud Run accepts ID tokens minted for its run.app URLs).
  scheduler_environment = {
    SYNC_DEVICE_URL           = local.run_urls["sync_device"]
    SCHEDULER_SERVICE_ACCOUNT = google_service_account.scheduler.email
    SCHEDULER_TIME_ZONE       = var.scheduler_time_zone
  }

  # Traccar's "Send command" (Find Hub sender): sync_device writes the API's URL and the
  # command key onto the devices it creates or finds in Traccar, refresh_devices onto those
  # that existed before (never the api, and never the public webhooks function, which does
  # not get the key).
  commands_environment = {
    API_URL = local.run_urls["api"]
  }

  # Smartcar's OAuth client: Connect (api) and the token refreshes (api and sync_device when
  # they pull a vehicle, refresh_devices renewing refresh tokens) all go through the SDK's
  # AuthClient, which needs the client id, the redirect URI and the mode.
  smartcar_environment = {
    SMARTCAR_CLIENT_ID    = var.smartcar_client_id
    SMARTCAR_REDIRECT_URI = local.smartcar_redirect_uri
    SMARTCAR_SCOPE        = var.smartcar_scope
    SMARTCAR_MODE         = var.smartcar_mode
  }

  # TLINK's readings: stored by pushes (webhooks), pulls (sync_device, the api's manual
  # sync) and the hourly discovery (refresh_devices), shown by the api's views; all of them
  # read TLINK's naive times in its zone.
  tlink_environment = {
    TLINK_API_URL                = var.tlink_api_url
    TLINK_TIME_ZONE              = var.tlink_time_zone
    TLINK_READING_RETENTION_DAYS = tostring(var.tlink_reading_retention_days)
  }

  # What only the vendors' receivers read: TLINK's push protections (one is required unless
  # unauthenticated pushes are allowed on purpose) and how long Smartcar's raw deliveries are kept.
  webhooks_environment = {
    TLINK_REQUIRE_PATH_TOKEN      = tostring(var.tlink_require_path_token)
    TLINK_REQUIRE_SIGNATURE       = tostring(var.tlink_require_signature)
    TLINK_ALLOW_UNAUTHENTICATED   = tostring(var.tlink_allow_unauthenticated)
    SMARTCAR_EVENT_RETENTION_DAYS = tostring(var.smartcar_event_retention_days)
  }

  # NOTIFY_SMTP_PASS comes from the smtp-password secret only when notifications are on: a
  # secret environment variable whose secret has no version stops the function deploying.
  notify_enabled = var.notify_smtp_host != "" && var.notify_email_to != ""
}

# The REST API: public over HTTPS (iam.tf), protected by its bearer token (API_TOKEN).
resource "google_cloudfunctions2_function" "api" {
  #checkov:skip=CKV_GCP_124:The API is called from anywhere (phones, scripts, Traccar); its bearer token protects it.
  name        = local.function_names["api"]
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
    # up to FCM_TIMEOUT (at most 60 s, variables.tf) waiting for the FCM answer, plus OAuth,
    # Traccar and Firestore round trips; a Smartcar or TLINK pull takes seconds.
    timeout_seconds                  = 180
    max_instance_request_concurrency = 1
    min_instance_count               = 0
    max_instance_count               = 3
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.runtime["api"].email

    environment_variables = merge(
      local.base_environment,
      local.tracking_environment,
      local.scheduler_environment,
      local.smartcar_environment,
      local.tlink_environment,
    )

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
  depends_on = [
    google_project_iam_member.build,
    google_project_iam_member.build_reads_staged_sources,
    google_storage_bucket_iam_member.build_reads_sources,
    google_secret_manager_secret_iam_member.accessor,
  ]
}

# One device's pipeline run, called by its Cloud Scheduler job (OIDC) only.
resource "google_cloudfunctions2_function" "sync_device" {
  name        = local.function_names["sync_device"]
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
    # sleeps its jitter (at most 60 s, variables.tf), a locate waits at most FCM_TIMEOUT (at
    # most 60 s, variables.tf) for its FCM answer and then gives up, and the rest (OAuth, Nova,
    # Traccar, Firestore, a Smartcar or TLINK pull) takes seconds.
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

    environment_variables = merge(
      local.base_environment,
      local.tracking_environment,
      local.scheduler_environment,
      local.commands_environment,
      local.smartcar_environment,
      local.tlink_environment,
    )

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

  depends_on = [
    google_project_iam_member.build,
    google_project_iam_member.build_reads_staged_sources,
    google_storage_bucket_iam_member.build_reads_sources,
    google_secret_manager_secret_iam_member.accessor,
  ]
}

# The hourly refresh: Google device list, new-device notices, auto-registration, smart
# tracking that ran out, Google credential expiry, Smartcar refresh tokens near their end.
resource "google_cloudfunctions2_function" "refresh_devices" {
  name        = local.function_names["refresh_devices"]
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
    # Lists the Google trackers, creates a Cloud Scheduler job per new device (a few seconds
    # each), ends smart tracking that ran out and renews Smartcar refresh tokens near their
    # end. Five minutes leaves room for a large account; the job's deadline is set above it.
    timeout_seconds                  = 300
    max_instance_request_concurrency = 1
    min_instance_count               = 0
    # Hourly: one run at a time is all it ever needs.
    max_instance_count             = 1
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.runtime["refresh_devices"].email

    # TLINK: the hourly refresh lists the account's devices (TlinkSource.discover).
    environment_variables = merge(
      local.base_environment,
      local.tracking_environment,
      local.scheduler_environment,
      local.commands_environment,
      local.smartcar_environment,
      local.tlink_environment,
    )

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

  depends_on = [
    google_project_iam_member.build,
    google_project_iam_member.build_reads_staged_sources,
    google_storage_bucket_iam_member.build_reads_sources,
    google_secret_manager_secret_iam_member.accessor,
  ]
}

# Vendor webhooks (Smartcar, TLINK): public. A Smartcar delivery is checked against its
# signature, a TLINK push against its path token or signature (TLINK signs nothing itself).
resource "google_cloudfunctions2_function" "webhooks" {
  #checkov:skip=CKV_GCP_124:Smartcar and TLINK post from the internet; Smartcar deliveries carry a signature, TLINK pushes a path token or signature, checked before any work.
  name        = local.function_names["webhooks"]
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

    environment_variables = merge(local.base_environment, local.tlink_environment, local.webhooks_environment)
  }

  depends_on = [
    google_project_iam_member.build,
    google_project_iam_member.build_reads_staged_sources,
    google_storage_bucket_iam_member.build_reads_sources,
    google_secret_manager_secret_iam_member.accessor,
  ]
}
