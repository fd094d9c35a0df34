"""The Smartcar source: vehicles pushed by Smartcar's webhooks, or pulled with stored OAuth tokens.

Modules:
- `payloads`: the webhook deliveries as pydantic models (4.0, 3.0 and legacy VERIFY shapes);
- `webhook`: the receiver (VERIFY, `SC-Signature`, idempotency, storage, pipeline);
- `signals`: signals to `Location` with unit conversions (odometer in metres, speed in knots);
- `client`: API v3 over the instance's session (`SmartcarApi`), and the official `smartcar`
  SDK for the Connect URL and the v2 reads of vehicles whose user id is not known yet;
- `tokens`: the v3 application token (`ApplicationToken`, one per instance), the v2 OAuth
  tokens in the secrets adapter (until a vehicle's user id is known), and the clients with the
  application's credentials (`ClientFactory`);
- `connect`: Smartcar Connect (`GET /smartcar/connect`, `GET /smartcar/exchange`);
- `source`: the pull source sync jobs use; `views`: the API's vehicle views;
- `stack`: the parts as the composition root (`shared.runtime`) builds them.

The Firestore collections (`webhook_events`, `smartcar_events`, `smartcar_vehicles`,
`smartcar_connect_states`, `smartcar_locks`, and `devices`) are `shared.store.smartcar`'s.

Decisions:
- Traccar uniqueId: `smartcar-<vehicleId>`, written into the vehicle's `devices` document when
  the bridge first sees it; that document is the mapping (edit its `traccar_unique_id` to send
  the vehicle to another Traccar device), kept as it is by every later delivery.
- A delivery without a usable location signal is pushed at the vehicle's last known position
  (from `smartcar_vehicles`, `loc_status` "last_known", timed by `meta.deliveredAt`) so its
  attributes still reach Traccar; without any known position it is stored, not pushed.
- Odometer goes to Traccar in metres: Traccar's `odometer` attribute is metres (its own
  Smartcar decoder converts too), so km would show a thousandfold too small.
- Connect: see `connect` (bearer-protected start, public exchange guarded by a single-use
  state). Tokens: see `tokens` (one secret, one entry per Smartcar user, changed under a lease).
- SDK origins: `SMARTCAR_*_ORIGIN` are Settings fields, assigned to the SDK's `smartcar.config`
  once, before the instance's first Smartcar call (`client.configure_sdk`), since the SDK reads
  the environment only at import.
"""
