"""Tests of the QA dashboard (queries, rendering, callbacks, pages in Chromium)."""
