"""The slice browser's browser-side callbacks (``assets/viewer.js``, ``assets/viewer_stage.js``): the stage's layout
and B column, a W/L preset filling the window and level, the structures' colours, fullscreen, zoom reset, the
address bar kept in step with the view (``viewer_address``) and the slices shown kept for the wheel's ends. Nothing
here reaches the server."""

from __future__ import annotations

from dash import ALL, ClientsideFunction, Input, Output, State, clientside_callback

from qa_dashboard.rendering.geometry import PLANES

clientside_callback(ClientsideFunction("stage", "layout"), Output("viewer-stage", "className"),
                    Input("viewer-grid", "value"), Input("viewer-b", "value"))
clientside_callback(ClientsideFunction("stage", "preset"), Output("viewer-window", "value"),
                    Output("viewer-level", "value"), Input("viewer-wl", "value"), State("viewer-presets", "data"),
                    prevent_initial_call=True)
clientside_callback("function(values) { return values; }", Output("viewer-colours", "data"),
                    Input({"type": "viewer-colour", "index": ALL}, "value"))
clientside_callback(ClientsideFunction("stage", "fullscreen"), Output("viewer-fullscreen", "title"),
                    Input("viewer-fullscreen", "n_clicks"), prevent_initial_call=True)
clientside_callback(ClientsideFunction("stage", "resetZoom"), Output("viewer-reset-zoom", "title"),
                    Input("viewer-reset-zoom", "n_clicks"), prevent_initial_call=True)
clientside_callback(ClientsideFunction("stage", "copyLink"), Output("viewer-copy-link", "children"),
                    Input("viewer-copy-link", "n_clicks"), State("viewer-stage", "className"),
                    prevent_initial_call=True)
clientside_callback(ClientsideFunction("stage", "address"), Output("viewer-address", "data"),
                    *(Input(f"slice-{p}", "data") for p in PLANES), Input("viewer-a", "value"),
                    Input("viewer-b", "value"), Input("viewer-window", "value"), Input("viewer-level", "value"),
                    Input("viewer-overlays", "value"), Input("viewer-grid", "value"), Input("viewer-budget", "value"),
                    Input("viewer-thickness", "value"), Input("viewer-fill", "value"), Input("viewer-colours", "data"))
clientside_callback(ClientsideFunction("qa", "track"), Output("viewer-position", "data"),
                    *(Input(f"slice-{p}", "data") for p in PLANES), State("viewer-shape", "data"))
