"""Regenerate the notebooks' sources (the cells below), then execute them in place.

    .venv/bin/python notebooks/_build.py [NAME.ipynb ...]        # write sources only
    .venv/bin/python notebooks/_build.py --run [NAME.ipynb ...]  # and execute them, in order

Outputs are committed, so they render on a code host; cells tagged ``remove-output`` (the
live Panel dashboard: megabytes of JavaScript) are executed but saved without output.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str, *tags: str):
    cell = new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


FIT = [
    md("""
# 1 · Fit and diagnose

Load a dataset, fit a Bayesian logistic regression with NumPyro's NUTS through
`workbench.fit`, check the sampler with ArviZ, compare two prior choices with PSIS-LOO, refit
interactively, and keep the result in the model store under the aliases `champion` and
`challenger` that notebooks 2 and 3 serve and A/B test.
"""),
    code("""
# Parameters (papermill convention): small defaults; the tests override them.
dataset = "breast_cancer"
n_features = 10  # the dataset's first columns (the ten "mean ..." measurements); None: all
warmup, samples, chains = 500, 1000, 2
seed = 0
sbc_simulations = 100  # simulation-based calibration: datasets drawn from the prior
""", "parameters"),
    code("""
from workbench import datasets, store  # noqa: I001 (first: it quiets ArviZ's 1.0 notice)
from workbench.comparison import compare
from workbench.fit import SamplerConfig, fit
from workbench.widgets import FitForm, summary

import arviz as az
import matplotlib.pyplot as plt

plt.rcParams["figure.dpi"] = 60
full = datasets.load(dataset)
data = full.select(full.feature_names[:n_features]) if n_features else full
print(f"{data.name}: {len(data)} rows, {len(data.feature_names)} features, "
      f"classes {list(data.target_names)}")
print(", ".join(data.feature_names))
"""),
    md("""
## Fit

`fit` standardises the features on the training rows, keeps 20% of the rows out for scoring,
runs NUTS, and returns a self-describing `Posterior` with its diagnostics. Failing
diagnostics (R-hat > 1.01, bulk or tail ESS < 400, any divergence) raise a
`DiagnosticsWarning`, and the model store refuses such a posterior unless forced.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
config = SamplerConfig(warmup=warmup, samples=samples, chains=chains, seed=seed)
champion = fit("logistic", data, name="notebook-logistic", config=config, progress=False)
print(summary(champion))
"""),
    md("## Diagnostics and plots (ArviZ)"),
    code("""
# NBVAL_IGNORE_OUTPUT
idata = champion.to_inference_data()
az.summary(idata, var_names=["intercept", "coef"], round_to=3)
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
az.plot_trace(idata, var_names=["intercept"], figsize=(9, 2))
az.plot_forest(idata, var_names=["coef"], combined=True, hdi_prob=0.9, figsize=(7, 4))
plt.show()
"""),
    md("""
## Is the fit calibrated? Simulation-based calibration

Diagnostics judge one fit; SBC (Talts et al. 2018) judges the model and the sampler over
the whole prior. `workbench.sbc.check` draws `sbc_simulations` parameter sets and datasets
from the model's own prior predictive (a small synthetic design), fits each with NUTS, and
ranks every true parameter among its posterior draws. Calibrated posteriors give uniform
ranks: flat histograms inside the grey band (where 99% of the bars of a calibrated model
fall). A ∪ shape means posteriors too narrow, ∩ too wide, a slope a bias. The verdict is a
chi-square test per parameter, Bonferroni-corrected; `workbench check-calibration logistic`
does the same from the command line.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
import jax

from workbench import sbc

calibration = sbc.check(jax.random.PRNGKey(seed), "logistic",
                        config=sbc.SBCConfig(simulations=sbc_simulations))
print(f"{calibration.seconds:.0f} s, {calibration.divergences} divergent transitions")
sbc.figure(calibration)
"""),
    code("""
print("calibrated:", calibration.passed)
"""),
    md("""
## Compare two variants with PSIS-LOO

A tighter prior (`prior_scale=0.3`) shrinks the coefficients harder. `compare` ranks both
by expected log predictive density estimated with Pareto-smoothed importance sampling on the
rows each was fit to; `bad_k` counts the rows with Pareto k > 0.7, where the estimate is
unreliable (with all 30 features the classes separate so cleanly that many rows are).
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
challenger = fit("logistic", data, name="notebook-logistic", options={"prior_scale": 0.3},
                 config=SamplerConfig(warmup=warmup, samples=samples, chains=chains,
                                      seed=seed + 1), progress=False)
print(summary(challenger))
table = compare({"prior 1.0": champion, "prior 0.3": challenger}, data)
table[["rank", "elpd_loo", "p_loo", "elpd_diff", "dse", "weight", "bad_k"]].round(2)
"""),
    code("""
print("best by LOO:", table.index[0])
"""),
    md("""
## Refit interactively

Pick the model, the prior scale and the sampler's settings, and press **Fit**; the latest
posterior is `form.posterior`. `form.fit()` does what the button does.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
form = FitForm(data, prior_scale=0.5, warmup=warmup, samples=samples, chains=chains)
form
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
refit = form.fit()
print(summary(refit))
"""),
    md("""
## Save and alias

Each posterior becomes a version (a BentoML tag) of the model `notebook-logistic` in the
model store. The aliases are what the Predictor serves and what the experiment compares;
`store.rollback("champion")` undoes a promotion.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
champion_tag = store.save(champion, alias="champion")
challenger_tag = store.save(challenger, alias="challenger")
print(champion_tag, challenger_tag)
"""),
    code("""
print(store.resolve("champion") == champion_tag, store.resolve("challenger") == challenger_tag)
print(store.metadata(champion_tag)["feature_names"] == list(data.feature_names))
"""),
]

SERVE = [
    md("""
# 2 · Package and serve

Build the Predictor bento for the `champion` model, start `bentoml serve` in the
background, query it with `bentoml.SyncHTTPClient` and with plain HTTP, plot predictions with
their credible intervals, and stop the server. Run notebook 1 first (it stores `champion`).
"""),
    code("""
# Parameters (papermill convention): small defaults; the tests override them.
model = "champion"
dataset = "breast_cancer"
rows = 40
""", "parameters"),
    code("""
import httpx
import matplotlib.pyplot as plt
import numpy as np

from workbench import datasets, store
from workbench.background import start
from workbench.build import build_predictor

plt.rcParams["figure.dpi"] = 60
"""),
    md("""
## Build the bento

The build resolves the alias now and freezes the tag into the bento, so the bento serves
exactly this posterior wherever it runs (`bentoml containerize` makes an image of it).
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
bento = build_predictor([model])
bento
"""),
    code("""
print(bento.split(":")[0])
"""),
    md("""
## Serve it in the background

`start` runs `bentoml serve` on a free loopback port in its own process group and waits
until `/readyz` answers (the posterior is loaded and every shape bucket compiled). Every
route but health and metrics needs an API key (stored only as a hash in the event store;
`workbench keys create` does the same from a shell): this notebook makes its own, and the
server object hands it to its clients (`server.headers`, `server.client()`).
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
import time

from workbench import events, keys

key = keys.create(events.engine(), f"notebook-02-{time.time_ns()}", ["predict"])
server = start(bento, api_key=key)
server
"""),
    code("""
print(httpx.post(server.url + "/predict", json={"instances": [[0.0]]}).status_code,
      "without the key")
meta = httpx.get(server.url + "/metadata", headers=server.headers).json()
features = meta["features"]
print(meta["default_model"] == store.resolve(model), meta["targets"], len(features))
"""),
    md("## Query with `bentoml.SyncHTTPClient`"),
    code("""
data = datasets.load(dataset).select(features)
_, test = datasets.split(data)
X, y = test.X[:rows], test.y[:rows]
with server.client() as client:
    result = client.predict(instances=X.tolist())
print(result["model"] == meta["default_model"], len(result["predictions"]) == rows,
      result["interval_mass"])
print(sorted(result["predictions"][0]))
"""),
    md("""
## …and with plain HTTP

Rows can be objects keyed by feature name. Bad input gets a 400 that says what was wrong.
"""),
    code("""
row = dict(zip(features, X[0].tolist(), strict=True))
r = httpx.post(server.url + "/predict", json={"instances": [row], "interval_mass": 0.5},
               headers=server.headers)
print(r.status_code, r.json()["interval_mass"])
bad = httpx.post(server.url + "/predict", json={"instances": [[1.0, 2.0]]},
                 headers=server.headers)
print(bad.status_code, bad.json()["error"])
"""),
    md("## Predictions with their 90% credible intervals"),
    code("""
# NBVAL_IGNORE_OUTPUT
p = result["predictions"]
order = np.argsort([q["mean"] for q in p])
mean = np.array([p[i]["mean"] for i in order])
lo, hi = np.array([p[i]["interval"] for i in order]).T
fig, ax = plt.subplots(figsize=(8, 3))
for label in (0, 1):
    at = np.flatnonzero(y[order] == label)
    ax.errorbar(at, mean[at], yerr=[mean[at] - lo[at], hi[at] - mean[at]], fmt="o",
                capsize=2, label=f"true: {data.target_names[label]}")
ax.set(xlabel="held-out row (sorted)", ylabel=f"P({data.target_names[1]})", ylim=(-0.02, 1.02))
ax.legend()
plt.show()
"""),
    md("## Stop the server"),
    code("""
server.stop()
print(server.running())
"""),
]

EXPERIMENT = [
    md("""
# 3 · A/B experiment

The whole loop, *run → watch → decide → act → audit*: serve `champion` and `challenger`
behind the experiment gateway, send simulated traffic with outcome feedback, read the
experiment out (Bayesian: each arm's probability to be best, expected loss, credible
interval of the lift; the same read-out as `/analysis`, `workbench analyze` and the
dashboard), look at the live Panel dashboard, conclude it on the running gateway (all
traffic to the winner, no rebuild), promote the winner in the model store, and read the
audit trail. Run notebook 1 first.
"""),
    code("""
# Parameters (papermill convention): small defaults; the tests override them.
traffic_seconds = 20
rate = 20.0
dataset = "breast_cancer"
""", "parameters"),
    code("""
import os
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

from workbench import control, events, keys, readout, store
from workbench.background import start
from workbench.build import build_experiment
from workbench.config import load as load_config
from workbench.report import print_readout
from workbench.simulate import simulate

workdir = Path(tempfile.mkdtemp(prefix="workbench-experiment-"))
db_url = f"sqlite:///{workdir / 'events.db'}"
config_path = workdir / "experiment.yaml"
config_path.write_text(\"\"\"\\
name: notebook-ab
arms:
  - {name: champion, model: champion, weight: 0.5}
  - {name: challenger, model: challenger, weight: 0.5}
metric: log_score
decision: {prob_best: 0.95, min_outcomes: 100}
\"\"\")
config = load_config(config_path)
print(config.name, [(a.name, a.weight) for a in config.arms], config.metric)
"""),
    md("""
## Build and serve the experiment bento

One bento holds the gateway and both posteriors, served in the gateway's process (or, built
with `arms="predictor"`, by a Predictor process beside it); predictions and feedback go
to the event store at `WORKBENCH_DB_URL` (SQLite here, PostgreSQL in production).
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
bento = build_experiment(str(config_path))
# An API key for this notebook (predictions, feedback, and the admin routes to conclude);
# keys live in the event store, hashed.
key_name = f"notebook-03-{time.time_ns()}"
key = keys.create(events.engine(db_url), key_name, ["predict", "feedback", "admin"])
server = start(bento, env=os.environ | {"WORKBENCH_DB_URL": db_url}, api_key=key)
server
"""),
    md("""
## Traffic

The simulator sends held-out rows as users (sticky assignment by user id) and reports each
outcome back to `/feedback`; the metric is each model's log score on those outcomes.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
features = store.metadata(store.resolve("champion"))["feature_names"]
traffic = await simulate(server.url, dataset=dataset, duration=traffic_seconds, rate=rate,
                         features=features, progress=False, api_key=key)
traffic.to_dict()
"""),
    code("""
print("errors:", sum(traffic.errors.values()), "| feedback accepted for every answer:",
      traffic.feedback == traffic.ok)
"""),
    md("""
## Watch: the Bayesian read-out

`workbench.readout.read_out` is the one read-out: the gateway's `/analysis`, `workbench
analyze`, the dashboard and this notebook all call it, with one rule for which events count
(intention-to-treat: what each unit was assigned to, fallbacks included; shadow traffic and
traffic served while paused or concluded are not counted).
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
eng = events.engine(db_url)
deadline = time.monotonic() + 30  # the gateway writes events off the request path
while sum(c["predictions"] for c in events.counts(eng, config.name).values()) < traffic.ok:
    assert time.monotonic() < deadline
    time.sleep(0.1)
result = readout.read_out(eng, config.name)
print_readout(result.to_dict())
"""),
    code("""
served = httpx.get(server.url + "/analysis", headers=server.headers).json()
print(sorted(a.arm for a in result.arms), result.metric,
      sum(a.predictions for a in result.arms) == traffic.ok,
      "| /analysis agrees:", [a["prob_best"] for a in served["arms"]]
      == [a.prob_best for a in result.arms])
"""),
    md("""
## The dashboard, inline

The same Panel app as `workbench dashboard` (experiments with their lifecycle buttons and
audit trail, latency, uncertainty, models); the saved notebook leaves its output out (it is
live JavaScript): run the cell to see it.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
import panel as pn

from workbench.dashboard import Dashboard

pn.extension()
Dashboard(db_url)
""", "remove-output"),
    md("""
## Act: conclude on the running gateway

`POST /admin/conclude` (or `workbench experiment conclude`, or the dashboard's button)
changes the experiment's state row in the event store; every gateway replica follows
within a second, with no rebuild. Without a decided winner we keep the champion.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
winner = result.decision["winner"] or "champion"
why = result.decision["reason"] if result.decision["winner"] else "no decision: keep champion"
state = httpx.post(server.url + "/admin/conclude", json={"winner": winner, "reason": why},
                   headers=server.headers).json()["state"]
state
"""),
    code("""
after = [httpx.post(server.url + "/predict", json={"unit": f"late-{i}", "instances": [
    [0.0] * len(features)]}, headers=server.headers).json()["arm"] for i in range(20)]
print(state["status"], "| every new request goes to the winner:", set(after) == {winner})
"""),
    md("""
## Promote the winner, and audit

The experiment's decision moves the `champion` alias in the model store (recorded in the
alias history; `store.rollback("champion")` or the dashboard undoes it). A Predictor served
from the store follows the alias live; a built bento is rebuilt and rolled out, and
`workbench promote` prints those commands. Every lifecycle action is in the audit trail:
who, when, what, why, before and after.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
if winner == "challenger":
    store.set_alias("champion", store.resolve("challenger"))
print("champion is now", store.resolve("champion"))
server.stop()  # a clean shutdown flushes the event log
audit = pd.DataFrame(control.history(eng, config.name))
audit[["actor", "action", "reason", "version"]]
"""),
    code("""
print(list(audit.action), "| concluded by this notebook's key:",
      audit.actor.iloc[0] == "key:" + key_name)
"""),
]

FEATURES = [
    md("""
# 4 · Features by entity key (Feast)

A model trained on columns computed one way and served columns computed another is wrong
without an error (training/serving skew). With a Feast feature store, training and
serving read one definition: train on a **feature service**'s point-in-time-correct
history, serve by entity key from its online store, and let the fingerprint of the
definitions that the artifact records refuse a redefinition before it skews an answer.
Define → materialise → train → serve → catch skew, on the demo's repository (the breast
cancer data by `patient_id`) in a temporary directory. Needs `workbench[features]`.
"""),
    code("""
# Parameters (papermill convention): small defaults; the tests override them.
warmup, samples, chains = 500, 1000, 2
seed = 0
patient = 1001  # whose mean_radius is re-measured after their label was recorded
new_radius = 30.0
""", "parameters"),
    code("""
import dataclasses
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from workbench import feature_demo, features, store
from workbench.errors_http import status_of
from workbench.feature_demo import ENTITY_KEY, SERVICE
from workbench.fit import SamplerConfig, fit
from workbench.serving import ModelServer
from workbench.widgets import summary

workdir = Path(tempfile.mkdtemp(prefix="workbench-features-"))
now = datetime.now(UTC)  # the demo's data: measured 10 days before, labelled 5 days before
"""),
    md("""
## Define

The definitions are plain Feast Python (`workbench/feature_repo/definitions.py`): the
entity `patient` (join key `patient_id`); three feature views of ten measurements each
(`nuclei_mean`, `nuclei_error`, `nuclei_worst`), with a 30-day TTL, read from parquet
files and fed online by push sources; an on-demand feature computed from two of them;
and the feature service `diagnosis_v1`, which fixes the features a model is trained and
served on, in order:
"""),
    code("""
source = (feature_demo.PACKAGED_REPO / "definitions.py").read_text()
print(source[source.index("@on_demand_feature_view"):].strip())
"""),
    md("""
## Materialise

`init_repo` copies the repository to a directory, writes the data there as parquet (the
offline store), registers the definitions (`feast apply`) and materialises the latest
values into the online store: SQLite here, Redis in production. `workbench features init`
does the same into `$WORKBENCH_HOME/features`.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
repo = feature_demo.init_repo(workdir / "features", now=now, progress=print)
fs = features.open_store(repo)
spec = features.describe(fs, SERVICE)
print("fingerprint of the definitions:", spec.fingerprint)
"""),
    code("""
print(f"{spec.service}: {len(spec.names)} features by {spec.entity_keys}")
views = pd.DataFrame([{"view": v, "features": list(spec.views.values()).count(v),
                       "TTL (days)": spec.ttl_seconds.get(v, 0) / 86400,
                       "on demand": v in spec.on_demand}
                      for v in dict.fromkeys(spec.views.values())])
print(views.to_string(index=False))
"""),
    md("""
## Train from features, point-in-time correct

Each label was known at a time (the entity frame's `event_timestamp`; here 5 days ago).
A training row must see each feature as it was **then**, never a later value, or the
model learns from the future. Say patient 1001 is re-measured yesterday: the new
`mean_radius` reaches the online store and the offline store through the view's push
source, as a streaming job would send it.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
from feast.data_source import PushMode

table, labels = feature_demo.tables(now=now)
columns = [ENTITY_KEY, "event_timestamp", "created",
           *(f.name for f in fs.get_feature_view("nuclei_mean").features)]
yesterday = pd.Timestamp(now - timedelta(days=1)).tz_localize(None)  # the files' naive UTC
remeasured = table.loc[table[ENTITY_KEY] == patient, columns].reset_index(drop=True).assign(
    mean_radius=new_radius, event_timestamp=yesterday, created=yesterday)
fs.push("nuclei_mean_push", remeasured, to=PushMode.ONLINE_AND_OFFLINE)
label = int(labels.set_index(ENTITY_KEY).target[patient])
asked = pd.DataFrame({ENTITY_KEY: patient, "target": label,
                      "event_timestamp": [now - timedelta(days=5), now]})
history, _, _ = features.training_frame(fs, SERVICE, asked, "target")
"""),
    code("""
print(f"patient {patient}'s mean_radius in a training row")
print(history.assign(label=["5 days ago", "now"])[["label", "mean_radius"]].to_string(
    index=False))
"""),
    md("""
The training set joins the label table (every patient, labelled 5 days ago) the same way
(`features.dataset`, what `workbench train logistic --features diagnosis_v1 --entities
labels.parquet --target target` calls), so patient 1001 trains on the old value. The
artifact records the feature service, its features in order, the entity keys, the TTLs
and the fingerprint (`posterior.features`).
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
data, spec, dropped = features.dataset(SERVICE, labels, "target", repo=repo)
frame, _, _ = features.training_frame(fs, SERVICE, labels, "target")
config = SamplerConfig(warmup=warmup, samples=samples, chains=chains, seed=seed)
posterior = fit("logistic", data, name="notebook-features", config=config, progress=False)
posterior = dataclasses.replace(posterior, features=spec.to_dict())
tag = store.save(posterior)
print(summary(posterior))
print(tag)
"""),
    code("""
print(f"{len(data)} rows, {dropped} left out; features in the service's order:",
      data.feature_names == spec.names)
print("a training row with the value pushed yesterday:", new_radius in set(frame.mean_radius))
print("stored:", store.get(tag).features["service"],
      store.get(tag).features["fingerprint"] == spec.fingerprint)
"""),
    md("""
## Serve by entity key

`ModelServer` is what the Predictor bento runs (here in process). A model trained from
a feature service also takes `entities`: the server reads their features from the online
store at `WORKBENCH_FEATURE_REPO` (one batched call per micro-batch, cached 5 seconds),
so a client sends only `{"patient_id": 1001}`; over HTTP, `POST /predict` with
`{"entities": [...]}` on the Predictor, plus `"unit"` on the experiment gateway. Each
prediction says where its features came from.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
os.environ["WORKBENCH_FEATURE_REPO"] = str(repo)
server = ModelServer({"notebook-features": tag}, load=store.get, buckets=(1, 4))
server.warmup()
by_entity = await server.predict(entities=[{ENTITY_KEY: patient}])
online = fs.get_online_features(features=fs.get_feature_service(SERVICE),
                                entity_rows=[{ENTITY_KEY: patient}]).to_df()[list(spec.names)]
by_row = await server.predict(instances=online.to_numpy().tolist())
by_entity
"""),
    code("""
note = by_entity["predictions"][0].pop("features")
print("ready:", server.ready, "| the online row has yesterday's value:",
      online.mean_radius[0] == new_radius)
print("by entity == by raw row:", by_entity["predictions"] == by_row["predictions"])
print(f"features: {note['status']}, the oldest {note['age_seconds'] / 86400:.0f} days old")
print(server.metadata()["models"][tag]["feature_service"]["policy"])
"""),
    md("""
An entity the store does not have is a 404, a key of the wrong type a 400, a value older
than its view's TTL a 422 (`WORKBENCH_FEATURE_MISSING` and `WORKBENCH_FEATURE_STALE`
choose to impute the training mean, or to serve it marked stale, instead):
"""),
    code("""
for rows in ([{ENTITY_KEY: 99}], [{ENTITY_KEY: str(patient)}]):
    try:
        await server.predict(entities=rows)
    except Exception as exc:
        print(status_of(exc), exc)
"""),
    md("""
## Catch skew

Now someone shortens `nuclei_mean`'s TTL to 7 days and re-applies the definitions (here
in a copy of the repository; the served one stays as it is). The model was trained on
the old definitions: `features.compare` (and `workbench features check MODEL`, which
exits 1 for a deployment pipeline) says what changed.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
changed = workdir / "features-changed"
shutil.copytree(repo, changed)
fs_changed = features.open_store(changed)
view = fs_changed.get_feature_view("nuclei_mean")
view.ttl = timedelta(days=7)
fs_changed.apply([view])
trained_on = features.FeatureSpec.from_dict(store.get(tag).features)
problems = features.compare(trained_on, features.describe(fs_changed, SERVICE))
problems
"""),
    code("""
print(len(problems), "difference:", problems[0].split(" (fingerprint")[0])
"""),
    md("""
A server on the changed repository stays up but **not ready**, and says why, until the
model is retrained, the definitions are restored, or `WORKBENCH_FEATURE_SKEW=warn`
serves anyway:
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
os.environ["WORKBENCH_FEATURE_REPO"] = str(changed)
refused = ModelServer({"notebook-features": tag}, load=store.get, buckets=(1, 4))
refused.warmup()
print(refused.error)
"""),
    code("""
print("ready:", refused.ready, "| says why:", "training/serving skew" in refused.error)
try:
    await refused.predict(entities=[{ENTITY_KEY: patient}])
except Exception as exc:
    print(status_of(exc), type(exc).__name__)
del os.environ["WORKBENCH_FEATURE_REPO"]
shutil.rmtree(workdir)
"""),
]

BATCH = [
    md("""
# 5 · Batch and streams

The Predictor's compiled posterior-predictive summary, used three more ways: a table scored
from a file in chunks (resumable, locally or on Ray), a long request answered as
server-sent events a chunk at a time, and a stream of events scored as they arrive (Redis
Streams), with the prediction cache answering rows it has seen. Every way gives the same
numbers as `POST /predict`. Run notebook 1 first (it stores `champion`).
"""),
    code("""
# Parameters (papermill convention): small defaults; the tests override them.
model = "champion"
rows = 200_000
chunk_rows = 50_000
use_ray = True  # a local 2-worker Ray cluster on 127.0.0.1 (workbench[ray])
stream_events = 2_000
""", "parameters"),
    code("""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench import datasets, store
from workbench.predict import Predictor
from workbench.score import batch_predictor
from workbench.score_files import score_file

workdir = Path(tempfile.mkdtemp(prefix="workbench-batch-"))
tag = store.resolve(model)
posterior = store.get(tag)
print(tag.split(":")[0], len(posterior.feature_names), "features", posterior.target_names)
"""),
    md("""
## A table to score

Customers as rows: the dataset's rows resampled with a little noise, and an id column that
is not a feature (it is passed through to the scores).
"""),
    code("""
data = datasets.load("breast_cancer").select(posterior.feature_names)
rng = np.random.default_rng(0)
X = data.X[rng.integers(0, len(data), rows)] * rng.normal(1, 0.05, (rows, data.X.shape[1]))
features = list(data.feature_names)
table = pd.DataFrame(X.astype("float32"), columns=features)
table.insert(0, "customer_id", np.arange(rows) + 100_000)
source = workdir / "customers.parquet"
table.to_parquet(source)
print(list(table.columns[:3]), "...", table.shape[1], "columns; rows:", len(table) == rows)
"""),
    md("""
## Score the file in chunks

`score_file` (what `workbench score MODEL --input ... --output ...` runs) reads the file a
chunk at a time, so memory is bounded by `chunk_rows`, not by the file; each chunk is
written under `OUTPUT.parts/` as soon as it is scored, then the parts are joined.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
predictor = batch_predictor(posterior, chunk_rows)
output = workdir / "scores.parquet"
with tqdm(total=rows, unit="rows") as bar:
    report = score_file(predictor, tag, source, output, chunk_rows=chunk_rows,
                        progress=lambda done, total: bar.update(done - bar.n))
print(f"{report.rows:,} rows in {report.chunks} chunks: {report.rows / report.seconds:,.0f} "
      f"rows/s ({report.rows * posterior.n_draws / report.seconds:,.0f} rows x draws/s)")
"""),
    code("""
scores = pd.read_parquet(output)
print(list(scores.columns))
sample = table.sample(5, random_state=1)
served = Predictor(posterior).predict(sample[features].to_numpy().tolist())
print("same as the Predictor:", np.allclose(scores.loc[sample.index, "mean"], served.mean,
                                            atol=1e-6))
"""),
    md("""
## Interrupted, then resumed

A run stopped half-way (here by an exception after its second chunk; a killed job or
Ctrl+C alike) leaves its finished parts; the same call resumes and computes only the rest.
"""),
    code("""
class Interrupted(Exception):
    pass


def stop_after_second_chunk(index):
    if index == 1:
        raise Interrupted("stopped after chunk 1")


again = workdir / "again.parquet"
try:
    score_file(predictor, tag, source, again, chunk_rows=chunk_rows,
               on_chunk=stop_after_second_chunk)
except Interrupted as exc:
    print(exc, "->", sorted(p.name for p in (workdir / "again.parquet.parts").glob("part-*")))
resumed = score_file(predictor, tag, source, again, chunk_rows=chunk_rows)
print(f"resumed: {resumed.resumed_chunks} chunks already done, {resumed.chunks} computed")
print("same scores:", pd.read_parquet(again).equals(scores))
"""),
    md("""
## On Ray

`--engine ray` runs the same scoring on Ray Data: one actor per worker loads and compiles
the posterior once (the artifact travels as bytes) and scores the same chunks, written as
the same parts, so the output keeps the input's order and a run interrupted on either
engine resumes on the other. Here a local cluster of two workers on 127.0.0.1, started and
stopped by the call (`address="ray://head:10001"` uses an existing one).
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
if use_ray:
    from workbench.score_ray import score_with_ray

    with tqdm(total=rows, unit="rows") as bar:
        on_ray = score_with_ray(tag, source, workdir / "ray.parquet", workers=2,
                                chunk_rows=chunk_rows,
                                progress=lambda done, total: bar.update(done - bar.n))
    ray_scores = pd.read_parquet(workdir / "ray.parquet")
    print(f"{on_ray.rows:,} rows in {on_ray.seconds:.1f}s; same as local:",
          np.allclose(ray_scores["mean"], scores["mean"], atol=1e-6))
"""),
    md("""
## A long request as server-sent events, and the prediction cache

A Predictor in the background, with the prediction cache on (`WORKBENCH_PREDICTION_CACHE`:
rows kept in process; `WORKBENCH_PREDICTION_CACHE_REDIS` adds a Redis shared by replicas).
`POST /predict/stream` checks every row first, then sends one event per chunk as soon as it
is computed: a progress bar for a request of thousands of rows.
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
from workbench import events, keys
from workbench.background import start
from workbench.build import build_predictor

bento = build_predictor([model])
key = keys.create(events.engine(), f"notebook-05-{time.time_ns()}", ["predict"])
server = start(bento, api_key=key, env=os.environ | {"WORKBENCH_PREDICTION_CACHE": "100000"})
server
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
long = table[features].head(5_000).to_numpy().tolist()
streamed = []
with tqdm(total=len(long), unit="rows") as bar, httpx.stream(
        "POST", server.url + "/predict/stream", headers=server.headers, timeout=120,
        json={"instances": long, "chunk_rows": 500}) as response:
    for line in response.iter_lines():
        if line.startswith("data: "):
            event = json.loads(line[6:])
            streamed += event.get("predictions", [])
            bar.update(len(event.get("predictions", [])))
print(event)
"""),
    code("""
print(len(streamed), "rows; same as the file's scores:",
      np.allclose([p["mean"] for p in streamed], scores["mean"][:len(long)], atol=1e-6))
"""),
    md("""
Rows asked again are answered from the cache, keyed by the model version (its tag), the
row's values, the interval mass and the draws: here the rows the stream above computed,
asked one by one, and a few new ones. `/metrics` counts hits and misses. An alias that moves
resolves to another version, so it is never answered from its old version's entries.
"""),
    code("""
def cache_counts():
    text = httpx.get(server.url + "/metrics").text
    return {outcome: sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("workbench_prediction_cache_total")
                         and f'outcome="{outcome}"' in line and 'level="l1"' in line)
            for outcome in ("hit", "miss")}


before = cache_counts()
fresh = (np.asarray(long[:10]) * 1.5).tolist()  # rows nobody asked for yet
for i in range(200):  # 200 requests: 20 popular customers, and the 10 new rows twice each
    row = fresh[i // 20] if i % 10 == 0 else long[i % 20]
    httpx.post(server.url + "/predict", json={"instances": [row]},
               headers=server.headers).raise_for_status()
after = cache_counts()
print({k: int(after[k] - before[k]) for k in after})
"""),
    code("""
server.stop()
print(server.running())
"""),
    md("""
## A stream of events (Redis Streams)

`workbench stream` consumes a stream with a consumer group (N consumers share it), scores
each event with the micro-batcher, writes one result per event id to another stream, and
acknowledges an event only once its result is written: at least once, never twice. Here a
Redis on a free loopback port (Debian's `redis-server`: `apt install redis-server`), one
consumer, and events sent once it is ready; event-to-result latency comes from the streams'
own timestamps.
"""),
    code("""
import redis

from workbench.serving import free_port

port = free_port()
redis_server = subprocess.Popen(
    [shutil.which("redis-server") or "/usr/sbin/redis-server", "--port", str(port),
     "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
client = redis.Redis(port=port)
deadline = time.monotonic() + 30
while True:
    try:
        client.ping()
        break
    except redis.ConnectionError:
        if time.monotonic() > deadline:
            raise
source, sink = f"redis://127.0.0.1:{port}/0/events", f"redis://127.0.0.1:{port}/0/scores"
workbench_cli = str(Path(sys.executable).with_name("workbench"))
consumer = subprocess.Popen(
    [workbench_cli, "stream", model, "--source", source, "--sink", sink,
     "--max-events", str(stream_events + 1)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    text=True)
client.xadd("events", {"instances": json.dumps([long[0]])})  # answered once it is ready
deadline = time.monotonic() + 120
while client.xlen("scores") < 1 and consumer.poll() is None and time.monotonic() < deadline:
    time.sleep(0.1)
print("consumer ready:", client.xlen("scores") == 1)
"""),
    code("""
pipe = client.pipeline()
for row in long[1:stream_events + 1]:
    pipe.xadd("events", {"instances": json.dumps([row]), "unit": "notebook"})
pipe.execute()
out, err = consumer.communicate(timeout=300)
summary = json.loads(out.strip().splitlines()[-1])
results = client.xrange("scores")
print("one result per event:", len(results) == stream_events + 1,
      len({fields[b"event_id"] for _, fields in results}) == stream_events + 1)
print("scored:", summary["scored"] == stream_events + 1, {k: summary[k] for k in (
    "refused", "duplicate")})
"""),
    code("""
# NBVAL_IGNORE_OUTPUT
def millis(stream_id):
    return int(stream_id.decode().split("-")[0])


latency = [millis(rid) - millis(fields[b"event_id"]) for rid, fields in results[1:]]
print(f"event to result: p50 {np.percentile(latency, 50):.0f} ms, "
      f"p99 {np.percentile(latency, 99):.0f} ms over {len(latency):,} events sent at once")
first = json.loads(results[1][1][b"predictions"])[0]
print(first)
"""),
    code("""
redis_server.terminate()
redis_server.wait(timeout=30)
shutil.rmtree(workdir)
print("stopped:", redis_server.returncode is not None)
"""),
]


NOTEBOOKS = {
    "01_fit_and_diagnose.ipynb": FIT,
    "02_package_and_serve.ipynb": SERVE,
    "03_experiment.ipynb": EXPERIMENT,
    "04_features.ipynb": FEATURES,
    "05_batch_and_streams.ipynb": BATCH,
}


def write(names: list[str]) -> None:
    for name in names:
        cells = NOTEBOOKS[name]
        nb = new_notebook(cells=cells, metadata={"kernelspec": KERNEL, "language_info": {
            "name": "python"}})
        for i, cell in enumerate(nb.cells):
            cell.id = f"{name[:2]}-{i:02d}"
        nbformat.write(nb, HERE / name)


def run(names: list[str]) -> None:
    for name in names:
        path = HERE / name
        print("executing", path.name, flush=True)
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                        "--execute", "--inplace", "--ExecutePreprocessor.timeout=600",
                        str(path)], check=True)
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if "remove-output" in cell.metadata.get("tags", []):
                cell.outputs = []
        nbformat.write(nb, path)


if __name__ == "__main__":
    chosen = [n for n in NOTEBOOKS if n in sys.argv] or list(NOTEBOOKS)
    write(chosen)
    if "--run" in sys.argv:
        run(chosen)
