# The Google APIs the bridge uses. Left enabled on `terraform destroy` (disable_on_destroy =
# false): other workloads of the project may rely on them, and disabling an API can delete data.

locals {
  services = toset([
    "artifactregistry.googleapis.com", # images Cloud Build makes of each function
    "cloudbuild.googleapis.com",       # builds the functions from their zips
    "cloudfunctions.googleapis.com",   # the four functions (2nd gen)
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com", # the hourly refresh job and the per-device sync jobs
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",     # the alert policies and their email channel (monitoring.tf)
    "billingbudgets.googleapis.com", # the optional budget (monitoring.tf)
    "run.googleapis.com",            # 2nd gen functions run as Cloud Run services
    "secretmanager.googleapis.com",
    "storage.googleapis.com", # the function source bucket
  ])
}

resource "google_project_service" "enabled" {
  for_each = local.services

  service            = each.key
  disable_on_destroy = false
}
