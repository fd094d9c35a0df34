# The Cloud Scheduler jobs Terraform makes: the hourly refresh_devices run and the sweep (below).
# The per-device sync jobs are made and changed at run time through the Cloud Scheduler API
# (shared/scheduler.py), with the same service account's OIDC token: created by the api and by
# refresh_devices (auto-registration), re-planned by smart tracking (sync_device, the api,
# refresh_devices), paused when Google refuses the credentials (whichever function meets it).
# Terraform neither creates nor sees them, so `terraform apply` never undoes a user's services.

resource "google_cloud_scheduler_job" "refresh_devices" {
  name        = "${var.name_prefix}-refresh-devices"
  region      = var.region
  description = "traccar-bridge: refresh the device lists, notify, auto-register, renew Smartcar tokens"
  schedule    = var.refresh_schedule
  time_zone   = var.scheduler_time_zone
  # Longer than the function's timeout (300 s), so Cloud Scheduler never gives up on a run
  # that is still going and starts it again next to itself.
  attempt_deadline = "320s"

  retry_config {
    # One retry, a minute later, for a cold start or a transient error (Google, Firestore,
    # Smartcar); the next hour runs anyway. A retry repeats no registration and no email:
    # devices, services and notices are recorded as the run goes.
    retry_count          = 1
    min_backoff_duration = "60s"
    max_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.refresh_devices.service_config[0].uri
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.refresh_devices.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler_invokes_refresh_devices]
}

# The sweep (issue 16): every minute by default, refresh_devices delivers what webhooks handed off to
# a busy device's outbox and no lease holder delivered (its run died or failed before its push,
# or the delivery came just as it let go). Webhook-only devices (Smartcar, TLINK) have no sync
# job of their own to sweep after, so without this job such a delivery waited for the hourly
# refresh. The sweep also retries every outbox whose backoff has ended (a webhook-only device's
# positions Traccar refused waited for its next webhook before). `?sweep=only` runs the sweep
# and nothing else (no Google or Smartcar call, no alert evaluation): one Firestore query when
# nothing is due (docs/decisions/0002). The resource and the job keep their first name (it swept
# hand-offs only; the Python method is now `Sync.sweep_due_outboxes`): renaming either would make
# Terraform destroy and recreate the job.
resource "google_cloud_scheduler_job" "sweep_handoffs" {
  name        = "${var.name_prefix}-sweep-handoffs"
  region      = var.region
  description = "traccar-bridge: deliver every due outbox (handed-off deliveries, ended backoffs)"
  schedule    = var.sweep_schedule
  time_zone   = var.scheduler_time_zone
  # A sweep runs at most SWEEP_LIMIT devices' pipelines; the function's timeout bounds it.
  attempt_deadline = "320s"

  retry_config {
    # No retry: the next run comes within minutes and sweeps the same states.
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    # The OIDC audience stays the bare URL (what Cloud Run checks); the query selects the sweep.
    uri = "${google_cloudfunctions2_function.refresh_devices.service_config[0].uri}/?sweep=only"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.refresh_devices.service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler_invokes_refresh_devices]
}
