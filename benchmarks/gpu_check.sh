#!/bin/bash
# GPU check: JAX on CUDA, the Predictor's compute on GPU against the same machine's CPU,
# and the Predictor bento served with --arg gpu=true. Run from the repository root on a
# machine with a CUDA GPU and JAX's CUDA wheels, with a model store holding `champion` in
# .gpu/ (copied to BENTOML_HOME). Wheels the machine lacks (BentoML and its deps, for
# Python 3.12 on the lent H100) may be put in .whl/; results: benchmarks/RESULTS.md.
set -u
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src BENTOML_HOME=/tmp/bentoml BENTOML_DO_NOT_TRACK=True PATH=/tmp/site/bin:$PATH
cp -r .gpu /tmp/bentoml
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 - <<'PY'
import jax, numpyro, bentoml, time, numpy as np
print("jax", jax.__version__, "numpyro", numpyro.__version__, "bentoml", bentoml.__version__)
print("devices", jax.devices())
from workbench import store
from workbench.predict import Predictor
p = store.get("champion")
pred = Predictor(p); pred.warmup()
print("predictor device", pred.device)
X = np.random.default_rng(0).normal(size=(256, len(p.feature_names))).astype(np.float32) * p.x_scale + p.x_loc
for rows in (1, 256):
    ts = []
    for _ in range(50):
        t = time.perf_counter(); pred.predict(X[:rows]); ts.append(time.perf_counter() - t)
    print(f"predict {rows} rows x {p.n_draws} draws: median {np.median(ts)*1e3:.2f} ms (IQR {np.subtract(*np.percentile(ts,[75,25]))*1e3:.2f})")
cpu = jax.devices("cpu")[0]
with jax.default_device(cpu):
    pc = Predictor(p); pc.warmup()
    ts=[]
    for _ in range(50):
        t = time.perf_counter(); pc.predict(X); ts.append(time.perf_counter() - t)
    print(f"same, on this machine's CPU (device {pc.device}): 256 rows median {np.median(ts)*1e3:.2f} ms")
a = pred.predict(X).records(); b = pc.predict(X).records()
print("GPU vs CPU max |mean diff|", max(abs(x["mean"] - y["mean"]) for x, y in zip(a, b)))
PY
PORT=3123
# its own process group (setsid), so that it and its workers are stopped by that group's id
setsid bentoml serve service:Predictor --working-dir bentos/predictor --arg gpu=true --arg models=champion --host 127.0.0.1 --port $PORT > /tmp/serve.log 2>&1 &
SERVER=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 1; done
curl -s -o /dev/null -w "readyz %{http_code}\n" http://127.0.0.1:$PORT/readyz
python3 - <<PY
import httpx, json
m = httpx.get("http://127.0.0.1:$PORT/metadata").json()
print("metadata device:", m["device"], "| startup:", json.dumps(m["startup"]))
feat = len(m["features"])
r = httpx.post("http://127.0.0.1:$PORT/predict", json={"instances": [[0.0]*feat, [1.0]*feat]})
print("predict", r.status_code, json.dumps(r.json())[:300])
bad = httpx.post("http://127.0.0.1:$PORT/predict", json={"instances": [[1.0, 2.0]]})
print("bad", bad.status_code, bad.json()["error"])
PY
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv
grep -i "workbench" /tmp/serve.log | tail -5
kill -TERM -- "-$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null
[ -n "${OUT:-}" ] && cp /tmp/serve.log "$OUT/serve.log"
