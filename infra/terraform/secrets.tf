# Secret Manager secrets: Terraform makes the empty containers, never their versions. A
# google_secret_manager_secret_version would put the value in Terraform's state (and in the plan
# output of whoever runs it); instead the values arrive through the API (`PUT /auth/secrets`)
# or by hand (`gcloud secrets versions add`), see docs/deploy.md. Who may read or add versions of
# each secret is decided per secret in iam.tf.

locals {
  # Every secret the code names: the defaults of Settings' *_SECRET / *_SECRET_NAME fields
  # (the functions keep those defaults, functions.tf) and the two secret environment variables.
  # A test checks both directions: each secret the code reads is here, nothing here is unused.
  secrets = {
    "api-token"                 = "Bearer token of the REST API (API_TOKEN of the api function)"
    "smtp-password"             = "SMTP password of the notifications (NOTIFY_SMTP_PASS)"
    "traccar-api-token"         = "Traccar REST API token, to create devices Traccar does not know (TRACCAR_API_TOKEN_SECRET)"
    "traccar-command-key"       = "Key of Traccar's Find Hub commands to the API (/devices/<uniqueId>/position-*), written onto Traccar's devices (TRACCAR_COMMAND_KEY_SECRET)"
    "google-secrets"            = "Google Find My Device secrets.json (GOOGLE_SECRET_NAME); written by PUT /auth/secrets and on credential expiry"
    "smartcar-client-secret"    = "Smartcar OAuth client secret: Connect code exchange, token refresh (SMARTCAR_CLIENT_SECRET_SECRET)"
    "smartcar-management-token" = "Smartcar application management token: webhook signatures, VERIFY challenges, disconnecting removed vehicles (SMARTCAR_MANAGEMENT_TOKEN_SECRET)"
    "smartcar-tokens"           = "Smartcar OAuth tokens per user, written by Connect and refreshes (SMARTCAR_TOKENS_SECRET)"
    "tlink-credentials"         = "TLINK pull credentials JSON: clientId, clientSecret, username, password, optional userId (TLINK_CREDENTIALS_SECRET)"
    "tlink-webhook-secret"      = "HMAC key of X-TLink-Signature, when tlink_require_signature (TLINK_WEBHOOK_SECRET_NAME)"
    "tlink-path-token"          = "Token of the TLINK push path /tlink/<token>, when tlink_require_path_token (TLINK_PATH_TOKEN_SECRET)"
    "state-encryption-key"      = "AES-256 key (32 random bytes, base64) sealing the cached Google and TLINK access tokens in Firestore (STATE_KEY_SECRET)"
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

# Further Google accounts (docs/decisions/0004): each keeps its secrets.json in its own secret,
# google-secrets-<key> (layout.py AccountLayout.secret_name), created here because the functions
# may not create secrets (Secret Manager checks secrets.create on the project, not per name).
# The key is layout.py's account_key in HCL: the username trimmed and lower-cased, every run of
# characters outside [a-z0-9] made one "-", "-" trimmed off both ends, cut to 40 characters and
# trimmed again, then "-" and the first 8 hex digits of SHA-256 of the trimmed, lower-cased
# username (the digest alone when no slug is left). variables.tf takes printable ASCII only,
# where this equals the Python; tests/infra/test_terraform_google_accounts.py checks it does.
locals {
  google_account_names = [for username in var.google_accounts : lower(trimspace(username))]
  google_account_keys_by_name = {
    for name in local.google_account_names : name => join("-", compact([
      trim(substr(trim(replace(name, "/[^a-z0-9]+/", "-"), "-"), 0, 40), "-"),
      substr(sha256(name), 0, 8),
    ]))
  }
  # Key → secret id; the base is GOOGLE_SECRET_NAME, which the functions keep at its default.
  google_account_secrets = {
    for key in setunion(values(local.google_account_keys_by_name), var.google_account_keys) :
    key => "google-secrets-${key}"
  }
}

# Replication and labels as google-secrets above (a test compares them); access in iam.tf.
resource "google_secret_manager_secret" "google_account" {
  for_each = local.google_account_secrets

  secret_id = each.value
  labels = {
    managed-by = "terraform"
  }
  annotations = {
    purpose = "Google Find My Device secrets.json of a further account (docs/decisions/0004); written by PUT /auth/secrets and on credential expiry"
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}
