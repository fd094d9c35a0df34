# Terraform and provider versions, pinned so that `terraform apply` means the same thing on
# every machine; bump deliberately (and read the provider's changelog) rather than by drift.

terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "= 6.50.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  # Every resource that takes labels carries these, so the bridge's resources are easy to find
  # (and to bill) in a project that hosts other things too.
  default_labels = {
    app = "traccar-bridge"
  }
}
