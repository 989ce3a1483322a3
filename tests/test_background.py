from __future__ import annotations

import pytest

from workbench.background import start


def test_a_server_that_cannot_start_fails_fast_with_its_log(tmp_path):
    (tmp_path / "service.py").write_text("raise RuntimeError('no such model: kaboom')\n")
    with pytest.raises(RuntimeError, match="exited with status") as err:
        start("service:Nothing", working_dir=tmp_path, log=tmp_path / "serve.log",
              ready_timeout=120)
    assert "kaboom" in str(err.value)


def test_a_relative_working_dir_is_the_callers(tmp_path, monkeypatch):
    (tmp_path / "service.py").write_text("raise RuntimeError('imported from the right place')\n")
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(RuntimeError, match="imported from the right place"):
        start("service:Nothing", working_dir=tmp_path.name, log=tmp_path / "serve.log",
              ready_timeout=120)
