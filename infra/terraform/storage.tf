# The bucket holding the function zips that `make package` builds, and the zips themselves.
# Each object's name carries the zip's MD5: a changed source is a new object, which changes the
# function's build_config and so redeploys that function (and only that one); an unchanged zip
# leaves its function alone. The zips are deterministic (devtools/package.py), so rebuilding
# unchanged sources does not redeploy anything.

locals {
  function_zips = {
    for name in ["api", "sync_device", "refresh_devices", "webhooks"] :
    name => "${path.module}/${var.dist_dir}/${name}.zip"
  }
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds only the function zips (code, no data, no secrets); Cloud Audit Logs record admin access, and a second bucket for access logs would cost more than it tells.
  name     = "${var.project_id}-${var.name_prefix}-sources"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Keep the bucket (and the sources of the running functions) if someone destroys the stack
  # by mistake; empty it by hand first to really remove it.
  force_destroy = false

  versioning {
    enabled = true
  }

  # A replaced zip stays as a noncurrent version for rollbacks, for a while: the three newest
  # and anything younger than 30 days are kept.
  lifecycle_rule {
    condition {
      num_newer_versions         = 3
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket_object" "source" {
  for_each = local.function_zips

  bucket = google_storage_bucket.sources.name
  name   = "${each.key}-${filemd5(each.value)}.zip"
  source = each.value
}
