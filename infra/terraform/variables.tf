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
