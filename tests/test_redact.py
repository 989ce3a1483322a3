"""Secrets never reach a log line or an error message through a URL."""

from __future__ import annotations

import pytest

from workbench import redact, store
from workbench.errors import WorkbenchError

SIGNED = ("https://bucket.s3.amazonaws.com/models/m.bentomodel?X-Amz-Credential=AKIAEXAMPLE"
          "&X-Amz-Signature=deadbeefcafe")


@pytest.mark.parametrize(("raw", "shown"), [
    ("s3://bucket/models/m.bentomodel", "s3://bucket/models/m.bentomodel"),
    ("s3://AKIAEXAMPLE:s3cr3t@bucket/m.bentomodel", "s3://…@bucket/m.bentomodel"),
    (SIGNED, "https://bucket.s3.amazonaws.com/models/m.bentomodel?…"),
    ("postgresql+psycopg://app:hunter2@db:5432/events", "postgresql+psycopg://…@db:5432/events"),
])
def test_urls_keep_where_and_drop_secrets(raw, shown):
    assert redact.url(raw) == shown


def test_messages_quoting_urls_are_redacted():
    message = f"cannot open {SIGNED!r}: 403 Forbidden for s3://k:s3cr3t@b/x"
    out = redact.text(message)
    assert "deadbeefcafe" not in out and "s3cr3t" not in out and "AKIAEXAMPLE" not in out
    assert "403 Forbidden" in out and "s3://…@b/x" in out


def test_a_failed_import_names_the_object_but_not_its_signature(tmp_path):
    url = f"file://{tmp_path}/missing.bentomodel?X-Amz-Signature=deadbeefcafe"
    with pytest.raises(WorkbenchError) as err:
        store.import_(url)
    assert "missing.bentomodel" in err.value.message
    assert "deadbeefcafe" not in err.value.message and "deadbeefcafe" not in str(
        err.value.detail)
