"""The Models tab's features: the Feast feature service of each model, and the online
store's freshness.

A model trained from a feature service records it in its artifact
(:attr:`workbench.artifact.Posterior.features`). For such models the tab lists the
service, its number of features and the fingerprint of its definitions (and whether the
repository still defines them so: :func:`workbench.features.compare`), and, per feature
view, its TTL and how long ago it was last materialised into the online store
(:func:`workbench.features.freshness`). The repository is the one a Predictor would read:
``WORKBENCH_FEATURE_REPO``, else ``$WORKBENCH_HOME/features``.

Feast is optional and imported only when a model was trained from a feature service; when
it is missing, or the repository does not exist or cannot be read, the tab says so in a
line and shows the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn

from workbench import store
from workbench.features import FeatureSpec

SERVICE_COLUMNS = ["tag", "aliases", "feature service", "features", "fingerprint",
                   "definitions"]
FRESHNESS_COLUMNS = ["view", "TTL", "materialised", "age", "within TTL"]


@pn.cache(max_items=256)
def trained_on(tag: str) -> dict[str, Any] | None:
    """The feature service a stored model was trained on (a :class:`FeatureSpec` as a
    dict), or None. Cached by tag: a stored version never changes."""
    from workbench.errors import WorkbenchError

    try:
        return store.get(tag).features or None
    except WorkbenchError:  # a corrupt or removed artifact: shown without a service
        return None


def read_store(specs: list[FeatureSpec], repo: str | Path | None = None
               ) -> tuple[dict[str, FeatureSpec], dict[str, dict[str, Any]], str | None]:
    """The repository's current definition of each service in ``specs`` and each of their
    views' freshness; or, when it cannot be read, ``({}, {}, why)``."""
    from workbench import features
    from workbench.errors import WorkbenchError

    if not specs:
        return {}, {}, None
    try:
        fs = features.open_store(repo)
    except WorkbenchError as exc:  # Feast missing, or no feature_store.yaml there
        install = (exc.detail or {}).get("install") if isinstance(exc.detail, dict) else None
        return {}, {}, ("no feature repository: Feast is not installed "
                        f"({install})" if install
                        else f"no feature repository at {features.repo_path(repo)} "
                        "(workbench features init, or set WORKBENCH_FEATURE_REPO)")
    current: dict[str, FeatureSpec] = {}
    fresh: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for spec in specs:
        try:
            now = features.describe(fs, spec.service)
            current[spec.service] = now
            fresh |= features.freshness(fs, now)
        except Exception as exc:  # a service deleted, a registry unreadable: say it
            problems.append(f"{spec.service}: {getattr(exc, 'message', exc)}")
    return current, fresh, "; ".join(problems) or None


def services_table(specs: dict[str, FeatureSpec], current: dict[str, FeatureSpec],
                   aliases: dict[str, tuple[str, ...]] | None = None) -> pd.DataFrame:
    """One row per model trained from a feature service (``specs``: tag to its spec):
    the service, its number of features, the fingerprint's prefix, and whether the
    repository's ``current`` definitions match (``match``, ``CHANGED``, or ``unknown``
    when they could not be read)."""
    from workbench.features import compare

    rows = []
    for tag, spec in specs.items():
        now = current.get(spec.service)
        rows.append({"tag": tag, "aliases": ", ".join((aliases or {}).get(tag, ())),
                     "feature service": spec.service, "features": len(spec.names),
                     "fingerprint": spec.fingerprint[:19],
                     "definitions": "unknown" if now is None
                     else "CHANGED" if compare(spec, now) else "match"})
    return pd.DataFrame(rows, columns=SERVICE_COLUMNS)


def freshness_table(fresh: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per feature view: its TTL, when it was last materialised, how long ago, and whether
    that is within the TTL (a view without a TTL never goes stale)."""
    from workbench.report import when

    rows = []
    for view, f in sorted(fresh.items()):
        ttl, age = f["ttl_seconds"], f["age_seconds"]
        rows.append({"view": view, "TTL": duration(ttl) if ttl else "none",
                     "materialised": when(f["materialized_until"])
                     if f["materialized_until"] is not None else "never",
                     "age": "-" if age is None else duration(age),
                     "within TTL": age is not None and (not ttl or age <= ttl)})
    return pd.DataFrame(rows, columns=FRESHNESS_COLUMNS)


def duration(seconds: float) -> str:
    """``90061`` as ``1d 1h``: the two largest units."""
    seconds = max(0, int(seconds))
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"),
             (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    first = next((i for i, (n, _) in enumerate(parts) if n), len(parts) - 1)
    return " ".join(f"{n}{unit}" for n, unit in parts[first:first + 2] if n) or "0s"


def view(models: list[store.ModelInfo], repo: str | Path | None = None) -> pn.viewable.Viewable:
    """The Models tab's features section for ``models`` (those listed by the store)."""
    specs = {m.tag: FeatureSpec.from_dict(d) for m in models if (d := trained_on(m.tag))}
    if not specs:
        if not models:
            return pn.Column()
        return pn.pane.Markdown("No model here was trained from a feature service "
                                "(`workbench train ... --features SERVICE`).",
                                name="features-none")
    distinct = list({s.service: s for s in specs.values()}.values())
    current, fresh, why = read_store(distinct, repo)
    parts: list[Any] = [
        "### Features",
        pn.widgets.Tabulator(services_table(specs, current, {m.tag: m.aliases for m in models}),
                             disabled=True, show_index=False, sizing_mode="stretch_width",
                             name="feature-services")]
    if why:
        parts.append(pn.pane.Alert(f"Online store: {why}.", alert_type="warning",
                                   name="feature-store-problem", sizing_mode="stretch_width"))
    if fresh:
        parts += [pn.pane.Markdown("**Online store freshness** (per feature view: its TTL "
                                   "and the last materialisation)", name="feature-freshness"),
                  pn.widgets.Tabulator(freshness_table(fresh), disabled=True, show_index=False,
                                       sizing_mode="stretch_width", name="feature-views")]
    return pn.Column(*parts, sizing_mode="stretch_width")
