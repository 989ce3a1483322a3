"""The README's "Serve" examples, run against a real Predictor."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import pytest
from servers import ROOT

pytestmark = pytest.mark.e2e


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section("Serve"), flags=re.S)


def test_curl_examples(predictor, tmp_path):
    """The block as a user pastes it: one shell, the key it creates used by each curl."""
    (block,) = [b for b in _blocks("bash") if "curl" in b]
    script = "\n".join(re.sub(r"\s+#.*$", "", line) if "  #" in line else line
                       for line in block.splitlines())
    script = script.replace("http://localhost:3000", predictor.url).replace(
        ".venv/bin/", f"{ROOT / '.venv' / 'bin'}/")
    out = subprocess.run(["bash", "-ec", script], capture_output=True, text=True, timeout=120,
                         env=os.environ | {"WORKBENCH_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    outputs, text, decoder = [], out.stdout.strip(), json.JSONDecoder()
    while text:  # the curls' JSON bodies, back to back
        value, end = decoder.raw_decode(text)
        outputs.append(value)
        text = text[end:].strip()
    prediction = outputs[0]["predictions"][0]
    assert prediction["label"] == "malignant" and len(prediction["draws"]) == 5
    assert "sample_input" in outputs[1]


def test_python_example(predictor):
    (code,) = _blocks("python")
    code = code.replace("http://localhost:3000", predictor.url)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "row 0 has 2 values" in out.stdout
    n = 600 * len(httpx.get(predictor.url + "/metadata").json()["sample_input"]["instances"])
    assert [line for line in out.stdout.splitlines() if " of " in line] == [
        f"{stop} of {n}" for stop in [*range(256, n, 256), n, "done"]]
