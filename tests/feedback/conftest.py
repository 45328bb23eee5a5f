"""Fixtures: a store, and a served app with items and an admin token."""

from __future__ import annotations

import pytest

from rlhfkit.feedback.app import create_app
from rlhfkit.feedback.store import Store

from .helpers import add_items, running_server


@pytest.fixture
def store(tmp_path) -> Store:
    return Store.open(tmp_path / "labels.db")


@pytest.fixture
def served(store):
    """(base_url, store, admin_token) with 6 items of K=4 and redundancy 2."""
    _, admin_token = store.create_annotator("admin", is_admin=True)
    add_items(store, 6)
    with running_server(create_app(store, redundancy=2)) as url:
        yield url, store, admin_token
