# Firestore: the (default) database in native mode, the composite indexes the bridge's queries
# need, and a TTL policy on every collection whose documents carry `expire_at`.
#
# A project that already has a (default) database (made in the console, or by App Engine) must
# import it first: terraform import google_firestore_database.default "projects/<id>/databases/(default)"

resource "google_firestore_database" "default" {
  name        = "(default)" # the database the functions' firestore.Client() opens
  location_id = var.firestore_location != "" ? var.firestore_location : var.region
  type        = "FIRESTORE_NATIVE"

  # Pessimistic would make every read in a transaction lock; the bridge's writes that race
  # (the sync lease) use preconditions on update times instead.
  concurrency_mode            = "OPTIMISTIC"
  app_engine_integration_mode = "DISABLED"

  # Point-in-time recovery: a bad release or a wrong bulk delete can be undone for 7 days; at
  # the bridge's size (a few MB) the extra storage costs next to nothing.
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"

  # The database holds the delivery history and the services: never delete it from Terraform.
  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "ABANDON"

  depends_on = [google_project_service.enabled]
}

locals {
  # Composite indexes, one per query shape that Firestore cannot serve from its automatic
  # single-field indexes: equality on one field and order (or range) on another, or equality
  # on two fields with an order on a third. Queries on one field (Repository.list's order on
  # id, the push log without a device filter) need none.
  composite_indexes = {
    # GET /push-log?device_id=<id>: one device's attempts, newest first (shared/store.py
    # DeliveryRepository.push_log).
    push_log_by_device = {
      collection = "push_log"
      fields = [
        { field_path = "device_id", order = "ASCENDING" },
        { field_path = "attempted_at", order = "DESCENDING" },
      ]
    }
    # A sync run drains a device's outbox oldest position first (shared/store.py
    # DeliveryRepository.outbox).
    outbox_by_device = {
      collection = "outbox"
      fields = [
        { field_path = "device_id", order = "ASCENDING" },
        { field_path = "location.timestamp", order = "ASCENDING" },
      ]
    }
    # GET /tlink/users/<userId>/devices: a user's devices by device id, and their count, with
    # or without a deviceId filter (shared/store/tlink.py user_devices).
    tlink_devices_by_user = {
      collection = "tlink_devices"
      fields = [
        { field_path = "user_id", order = "ASCENDING" },
        { field_path = "device_id", order = "ASCENDING" },
      ]
    }
    # A sensor's history, newest first, optionally within a time range (shared/sources/tlink/
    # store.py history; the TLINK views).
    tlink_readings_by_sensor = {
      collection = "tlink_readings"
      fields = [
        { field_path = "device_id", order = "ASCENDING" },
        { field_path = "sensor_id", order = "ASCENDING" },
        { field_path = "time", order = "DESCENDING" },
      ]
    }
  }

  # Collection groups whose documents carry an `expire_at` timestamp, deleted by Firestore once
  # it has passed (typically within 24 hours). A collection group covers a top-level collection
  # of that name and any subcollection of that name. A test finds every model with an
  # `expire_at` field in shared/ and fails until its collection is listed here.
  ttl_collections = [
    "push_log",                # push attempts (PushLogEntry), kept PUSH_LOG_RETENTION_DAYS
    "webhook_events",          # idempotency records of Smartcar and TLINK deliveries
    "smartcar_events",         # raw Smartcar deliveries, kept SMARTCAR_EVENT_RETENTION_DAYS
    "smartcar_connect_states", # single-use Smartcar Connect states
    "tlink_readings",          # TLINK sensor history, kept TLINK_READING_RETENTION_DAYS
  ]

  # Fields with no single-field indexes (resource google_firestore_field.unindexed), by
  # collection. A map's exemption covers all its keys.
  unindexed_fields = {
    # Up to 5 000 fingerprints → their times (shared/pipeline.py DELIVERED_CAP), read whole by
    # id: up to 10 000 index entries rewritten by every sync run otherwise.
    device_state = ["delivered"]
    # A vehicle's latest value of every Smartcar signal code (dozens, each a map), read by
    # vehicle id; every VEHICLE_STATE delivery rewrites them.
    smartcar_vehicles = ["signals"]
    # A TLINK device's latest value of each sensor, read by device id; every push rewrites it.
    tlink_devices = ["sensors"]
    # One document per push attempt, kept PUSH_LOG_RETENTION_DAYS (90): the largest collection
    # by far. GET /push-log filters on device_id and orders by attempted_at (the composite
    # index push_log_by_device, and attempted_at's own index); the other fields are only read.
    # Their index entries made about 90 % of the push log's storage (bench/free_tier.py: some
    # 3.5 of 4 KB per attempt; close to 1 GiB for ten trackers synced every ten minutes).
    push_log = [
      "id", "lat", "lon", "timestamp", "loc_status", "name", "date", "maps_url",
      "traccar_status", "synced_at", "source", "error", "outcome", "skipped_reports",
    ]
  }
}

resource "google_firestore_index" "composite" {
  for_each = local.composite_indexes

  database    = google_firestore_database.default.name
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.field_path
      order      = fields.value.order
    }
  }
}

resource "google_firestore_field" "ttl" {
  for_each = toset(local.ttl_collections)

  database   = google_firestore_database.default.name
  collection = each.key
  field      = "expire_at"

  ttl_config {}

  # No single-field index on expire_at: nothing queries it, and an index on an ever-growing
  # timestamp costs writes and can hotspot. (An empty index_config removes the indexes.)
  index_config {}
}

# Fields with no single-field indexes at all (an empty index_config): nothing queries them, and
# by default Firestore indexes every value, each key of a map included, in both orders, and
# rewrites those entries with every write of the document. The queries in shared/ and the
# composite indexes above need none of them (tests/infra/test_terraform_matches_code.py).
resource "google_firestore_field" "unindexed" {
  for_each = {
    for pair in flatten([
      for collection, fields in local.unindexed_fields : [
        for field in fields : { collection = collection, field = field }
      ]
    ]) : "${pair.collection}.${pair.field}" => pair
  }

  database   = google_firestore_database.default.name
  collection = each.value.collection
  field      = each.value.field

  index_config {}
}

# The delivered map's exemption was a resource of its own before the list above.
moved {
  from = google_firestore_field.unindexed_delivered
  to   = google_firestore_field.unindexed["device_state.delivered"]
}
