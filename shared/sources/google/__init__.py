"""The Google Find My Device (Find Hub) source: trackers located by Google, reports decrypted here.

Modules:

- `proto` (our own protobuf definitions), `crypto` and `curve` (the decryption chain), `decode`
  (a `DeviceUpdate` to reports), `errors`;
- `credentials` (secrets.json, validated and stored), `auth` (gpsoauth access tokens, cached),
  `expiry` (Google refusing the AAS token, and recovering), `account` (all of that for the rest
  of the bridge, and the credential routes);
- `client` (the Nova API client: device list, locate action), `fcm` (one MCS session through
  firebase-messaging), `lease` (one session at a time), `source` (`GoogleSource`, what
  `sync_device` calls);
- `refresh` (the hourly device refresh), `smart_tracking`;
- `stack` (`GoogleStack`: the parts the composition root builds, for the callers).

Google's Firestore documents are `shared.store.google`'s; each part takes what it uses as
keyword-only arguments (repositories, the HTTP session, the secrets, plain settings values).

`python -m shared.sources.google decode` checks the decoding against independent data. Heavy
libraries (protobuf, gpsoauth, firebase-messaging, the crypto stack) are imported where used,
so a function that never locates a tracker never loads them.
"""
