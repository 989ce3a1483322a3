"""``workbench demo``: the whole path on this machine, from nothing.

Fits a logistic regression on scikit-learn's breast-cancer data, prints its diagnostics,
aliases it ``champion``, and predicts a few held-out rows with their intervals. Each step
says what it does; the last line of standard output is the champion's tag.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table


def run(*, samples: int = 1000, warmup: int = 500, chains: int = 2, rows: int = 5,
        console: Console | None = None) -> dict[str, Any]:
    """Run the demo; returns what it made (tags, predictions)."""
    from workbench import datasets, store
    from workbench.fit import SamplerConfig, fit
    from workbench.predict import Predictor

    console = console or Console(highlight=False)
    step = _stepper(console)

    step("1/3 fit", "logistic regression on breast_cancer with NUTS "
         f"({chains} chains x {warmup} warmup + {samples} draws)")
    data = datasets.load("breast_cancer")
    started = time.perf_counter()
    posterior = fit("logistic", data, name="demo-logistic",
                    config=SamplerConfig(warmup=warmup, samples=samples, chains=chains))
    d = posterior.diagnostics
    console.print(f"    done in {time.perf_counter() - started:.0f}s: max R-hat "
                  f"{d['max_rhat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, min tail ESS "
                  f"{d['min_ess_tail']:.0f}, {d['divergences']} divergences -> "
                  + ("[green]ok[/]" if d["ok"] else "[red]FAILED: " + "; ".join(d["failures"])
                     + "[/]"))
    console.print(f"    held-out accuracy {posterior.scores['accuracy']:.3f}, log predictive "
                  f"density {posterior.scores['lpd']:.3f} per row")

    step("2/3 store", f"save to BentoML's model store at {store.home()} and alias it champion")
    tag = store.save(posterior)
    store.set_alias("champion", tag, force=not d["ok"])
    console.print(f"    {tag}  (champion)")

    step("3/3 predict", f"the {rows} least certain of the held-out rows, with 90% credible "
         "intervals")
    _, test = datasets.split(data, seed=0)
    predictor = Predictor(store.get("champion"))
    predictor.warmup()
    pred = predictor.predict(test.X.astype("float32"))
    records = pred.records()
    shown = sorted(range(len(records)), key=lambda i: -records[i]["std"])[:rows]
    table = Table("held-out row", "true", "predicted", "P(benign)", "90% interval", "std")
    for i in shown:
        r = records[i]
        lo, hi = r["interval"]
        table.add_row(str(i), data.target_names[int(test.y[i])], r["label"], f"{r['mean']:.3f}",
                      f"[{lo:.3f}, {hi:.3f}]", f"{r['std']:.3f}")
    console.print(table)
    return {"champion": tag, "predictions": [records[i] for i in shown]}


def _stepper(console: Console) -> Any:
    def step(title: str, what: str) -> None:
        console.print(f"[bold cyan]{title}[/] {what}")
    return step
