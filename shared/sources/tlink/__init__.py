"""The TLINK source: IoT devices whose sensor data TLINK pushes, or the bridge pulls (seed 002).

Modules: `models` (TLINK's payloads with their field names; our Firestore documents), `ingest`
(push or pull → stored readings → a Location when the position is known), `store` (the
`tlink_*` collections), `client` (OAuth and `getDeviceSensorDatas`), `source` (the pull for
`sync_device`), `webhook` (the push receiver) and `views` (the API's history views).
See docs/tlink.md.
"""
