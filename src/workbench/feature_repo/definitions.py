"""The demo's Feast feature repository: scikit-learn's breast cancer data by patient.

Thirty measurements of cell nuclei per patient, in three feature views keyed by the
``patient`` entity (join key ``patient_id``), plus one on-demand feature derived from
them. The feature service ``diagnosis_v1`` fixes the features a model is trained and
served on, in this order:

1. ``nuclei_mean``: ``mean_radius``, ``mean_texture``, ``mean_perimeter``, ``mean_area``,
   ``mean_smoothness``, ``mean_compactness``, ``mean_concavity``,
   ``mean_concave_points``, ``mean_symmetry``, ``mean_fractal_dimension``;
2. ``nuclei_error``: the same ten measurements as ``radius_error`` ... ``fractal_dimension_error``
   (their standard errors);
3. ``nuclei_worst``: ``worst_radius`` ... ``worst_fractal_dimension`` (the largest three);
4. ``mean_area_per_perimeter``: ``mean_area_per_perimeter`` (python mode, None when an
   input is missing).

Each view reads a parquet file under ``data/`` (written by
:func:`workbench.feature_demo.init_repo`) and has a push source, ``<view>_push``, through
which fresh values reach the online store without a batch job.

The directory is an ordinary Feast repository; ``workbench.feature_demo.init_repo`` copies
it out and applies it, and the plain CLI works on the copy too::

    cd ~/.workbench/features
    feast apply
    feast materialize-incremental "$(date -u +%Y-%m-%dT%H:%M:%S)"
    feast -f feature_store.redis.yaml apply     # production: Redis as the online store

This file must import nothing but Feast and the standard library: ``feast apply`` runs it
as a module of its own, and the ODFV's function is stored as source text and re-executed
by the serving process, so it may use only its own arguments.
"""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64
from feast.value_type import ValueType

MEASUREMENTS = ("radius", "texture", "perimeter", "area", "smoothness", "compactness",
                "concavity", "concave_points", "symmetry", "fractal_dimension")
TTL = timedelta(days=30)

patient = Entity(name="patient", join_keys=["patient_id"], value_type=ValueType.INT64,
                 description="A patient of the breast cancer study (patient_id 1000, ...).")


def _view(name: str, features: list[str], description: str) -> tuple[FeatureView, PushSource]:
    """A feature view over ``data/<name>.parquet``, fed online by ``<name>_push``."""
    batch = FileSource(name=f"{name}_file", path=f"data/{name}.parquet",
                       timestamp_field="event_timestamp", created_timestamp_column="created")
    push = PushSource(name=f"{name}_push", batch_source=batch)
    view = FeatureView(
        name=name, entities=[patient], ttl=TTL, source=push, online=True,
        schema=[Field(name="patient_id", dtype=Int64)]
        + [Field(name=feature, dtype=Float64) for feature in features],
        description=description,
    )
    return view, push


nuclei_mean, nuclei_mean_push = _view(
    "nuclei_mean", [f"mean_{m}" for m in MEASUREMENTS], "Mean of each measurement.")
nuclei_error, nuclei_error_push = _view(
    "nuclei_error", [f"{m}_error" for m in MEASUREMENTS], "Standard error of each measurement.")
nuclei_worst, nuclei_worst_push = _view(
    "nuclei_worst", [f"worst_{m}" for m in MEASUREMENTS],
    "Mean of the three largest values of each measurement.")


# Plain ``dict`` hints: the serving side execs the function's source without this module.
@on_demand_feature_view(
    sources=[nuclei_mean[["mean_area", "mean_perimeter"]]],
    schema=[Field(name="mean_area_per_perimeter", dtype=Float64)],
    mode="python",
)
def mean_area_per_perimeter(inputs: dict) -> dict:
    """Mean area over mean perimeter (a size-independent shape measure); None when missing."""
    return {"mean_area_per_perimeter": [
        area / perimeter if area is not None and perimeter else None
        for area, perimeter in zip(inputs["mean_area"], inputs["mean_perimeter"], strict=True)
    ]}


diagnosis_v1 = FeatureService(
    name="diagnosis_v1",
    features=[nuclei_mean, nuclei_error, nuclei_worst, mean_area_per_perimeter],
    description="The 30 measurements and mean_area_per_perimeter, for the diagnosis models.",
)
