"""The apps `shared.web.create_app` builds: routing and URL building with lazily built rules."""

from __future__ import annotations

import flask

from shared.web import LazyBuilderRule, create_app


def test_routes_match_and_build_urls_with_builders_compiled_on_first_use() -> None:
    app = create_app("routes")

    @app.get("/users/<user_id>/devices/<int:device_id>")
    def device(user_id: str, device_id: int) -> flask.Response:
        return flask.jsonify(
            user=user_id,
            device=device_id,
            url=flask.url_for("device", user_id=user_id, device_id=device_id + 1, page=2),
        )

    client = app.test_client()
    answer = client.get("/users/u%201/devices/7").get_json()
    missing = client.get("/users/u1/devices/not-a-number")

    assert isinstance(app.url_map._rules_by_endpoint["device"][0], LazyBuilderRule)
    assert answer == {"user": "u 1", "device": 7, "url": "/users/u%201/devices/8?page=2"}
    assert missing.status_code == 404
    assert missing.get_json() == {"error": "no such route"}
