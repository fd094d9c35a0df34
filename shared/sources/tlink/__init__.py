"""The TLINK source: IoT devices whose sensor data TLINK pushes, or the bridge pulls (seed 002).

Modules: `models` (TLINK's payloads with their field names), `ingest` (push or pull → stored
readings → a Location when the position is known), `client` (OAuth and `getDeviceSensorDatas`),
`source` (the pull for `sync_device`), `webhook` (the push receiver), `views` (the API's history
views) and `stack` (the parts as `Runtime.tlink` holds them). The `tlink_*` documents and their
repository are `shared.store.tlink`.
See docs/tlink.md.
"""
