# Cloud Monitoring (issue 20): log-based alert policies for the incidents the bridge alerts on
# itself (shared/alerts.py, shared/traccar_status.py log "alert opened" at ERROR with the
# alert's name in jsonPayload.alert) and for any function error, mailed to var.alert_email;
# and, with var.billing_account_id, a monthly budget. The bridge's own mail (NOTIFY_*) and
# /health say the same: these reach the user even when SMTP or the bridge itself is broken.

locals {
  alerting = var.alert_email != ""
  # The functions' logs: 2nd gen functions run as Cloud Run services named as the functions.
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${join(" OR ", [for f in sort(local.functions) : "\"${local.function_names[f]}\""])})"
  # Name prefix of each incident's alert (shared.alerts, shared.traccar_status) → its title.
  incident_policies = {
    traccar_down     = "Traccar does not accept positions (ALERT_TRACCAR_DOWN_MINUTES)"
    device_silent    = "A synced device sends no positions (ALERT_DEVICE_SILENT_HOURS)"
    webhooks_silent  = "A vendor's webhooks stopped arriving (ALERT_WEBHOOKS_SILENT_HOURS)"
    positions_parked = "Traccar keeps refusing a device's positions (parked in the outbox)"
  }
}

resource "google_monitoring_notification_channel" "email" {
  count = local.alerting ? 1 : 0

  display_name = "traccar-bridge alerts (${var.alert_email})"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "incident" {
  for_each = local.alerting ? local.incident_policies : {}

  display_name          = "traccar-bridge: ${each.value}"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email[0].id]

  conditions {
    display_name = "alert opened: ${each.key}"
    condition_matched_log {
      filter = "${local.function_logs} AND severity=ERROR AND jsonPayload.message:\"alert opened\" AND jsonPayload.alert:\"${each.key}\""
    }
  }

  # A log-based policy notifies at most once per period; it closes by itself after a day.
  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }

  documentation {
    content   = "See docs/deploy.md, Operating it: what the ${each.key} alert means and what to do. GET /health (with the API token) lists the open alerts."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "function_errors" {
  count = local.alerting ? 1 : 0

  display_name          = "traccar-bridge: function errors"
  combiner              = "OR"
  notification_channels = [google_monitoring_notification_channel.email[0].id]

  conditions {
    display_name = "a function logged an error"
    condition_matched_log {
      filter = "${local.function_logs} AND severity>=ERROR AND NOT jsonPayload.message:\"alert opened\""
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }

  documentation {
    content   = "A function logged an error (an unhandled exception, a vendor refusing, Firestore unreachable). Open Logs Explorer on the function's Cloud Run service; docs/deploy.md, Operating it."
    mime_type = "text/markdown"
  }
}

resource "google_billing_budget" "monthly" {
  count = var.billing_account_id != "" ? 1 : 0

  billing_account = var.billing_account_id
  display_name    = "traccar-bridge ${var.project_id}"

  budget_filter {
    projects = ["projects/${data.google_project.current.number}"]
  }

  amount {
    specified_amount {
      units = tostring(var.budget_amount)
    }
  }

  threshold_rules {
    threshold_percent = 0.5
  }
  threshold_rules {
    threshold_percent = 0.9
  }
  threshold_rules {
    threshold_percent = 1.0
  }

  # Without a channel the billing account's admins get the mail; with one, the user too.
  all_updates_rule {
    monitoring_notification_channels = local.alerting ? [google_monitoring_notification_channel.email[0].id] : []
    disable_default_iam_recipients   = false
  }

  depends_on = [google_project_service.enabled]
}
