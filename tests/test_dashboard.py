"""The dashboard's shell: pages register, the landing page shows the empty state, nothing imports torch."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_app_serves_its_pages_without_torch_or_nnunet() -> None:
    script = (
        "import sys, dash, app\n"
        "client = app.server.test_client()\n"
        "index = client.get('/')\n"
        "assert index.status_code == 200, index.status_code\n"
        "assert b'Uncertainty QA' in index.data\n"
        "paths = sorted(p['path'] for p in dash.page_registry.values())\n"
        "assert paths == ['/', '/404'], paths\n"
        "layout = client.get('/_dash-layout').get_json()\n"
        "assert 'not a medical device' in str(layout)\n"
        "assert not {'torch', 'nnunetv2'} & set(sys.modules), 'the dashboard imported torch or nnunetv2'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_landing_page_explains_the_empty_store() -> None:
    from qa_dashboard.app import create_app

    create_app()
    from qa_dashboard.pages import home

    assert home.layout.id == "empty-state"
    assert "No results to show yet" in str(home.layout)
