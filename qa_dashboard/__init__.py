"""The QA dashboard (Dash, served by ``app.py``): reads the store and the artifact maps, never torch or nnU-Net."""
