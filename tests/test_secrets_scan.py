"""The session's secrets scan can fail: a registered secret in a log or a response is found."""

from __future__ import annotations

import httpx
import secrets_scan


def test_a_leaked_key_is_found_in_a_log_and_in_a_response(tmp_path):
    secret = secrets_scan.register("wb_0123456789ab_not-a-real-key-but-long", "API key")
    log = tmp_path / "server.log"
    log.write_text(f"INFO request with Authorization: Bearer {secret}\n")
    assert secrets_scan.scan(log.read_text(), "log") == ["log: API key"]
    assert secrets_scan.scan("nothing to see", "log") == []
    response = httpx.Response(200, text=f'{{"echo": "{secret}"}}',
                              request=httpx.Request("GET", "http://127.0.0.1/x"))
    before = len(secrets_scan.FOUND)
    secrets_scan.check_response(response)
    assert secrets_scan.FOUND[before:] == ["response GET /x: API key"]
    del secrets_scan.FOUND[before:]  # planted here: not a leak of the suite
    del secrets_scan.SECRETS[secret]
