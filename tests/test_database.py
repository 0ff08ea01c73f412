"""SQLite transaction modes: writers queue, readers never block them."""

from __future__ import annotations

import pytest
from flask import g

from portal.database import _wants_immediate, write_transaction, writes_on_get


@pytest.mark.parametrize(("method", "immediate"), [("GET", False), ("HEAD", False), ("POST", True), ("DELETE", True)])
def test_requests_begin_immediate_only_when_they_write(app, method, immediate):
    with app.test_request_context("/", method=method):
        assert _wants_immediate() is immediate


def test_work_outside_requests_is_deferred_unless_declared(app):
    assert _wants_immediate() is False
    with write_transaction():
        assert _wants_immediate() is True
    assert _wants_immediate() is False


def test_a_get_view_that_writes_is_immediate_until_it_returns(app):
    seen = {}

    @app.route("/_writes")
    @writes_on_get
    def writing_view():
        seen["during"] = _wants_immediate()
        return "ok"

    writing_view.__coffre_public__ = True
    with app.test_request_context("/_writes"):
        app.preprocess_request()
        assert g.sqlite_write_intent is True
        app.view_functions["writing_view"]()
        assert seen["during"] is True
        assert _wants_immediate() is False  # a streamed body's reads stay deferred
