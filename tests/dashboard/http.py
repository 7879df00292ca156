"""Calling the dashboard over HTTP as a browser would: Dash callbacks through ``/_dash-update-component`` (the
payload the renderer sends, built from the app's own callback map), with the session's CSRF header
(``benchmarks/http_client.py``)."""

from __future__ import annotations

from typing import Any

import dash

from benchmarks.http_client import csrf_header


def callback_key(app: dash.Dash, output: str) -> str:
    """The callback-map key of the callback whose outputs include ``output`` (``id.property``), first registered."""
    for key in app.callback_map:
        parts = [part.split("@")[0] for part in key.strip(".").split("...")]
        if output in parts:
            return key
    raise KeyError(f"no callback outputs {output}")


def call(client: Any, app: dash.Dash, output: str, trigger: str, values: dict[str, Any]) -> Any:
    """POST the callback that outputs ``output``, fired by ``trigger`` (``id.property``), with ``values`` for its
    inputs and states (``id.property`` → value; the rest None); the response."""
    key = callback_key(app, output)
    spec = app.callback_map[key]
    outputs = [dict(zip(("id", "property"), part.rsplit(".", 1), strict=True))
               for part in key.strip(".").split("...")]

    def listed(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**item, "value": values.get(f"{item['id']}.{item['property']}")} for item in items]

    body = {"output": key, "outputs": outputs if len(outputs) > 1 else outputs[0], "inputs": listed(spec["inputs"]),
            "state": listed(spec["state"]), "changedPropIds": [trigger]}
    return client.post("/_dash-update-component", json=body, headers=csrf_header(client))
