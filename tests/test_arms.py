"""The arm client's helpers that need no server."""

from __future__ import annotations

from workbench.arms import keep_one_session


def test_the_predictor_client_keeps_one_session():
    # The client class behind `bentoml.depends` (BentoML 1.4). If BentoML moves it, this
    # test says so: the workaround in keep_one_session would then need a look.
    from _bentoml_impl.client.proxy2 import AsyncClient

    client = AsyncClient("http://127.0.0.1:9", server_ready_timeout=0)
    manager = client._session_manager
    manager._request_count = manager.max_requests + 1
    assert manager._should_refresh()  # BentoML's default: a new session every 100 requests
    keep_one_session(client)
    assert not manager._should_refresh()
    keep_one_session(None)  # an in-process dependency has no session: left alone
    keep_one_session(object())
