# Inputs of the deployment. `terraform.tfvars.example` lists what a user must set; everything
# else has the default that shared/config.py (Settings) has, so a value only needs setting here
# when it should differ. Validations mirror Settings' bounds: a typo fails at plan time rather
# than as a ConfigError in every function at run time.

# --- Where --------------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project id (billing enabled)."
  type        = string
}

variable "region" {
  description = "Region of the functions, the scheduler jobs and the source bucket."
  type        = string
  default     = "europe-west1"
}

variable "firestore_location" {
  description = "Firestore location (a region such as europe-west1, or a multi-region such as eur3). Empty: the functions' region. Cannot change once the database exists."
  type        = string
  default     = ""
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, service accounts, bucket, jobs)."
  type        = string
  default     = "bridge"

  validation {
    # Service account ids are 6 to 30 characters: the longest is "<prefix>-refresh-devices".
    condition     = can(regex("^[a-z][a-z0-9-]{1,12}$", var.name_prefix))
    error_message = "name_prefix: 2 to 13 characters, lowercase letters, digits and '-', starting with a letter."
  }
}

variable "dist_dir" {
  description = "Folder holding the function zips that `make package` builds."
  type        = string
  default     = "../../dist"
}

variable "python_runtime" {
  description = "Cloud Functions runtime; the version the test suite runs on."
  type        = string
  default     = "python311"
}

variable "log_level" {
  description = "LOG_LEVEL of every function."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level: one of DEBUG, INFO, WARNING, ERROR."
  }
}

# --- Traccar ------------------------------------------------------------------------------------

variable "traccar_server_url" {
  description = "TRACCAR_SERVER_URL: the OsmAnd endpoint of your Traccar server (port 5055 by default, not the web port)."
  type        = string

  validation {
    condition     = can(regex("^https?://", var.traccar_server_url))
    error_message = "traccar_server_url: an http:// or https:// URL."
  }
}

variable "traccar_api_url" {
  description = "TRACCAR_API_URL: Traccar's web/REST base URL; when set, the bridge creates unknown devices in Traccar (token in the traccar-api-token secret)."
  type        = string
  default     = ""

  validation {
    condition     = var.traccar_api_url == "" || can(regex("^https?://", var.traccar_api_url))
    error_message = "traccar_api_url: empty, or an http:// or https:// URL."
  }
}

variable "traccar_api_auth" {
  description = "TRACCAR_API_AUTH: what the traccar-api-token secret holds: token (expires, 7 days by default) or basic (email:password of a dedicated Traccar user)."
  type        = string
  default     = "token"

  validation {
    condition     = contains(["token", "basic"], var.traccar_api_auth)
    error_message = "traccar_api_auth: token or basic."
  }
}

variable "traccar_device_user_id" {
  description = "TRACCAR_DEVICE_USER_ID: the Traccar user each created device is linked to (empty: none)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[0-9]*$", var.traccar_device_user_id))
    error_message = "traccar_device_user_id: empty or a Traccar user id."
  }
}

variable "traccar_device_group_id" {
  description = "TRACCAR_DEVICE_GROUP_ID: the Traccar group each created device joins (empty: none)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[0-9]*$", var.traccar_device_group_id))
    error_message = "traccar_device_group_id: empty or a Traccar group id."
  }
}

# --- Scheduling ---------------------------------------------------------------------------------

variable "scheduler_time_zone" {
  description = "SCHEDULER_TIME_ZONE of the sync jobs and of the refresh job (tz database name)."
  type        = string
  default     = "Etc/UTC"
}

variable "refresh_schedule" {
  description = "Cron schedule of the refresh_devices job."
  type        = string
  default     = "0 * * * *"
}

variable "sweep_schedule" {
  description = "Cron schedule of the sweep job (refresh_devices ?sweep=only): every minute by default, at most every 5: a delivery handed off to a busy device whose lease holder died waits for that lease (60 s for a webhook run, 200 s for a pull, shared/pipeline.py) plus one sweep interval, within 5 minutes at the default (issue 16)."
  type        = string
  default     = "* * * * *"
}

variable "auto_register_services" {
  description = "AUTO_REGISTER_SERVICES: create a sync service for every new device that is not excluded."
  type        = bool
  default     = true
}

variable "auto_register_timer" {
  description = "AUTO_REGISTER_TIMER: sync interval (seconds) of auto-registered services."
  type        = number
  default     = 600

  validation {
    condition     = var.auto_register_timer >= 60 && var.auto_register_timer <= 86400
    error_message = "auto_register_timer: 60 to 86400 seconds."
  }
}

variable "auto_register_delta" {
  description = "AUTO_REGISTER_DELTA: jitter (seconds) of auto-registered services."
  type        = number
  default     = 5

  validation {
    # sync_device sleeps up to the jitter inside its run, and that run is bounded by the
    # function's timeout (functions.tf): a larger jitter would eat the locate's time.
    condition     = var.auto_register_delta >= 0 && var.auto_register_delta <= 60
    error_message = "auto_register_delta: 0 to 60 seconds in the cloud (the jitter is slept inside sync_device's bounded run)."
  }
}

variable "smart_tracking_enabled" {
  description = "SMART_TRACKING_ENABLED: locate a device that moved more often for a while."
  type        = bool
  default     = false
}

variable "smart_tracking_distance" {
  description = "SMART_TRACKING_DISTANCE: movement (metres) that switches smart tracking on."
  type        = number
  default     = 100

  validation {
    condition     = var.smart_tracking_distance > 0
    error_message = "smart_tracking_distance: more than 0 metres."
  }
}

variable "smart_tracking_timer" {
  description = "SMART_TRACKING_TIMER: interval (seconds) while smart tracking."
  type        = number
  default     = 60

  validation {
    condition     = var.smart_tracking_timer >= 10 && var.smart_tracking_timer <= 3600
    error_message = "smart_tracking_timer: 10 to 3600 seconds."
  }
}

variable "smart_tracking_delta" {
  description = "SMART_TRACKING_DELTA: jitter (seconds) while smart tracking."
  type        = number
  default     = 10

  validation {
    condition     = var.smart_tracking_delta >= 0 && var.smart_tracking_delta <= 60
    error_message = "smart_tracking_delta: 0 to 60 seconds in the cloud (the jitter is slept inside sync_device's bounded run)."
  }
}

variable "smart_tracking_duration" {
  description = "SMART_TRACKING_DURATION: how long (seconds) smart tracking lasts."
  type        = number
  default     = 900

  validation {
    condition     = var.smart_tracking_duration > 0 && var.smart_tracking_duration <= 86400
    error_message = "smart_tracking_duration: 1 to 86400 seconds."
  }
}

# --- Google Find My Device ----------------------------------------------------------------------

variable "fcm_timeout" {
  description = "FCM_TIMEOUT: seconds a Google locate waits for the tracker's answer over FCM."
  type        = number
  default     = 60

  validation {
    # Settings accepts up to 300 s, but in the cloud a locate runs inside sync_device's
    # bounded run (functions.tf: jitter up to 60 s, this wait, then the pushes, within 180 s)
    # and inside a manual sync of the api (180 s too): a longer wait would be cut off by the
    # function's timeout while the FCM session is still open.
    condition     = var.fcm_timeout >= 2 && var.fcm_timeout <= 60
    error_message = "fcm_timeout: 2 to 60 seconds in the cloud (a locate must end well within sync_device's 180 s run)."
  }
}

# Several Google accounts (docs/decisions/0004): the first account uploaded keeps google-secrets;
# each further one needs its own secret google-secrets-<key>, which Terraform creates and grants
# from these lists (secrets.tf, iam.tf). The functions never read these lists: they learn their
# accounts from PUT /auth/secrets (Firestore's google_accounts).
variable "google_accounts" {
  description = "Usernames (email addresses) of the further Google accounts: each gets its secret google-secrets-<key> (key as shared/sources/google/layout.py derives it), readable and writable by the functions that use google-secrets. Listing the first account too only adds an empty secret. Removing a username deletes its secret at the next apply: remove the account first (DELETE /auth/accounts/<username>)."
  type        = list(string)
  default     = []

  validation {
    # secrets.tf derives the key in HCL. Terraform's lower() and trimspace() equal Python's
    # casefold() and strip() on printable ASCII only (not on e.g. "ß" or "İ"), and cty's NFC
    # normalization changes no ASCII: any other username would get another key than the code's.
    condition     = alltrue([for username in var.google_accounts : can(regex("^[!-~]+$", trimspace(username)))])
    error_message = "google_accounts: each username printable ASCII without blanks. For any other username, put its key (make -s google-account-key ACCOUNT=<username>) in google_account_keys instead."
  }

  validation {
    condition     = length(distinct([for username in var.google_accounts : lower(trimspace(username))])) == length(var.google_accounts)
    error_message = "google_accounts: a username is listed twice (usernames compare without case)."
  }
}

variable "google_account_keys" {
  description = "Keys of further Google accounts whose usernames google_accounts cannot take (not printable ASCII), each printed by `make -s google-account-key ACCOUNT=<username>`: each gets the secret google-secrets-<key>, as an account of google_accounts does."
  type        = list(string)
  default     = []

  validation {
    # layout.py account_key: a slug of [a-z0-9] runs joined by "-" (at most 40), "-", 8 hex
    # digits; or the 8 hex digits alone when the username has no [a-z0-9] at all.
    condition     = alltrue([for key in var.google_account_keys : can(regex("^([a-z0-9]+(-[a-z0-9]+)*-)?[0-9a-f]{8}$", key)) && length(key) <= 49])
    error_message = "google_account_keys: keys as make -s google-account-key ACCOUNT=<username> prints them (e.g. family-member-example-org-1a2b3c4d)."
  }
}

# --- Smartcar -----------------------------------------------------------------------------------

variable "smartcar_client_id" {
  description = "SMARTCAR_CLIENT_ID: the application's client id (Smartcar Dashboard); its secret goes to the smartcar-client-secret secret. Empty: Smartcar Connect and pulls are off."
  type        = string
  default     = ""
}

variable "smartcar_redirect_uri" {
  description = "SMARTCAR_REDIRECT_URI: where Smartcar Connect sends the browser back. Empty: the api's /smartcar/exchange (output smartcar_redirect_uri), which must be listed under Redirect URIs in the Smartcar Dashboard."
  type        = string
  default     = ""

  validation {
    condition     = var.smartcar_redirect_uri == "" || can(regex("^https://", var.smartcar_redirect_uri))
    error_message = "smartcar_redirect_uri: empty, or an https:// URL."
  }
}

variable "smartcar_scope" {
  description = "SMARTCAR_SCOPE: permissions asked in Smartcar Connect (space- or comma-separated)."
  type        = string
  default     = "read_vehicle_info read_location read_odometer read_battery read_charge"
}

variable "smartcar_mode" {
  description = "SMARTCAR_MODE: Smartcar Connect's mode."
  type        = string
  default     = "live"

  validation {
    condition     = contains(["live", "test", "simulated"], var.smartcar_mode)
    error_message = "smartcar_mode: one of live, test, simulated."
  }
}

variable "smartcar_event_retention_days" {
  description = "SMARTCAR_EVENT_RETENTION_DAYS: days raw Smartcar deliveries (smartcar_events) and their idempotency records live before Firestore's TTL deletes them."
  type        = number
  default     = 30

  validation {
    condition     = var.smartcar_event_retention_days >= 1 && var.smartcar_event_retention_days <= 3650
    error_message = "smartcar_event_retention_days: 1 to 3650."
  }
}

# --- TLINK --------------------------------------------------------------------------------------

variable "tlink_api_url" {
  description = "TLINK_API_URL: base URL of TLINK's REST API (pulls); the pull credentials go to the tlink-credentials secret."
  type        = string
  default     = "https://app.dtuip.com"

  validation {
    condition     = can(regex("^https?://", var.tlink_api_url))
    error_message = "tlink_api_url: an http:// or https:// URL."
  }
}

variable "tlink_time_zone" {
  description = "TLINK_TIME_ZONE: IANA zone of TLINK's naive timestamps (a name the functions do not know stops them at start with a ConfigError naming it)."
  type        = string
  default     = "Asia/Shanghai"

  validation {
    # Terraform cannot look a zone up; this catches the obvious typos (spaces, empty).
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_+/-]*$", var.tlink_time_zone))
    error_message = "tlink_time_zone: an IANA zone name such as Asia/Shanghai or Etc/UTC."
  }
}

# On by default (the settings' own default is off, for local runs): a receiver without a
# protection refuses every push, and `make deploy` refuses to apply one (devtools/deploy_check.py).
variable "tlink_require_path_token" {
  description = "TLINK_REQUIRE_PATH_TOKEN: accept pushes only on <webhooks>/tlink/<token>, the token being the tlink-path-token secret's value (which must then have a version: docs/deploy.md step 6)."
  type        = bool
  default     = true
}

variable "tlink_require_signature" {
  description = "TLINK_REQUIRE_SIGNATURE: require X-TLink-Signature (HMAC-SHA256 of the body keyed by the tlink-webhook-secret secret, which must then have a version)."
  type        = bool
  default     = false
}

variable "tlink_allow_unauthenticated" {
  description = "TLINK_ALLOW_UNAUTHENTICATED: with neither protection above, accept pushes from anyone who knows the URL (they reach Traccar). Off: such a receiver refuses every push, and make deploy refuses the configuration."
  type        = bool
  default     = false
}

variable "tlink_reading_retention_days" {
  description = "TLINK_READING_RETENTION_DAYS: days a TLINK sensor reading (tlink_readings) lives before Firestore's TTL deletes it."
  type        = number
  default     = 365

  validation {
    condition     = var.tlink_reading_retention_days >= 1 && var.tlink_reading_retention_days <= 3650
    error_message = "tlink_reading_retention_days: 1 to 3650."
  }
}

# --- Notifications (SMTP; off while notify_smtp_host or notify_email_to is empty) ---------------

variable "notify_smtp_host" {
  description = "NOTIFY_SMTP_HOST. With notify_email_to also set, notifications are on and NOTIFY_SMTP_PASS comes from the smtp-password secret, which must then have a version before `make deploy`."
  type        = string
  default     = ""
}

variable "notify_smtp_port" {
  description = "NOTIFY_SMTP_PORT: 587 for STARTTLS, 465 with notify_smtp_ssl."
  type        = number
  default     = 587

  validation {
    condition     = var.notify_smtp_port >= 1 && var.notify_smtp_port <= 65535
    error_message = "notify_smtp_port: 1 to 65535."
  }
}

variable "notify_smtp_user" {
  description = "NOTIFY_SMTP_USER."
  type        = string
  default     = ""
}

variable "notify_email_from" {
  description = "NOTIFY_EMAIL_FROM; empty: notify_smtp_user."
  type        = string
  default     = ""
}

variable "notify_email_to" {
  description = "NOTIFY_EMAIL_TO: recipients, comma-separated."
  type        = string
  default     = ""
}

variable "notify_smtp_ssl" {
  description = "NOTIFY_SMTP_SSL: implicit TLS (port 465) instead of STARTTLS."
  type        = bool
  default     = false
}

# --- Data retention -----------------------------------------------------------------------------

variable "push_log_retention_days" {
  description = "PUSH_LOG_RETENTION_DAYS: days a push-log entry lives before Firestore's TTL deletes it."
  type        = number
  default     = 90

  validation {
    condition     = var.push_log_retention_days >= 1 && var.push_log_retention_days <= 3650
    error_message = "push_log_retention_days: 1 to 3650."
  }
}

# --- Operating it (issue 20): rotation, alerts, budget -----------------------------------------

variable "rotation_grace_hours" {
  description = "ROTATION_GRACE_HOURS: after a new version of api-token, tlink-path-token or tlink-webhook-secret, the previous one keeps working this long."
  type        = number
  default     = 24

  validation {
    condition     = var.rotation_grace_hours >= 0 && var.rotation_grace_hours <= 720
    error_message = "rotation_grace_hours: 0 to 720."
  }
}

variable "alert_traccar_down_minutes" {
  description = "ALERT_TRACCAR_DOWN_MINUTES: Traccar's OsmAnd endpoint refusing or unreachable this long opens the traccar_down alert."
  type        = number
  default     = 30

  validation {
    condition     = var.alert_traccar_down_minutes >= 1 && var.alert_traccar_down_minutes <= 10080
    error_message = "alert_traccar_down_minutes: 1 to 10080."
  }
}

variable "alert_device_silent_hours" {
  description = "ALERT_DEVICE_SILENT_HOURS: a synced device without a new position this long opens its device_silent alert (a service's silent_hours overrides it)."
  type        = number
  default     = 24

  validation {
    condition     = var.alert_device_silent_hours >= 1 && var.alert_device_silent_hours <= 8760
    error_message = "alert_device_silent_hours: 1 to 8760."
  }
}

variable "alert_webhooks_silent_hours" {
  description = "ALERT_WEBHOOKS_SILENT_HOURS: a vendor's webhooks, once seen, silent this long open its webhooks_silent alert."
  type        = number
  default     = 24

  validation {
    condition     = var.alert_webhooks_silent_hours >= 1 && var.alert_webhooks_silent_hours <= 8760
    error_message = "alert_webhooks_silent_hours: 1 to 8760."
  }
}

variable "alert_email" {
  description = "Where Cloud Monitoring mails its alerts (the incidents above and function errors). Empty: no alert policies."
  type        = string
  default     = ""

  validation {
    condition     = var.alert_email == "" || can(regex("^[^@\\s]+@[^@\\s]+$", var.alert_email))
    error_message = "alert_email: one email address, or empty."
  }
}

variable "billing_account_id" {
  description = "Billing account id (XXXXXX-XXXXXX-XXXXXX) for a budget alert on this project. Empty: no budget."
  type        = string
  default     = ""

  validation {
    condition     = var.billing_account_id == "" || can(regex("^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$", var.billing_account_id))
    error_message = "billing_account_id: XXXXXX-XXXXXX-XXXXXX (hex, upper case), or empty."
  }
}

variable "budget_amount" {
  description = "Monthly budget (in the billing account's currency) whose 50, 90 and 100 % are mailed, with billing_account_id."
  type        = number
  default     = 10

  validation {
    condition     = var.budget_amount > 0
    error_message = "budget_amount: more than 0."
  }
}
