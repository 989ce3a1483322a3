"""Compare fitted posteriors by PSIS-LOO (ArviZ) on the rows they were fit to.

Every posterior records its data's fingerprint and the seed and held-out fraction of its
split, so :func:`training_rows` rebuilds exactly the rows it saw; LOO on any other rows
would be meaningless and raises :class:`~workbench.errors.DatasetError`. Pareto k above
0.7 marks rows where the importance-sampling estimate is unreliable: :func:`loo` and
:func:`compare` report how many instead of hiding it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from workbench.artifact import Posterior
from workbench.datasets import Dataset, split
from workbench.errors import DatasetError

PARETO_K_LIMIT = 0.7


def training_rows(posterior: Posterior, data: Dataset) -> Dataset:
    """The rows ``posterior`` was fit to, rebuilt from ``data`` and its recorded split."""
    recorded = posterior.data.get("fingerprint")
    if recorded and recorded != data.fingerprint():
        raise DatasetError(f"{posterior.name} was fit to other data (fingerprint "
                           f"{recorded[:12]}, this dataset {data.fingerprint()[:12]}); "
                           "LOO needs the dataset it was fit to")
    train, _ = split(data, test_fraction=float(posterior.sampler.get("test_fraction", 0.2)),
                     seed=int(posterior.sampler.get("seed", 0)))
    return train


def inference_data(posterior: Posterior, data: Dataset) -> Any:
    """ArviZ ``InferenceData`` with a ``log_likelihood`` group on the training rows."""
    from workbench.fit import log_likelihood

    train = training_rows(posterior, data)
    idata = posterior.to_inference_data()
    idata.add_groups(log_likelihood={"obs": log_likelihood(posterior, train.X, train.y)},
                     dims={"obs": ["row"]})
    return idata


def loo(posterior: Posterior, data: Dataset) -> Any:
    """PSIS-LOO (``arviz.loo`` with pointwise values) of ``posterior`` on its training rows."""
    import arviz as az

    return az.loo(inference_data(posterior, data), pointwise=True)


def compare(posteriors: Mapping[str, Posterior], data: Dataset) -> Any:
    """Rank posteriors fit to the same ``data`` by expected log predictive density.

    Returns ``arviz.compare``'s table (``elpd_loo``, ``p_loo``, ``elpd_diff``, ``dse``,
    ``weight``, ...) plus ``bad_k``: how many rows had Pareto k above 0.7.
    """
    import arviz as az
    import numpy as np

    if len(posteriors) < 2:
        raise DatasetError(f"compare needs at least two posteriors, got {len(posteriors)}")
    with warnings.catch_warnings():  # ArviZ warns of high Pareto k; bad_k says how many
        warnings.filterwarnings("ignore", message=".*Pareto distribution is greater than")
        elpds = {name: loo(p, data) for name, p in posteriors.items()}
        table = az.compare(elpds, ic="loo")
    table["bad_k"] = [int(np.sum(elpds[name].pareto_k.values > PARETO_K_LIMIT))
                      for name in table.index]
    return table
