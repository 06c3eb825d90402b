"""The suite's own isolation: what one test leaves behind must not change another (random order, any database)."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.mark.django_db(transaction=True)
def test_the_live_server_thread_has_its_own_database_connection(live_server):
    """With an in-memory SQLite database the live server thread (Balance's notifications) would share the test
    thread's only connection; two threads interleaving transactions on it leave it inside an atomic block and the
    next tests' after-commit work never runs. The test database is a file (SQLite) or a server (PostgreSQL)."""
    assert live_server.thread.connections_override == {}
    assert not (connection.vendor == "sqlite" and connection.is_in_memory_db())


def test_a_test_left_inside_a_transaction_is_named_by_the_next_one(request):
    """The setup guard in conftest refuses to start a test on a connection left inside a transaction."""
    from tests.conftest import pytest_runtest_setup

    connection.in_atomic_block = True  # what a leaked `atomic().__enter__()` leaves behind, without a database
    try:
        with pytest.raises(RuntimeError, match="left inside a transaction"):
            pytest_runtest_setup(request.node)
    finally:
        connection.in_atomic_block = False
