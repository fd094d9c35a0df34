# Secret Manager secrets: Terraform makes the empty containers, never their versions. A
# google_secret_manager_secret_version would put the value in Terraform's state (and in the plan
# output of whoever runs it); instead the values arrive through the API (`PUT /auth/secrets`)
# or by hand (`gcloud secrets versions add`), see docs/deploy.md. Who may read or add versions of
# each secret is decided per secret in iam.tf.

locals {
  secrets = {
    "google-secrets"            = "Google Find My Device secrets.json (aas_token, username, fcm_credentials, owner_key, shared_key)"
    "api-token"                 = "Bearer token of the REST API (API_TOKEN of the api function)"
    "traccar-api-token"         = "Traccar REST API token, to create and name devices"
    "smtp-password"             = "SMTP password of the notifications (NOTIFY_SMTP_PASS)"
    "smartcar-management-token" = "Smartcar application management token: webhook signatures and VERIFY challenges"
    "smartcar-client-secret"    = "Smartcar OAuth client secret (Connect code exchange, token refresh)"
    "smartcar-tokens"           = "Smartcar per-vehicle OAuth tokens"
    "tlink-credentials"         = "TLINK OAuth client and account"
    "tlink-webhook-secret"      = "Shared secret of the bridge's own TLINK push signature"
  }
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.secrets

  secret_id = each.key
  labels = {
    managed-by = "terraform"
  }
  annotations = {
    purpose = each.value
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}
