"""Simulation-based calibration: every shipped model passes at the test's size, a model
with a planted prior mismatch is caught, and ``workbench check-calibration`` writes its
histograms and ranks and says so in its exit status.

Each model compiles one NUTS program (``sbc._RUNNERS`` keeps it), so the CLI tests below
reuse the programs of the tests above them when run together.
"""

from __future__ import annotations

import io
import json
import sys

import jax
import numpy as np
import pytest
from click.testing import CliRunner

from workbench import models, sbc
from workbench.cli import main
from workbench.errors import ConfigError

# 100 simulations in 10 rank bins (10 expected per bin), 49 draws kept of 98 steps.
CONFIG = sbc.SBCConfig(simulations=100, warmup=150, draws=49, thin=2)
CLI_ARGS = ["--simulations", "100", "--warmup", "150", "--draws", "49", "--thin", "2"]
MISCALIBRATED = "sbc-test-miscalibrated"


def _miscalibrated(X, y=None, *, prior_scale=1.0):
    """A logistic regression whose data are simulated with coefficients three times wider
    than the prior its fit assumes (``y`` is None only when simulating)."""
    models.logistic(X, y, prior_scale=3.0 * prior_scale if y is None else prior_scale)


@pytest.fixture
def miscalibrated(monkeypatch):
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    models.register(MISCALIBRATED, _miscalibrated, kind="binary",
                    defaults={"prior_scale": 1.0})
    return MISCALIBRATED


def test_ranks_count_the_draws_below_the_truth_per_scalar_parameter():
    truth = {"a": np.array([0.5, 2.0]), "coef": np.array([[0.0, 1.0], [0.0, 1.0]])}
    draws = {"a": np.array([[0.1, 0.7, 0.3], [0.0, 1.0, 3.0]]),
             "coef": np.array([[[-1.0, 0.0], [1.0, 2.0], [2.0, 0.5]]] * 2)}
    r = sbc.ranks(truth, draws)
    assert list(r) == ["a", "coef[0]", "coef[1]"]
    assert r["a"].tolist() == [2, 2]
    assert r["coef[0]"].tolist() == [1, 1] and r["coef[1]"].tolist() == [2, 2]


def test_uniformity_accepts_uniform_ranks_and_rejects_a_u_shape():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 50, size=1000)
    u_shape = np.concatenate([rng.integers(0, 5, 500), rng.integers(45, 50, 500)])
    p = sbc.uniformity({"uniform": uniform, "u": u_shape}, draws=49, bins=10)
    assert p["uniform"] > 0.05
    assert p["u"] < 1e-12
    # unequal bins: 0..9 in 3 bins of 4, 3, 3 values; ranks spread evenly pass exactly
    assert sbc.uniformity({"x": np.arange(10).repeat(20)}, draws=9, bins=3)["x"] == 1.0


def test_the_verdict_is_bonferroni_corrected_over_the_parameters():
    def result(p):
        return sbc.Calibration(model="m", options={}, config=CONFIG, ranks={},
                               p_values={"a": p, "b": 0.5})

    assert result(0.004).adjusted["a"] == pytest.approx(0.008)
    assert not result(0.004).passed
    assert result(0.006).passed  # alone it would fail at 0.01; one of two parameters


def test_figure_has_one_histogram_per_parameter():
    rng = np.random.default_rng(1)
    ranks = {name: rng.integers(0, 50, 100) for name in ("intercept", "coef[0]", "coef[1]")}
    result = sbc.Calibration(model="logistic", options={}, config=CONFIG, ranks=ranks,
                             p_values=sbc.uniformity(ranks, 49, 10))
    fig = sbc.figure(result)
    assert sum(ax.get_visible() for ax in fig.axes) == 3
    assert fig.axes[0].get_title().startswith("intercept")
    png = io.BytesIO()
    fig.savefig(png, format="png")
    assert png.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_refuses_too_few_simulations():
    with pytest.raises(ConfigError, match="at least 20"):
        sbc.SBCConfig(simulations=5)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "options"), sbc.SHIPPED,
                         ids=["logistic", "softmax", "linear", "linear-robust"])
def test_shipped_model_is_calibrated(model, options):
    result = sbc.check(jax.random.PRNGKey(0), model, options=options, config=CONFIG)
    print(f"{model} {options}: {result.seconds:.1f} s, {result.divergences} divergences, "
          "adjusted p " + ", ".join(f"{k} {v:.3g}" for k, v in result.adjusted.items()))
    n_params = {"logistic": 1 + 3, "softmax": 2 * (1 + 3), "linear": 2 + 3}[model]
    assert len(result.ranks) == n_params + bool(options.get("robust"))
    assert all(len(r) == CONFIG.simulations for r in result.ranks.values())
    assert result.passed, result.adjusted


@pytest.mark.slow
def test_a_planted_prior_mismatch_is_caught(miscalibrated):
    result = sbc.check(jax.random.PRNGKey(0), miscalibrated, config=CONFIG)
    worst = min(result.adjusted.values())
    print(f"miscalibrated: adjusted p {worst:.2g} (min), "
          + ", ".join(f"{k} {v:.2g}" for k, v in result.adjusted.items()))
    assert not result.passed
    # the coefficients' posteriors are too narrow for their truth: ranks pile up at the ends
    ends = [np.mean((r < 5) | (r >= 45)) for k, r in result.ranks.items() if k != "intercept"]
    assert min(ends) > 0.3, ends  # 0.2 when calibrated


@pytest.mark.slow
def test_cli_writes_histograms_and_ranks_and_exits_0_when_calibrated(tmp_path):
    out = tmp_path / "sbc"
    run = CliRunner().invoke(main, ["check-calibration", "logistic", *CLI_ARGS,
                                    "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert "calibrated" in run.stdout and "coef[2]" in run.stdout
    assert "fitted 100/100 simulations" in run.stderr
    assert (out / "ranks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "sbc.json").read_text())
    assert saved["passed"] is True and saved["seed"] == 0 and saved["bins"] == 10
    assert set(saved["ranks"]) == set(saved["p_values"]) == {
        "intercept", "coef[0]", "coef[1]", "coef[2]"}
    assert all(len(r) == 100 and min(r) >= 0 and max(r) <= 49 for r in saved["ranks"].values())


@pytest.mark.slow
def test_cli_exits_1_when_not_calibrated(miscalibrated, tmp_path):
    run = CliRunner().invoke(main, ["check-calibration", miscalibrated, *CLI_ARGS,
                                    "--out", str(tmp_path), "--json"])
    assert run.exit_code == 1, run.output
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["passed"] is False and "ranks" not in summary
    assert (tmp_path / "ranks.png").exists() and (tmp_path / "sbc.json").exists()


def test_cli_imports_a_users_model_and_refuses_bad_input_with_exit_2(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    module = tmp_path / "sbc_test_user_models.py"
    module.write_text("import workbench\n"
                      "from workbench.models import linear\n"
                      "workbench.register('sbc_cli_user_model', linear, kind='regression')\n")
    try:
        run = CliRunner().invoke(main, ["check-calibration", "sbc_cli_user_model", "--import",
                                        str(module), "--simulations", "5"])
    finally:
        sys.modules.pop(module.stem, None)
    assert run.exit_code == 2 and "simulations must be at least 20" in run.stderr
    assert "sbc_cli_user_model" in models.registered()
    run = CliRunner().invoke(main, ["check-calibration", "no-such-model"])
    assert run.exit_code == 2 and "no model registered as 'no-such-model'" in run.stderr
