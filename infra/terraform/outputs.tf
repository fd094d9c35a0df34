# What a user needs after `terraform apply`: where the API is, which URLs to register in the
# vendors' consoles, and the names to use with gcloud (docs/deploy.md).

output "api_url" {
  description = "Base URL of the REST API (GET /health needs no token)."
  value       = google_cloudfunctions2_function.api.url
}

output "webhooks_url" {
  description = "Base URL of the webhooks function."
  value       = google_cloudfunctions2_function.webhooks.url
}

output "smartcar_webhook_url" {
  description = "Callback URL to register in Smartcar's dashboard."
  value       = "${google_cloudfunctions2_function.webhooks.url}/smartcar"
}

output "tlink_webhook_url" {
  description = "Push URL to register in TLINK's console (device data update notification); with tlink_require_path_token, append /<the tlink-path-token secret's value>."
  value       = "${google_cloudfunctions2_function.webhooks.url}/tlink"
}

output "smartcar_redirect_uri" {
  description = "SMARTCAR_REDIRECT_URI: the Redirect URI to list in the Smartcar Dashboard (the api's /smartcar/exchange unless smartcar_redirect_uri is set)."
  value       = local.smartcar_redirect_uri
}

output "sync_device_url" {
  description = "Target and OIDC audience of the per-device sync jobs: sync_device's deterministic run.app URL (private: scheduler account only)."
  value       = local.run_urls["sync_device"]
}

output "refresh_devices_url" {
  description = "Target of the hourly refresh job (private: scheduler account only)."
  value       = google_cloudfunctions2_function.refresh_devices.service_config[0].uri
}

output "refresh_job" {
  description = "The hourly refresh job, to run it now: gcloud scheduler jobs run <name> --location <region>."
  value       = google_cloud_scheduler_job.refresh_devices.name
}

output "scheduler_service_account" {
  description = "Service account whose OIDC token the sync and refresh jobs carry."
  value       = google_service_account.scheduler.email
}

output "runtime_service_accounts" {
  description = "Runtime service account of each function."
  value       = { for name, account in google_service_account.runtime : name => account.email }
}

output "secrets" {
  description = "Secret ids to fill with `gcloud secrets versions add <id> --data-file=...`."
  value       = sort(keys(google_secret_manager_secret.secret))
}

output "google_account_secrets" {
  description = "Secret of each further Google account (google_accounts, google_account_keys); filled by PUT /auth/secrets."
  value       = sort([for secret in google_secret_manager_secret.google_account : secret.secret_id])
}

output "source_bucket" {
  description = "Bucket holding the function zips."
  value       = google_storage_bucket.sources.name
}
