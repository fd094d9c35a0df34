"""Location sources: one subpackage per vendor, each normalising to `shared.models.Location`."""
