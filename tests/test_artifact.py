from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import xarray as xr
from conftest import make_posterior

from workbench import artifact
from workbench.errors import ArtifactMismatch, CorruptArtifact
from workbench.predict import Predictor


def test_round_trip_gives_identical_predictions(tmp_path, any_posterior):
    path = artifact.save(any_posterior, tmp_path / "p.nc")
    loaded = artifact.load(path)
    X = np.random.default_rng(3).normal(size=(20, 4)).astype(np.float32)
    before, after = Predictor(any_posterior).predict(X), Predictor(loaded).predict(X)
    for field in ("mean", "std", "lower", "upper"):
        np.testing.assert_array_equal(getattr(before, field), getattr(after, field))
    assert loaded.model_id == any_posterior.model_id
    assert loaded.feature_names == any_posterior.feature_names
    assert loaded.options == any_posterior.options
    assert loaded.created  # stamped on save


def test_artifact_describes_itself(tmp_path):
    path = artifact.save(make_posterior("binary"), tmp_path / "p.nc")
    with h5py.File(path) as f:
        attrs = json.loads(f["posterior"].attrs["workbench"])
    for key in ("format", "model_id", "model", "kind", "feature_names", "target_names",
                "sampler", "diagnostics", "scores", "data", "workbench_version", "created"):
        assert key in attrs
    assert attrs["format"] == artifact.FORMAT


def test_file_holds_no_pickle(tmp_path):
    path = artifact.save(make_posterior("regression"), tmp_path / "p.nc")
    raw = path.read_bytes()
    assert raw[:8] == b"\x89HDF\r\n\x1a\n"  # an HDF5 file, nothing executable
    assert b"cnumpy" not in raw and b"\x80\x04\x95" not in raw  # pickle opcodes


def test_truncated_file_is_corrupt(tmp_path):
    path = artifact.save(make_posterior("binary"), tmp_path / "p.nc")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptArtifact, match="cannot read"):
        artifact.load(path)


def test_altered_draws_are_corrupt(tmp_path):
    path = artifact.save(make_posterior("binary"), tmp_path / "p.nc")
    with h5py.File(path, "r+") as f:
        f["posterior/intercept"][0, 0] += 1.0
    with pytest.raises(CorruptArtifact, match="checksum"):
        artifact.load(path)


def test_altered_attributes_mismatch(tmp_path):
    path = artifact.save(make_posterior("binary"), tmp_path / "p.nc")
    with h5py.File(path, "r+") as f:
        attrs = json.loads(f["posterior"].attrs["workbench"])
        attrs["feature_names"][0] = "something else"
        f["posterior"].attrs["workbench"] = json.dumps(attrs)
    with pytest.raises(ArtifactMismatch, match="model id"):
        artifact.load(path)


def test_wrong_expectations_mismatch(tmp_path):
    path = artifact.save(make_posterior("binary"), tmp_path / "p.nc")
    with pytest.raises(ArtifactMismatch, match="expected a regression model"):
        artifact.load(path, kind="regression")
    with pytest.raises(ArtifactMismatch, match="expected a 'linear' posterior"):
        artifact.load(path, model="linear")


def test_foreign_netcdf_is_a_mismatch(tmp_path):
    path = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises((ArtifactMismatch, CorruptArtifact)):
        artifact.load(path)


def test_future_format_is_a_mismatch(tmp_path):
    path = artifact.save(make_posterior("binary"), tmp_path / "p.nc")
    with h5py.File(path, "r+") as f:
        attrs = json.loads(f["posterior"].attrs["workbench"])
        attrs["format"] = "workbench.posterior/99"
        f["posterior"].attrs["workbench"] = json.dumps(attrs)
    with pytest.raises(ArtifactMismatch, match="unsupported artifact format"):
        artifact.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(CorruptArtifact, match="no posterior artifact"):
        artifact.load(tmp_path / "absent.nc")


def test_inference_data_is_labelled_for_arviz(tmp_path):
    idata = make_posterior("multiclass").to_inference_data()
    assert list(idata.posterior["coef"].dims) == ["chain", "draw", "feature", "class"]
    assert list(idata.posterior["class"].values) == ["b", "c"]  # "a" is the reference
