"""The Google Find My Device (Find Hub) source: trackers located by Google, reports decrypted here.

Modules: `proto` (our own protobuf definitions), `crypto` and `curve` (the decryption chain),
`decode` (a `DeviceUpdate` to reports), `errors`. `python -m shared.sources.google decode` checks
the decoding against independent data.
"""
