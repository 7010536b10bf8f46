import os, sys, time, statistics, json
import numpy as np, jax, jax.numpy as jnp
from senland_geo_jax import model as fm, train
dt = {"fp32": jnp.float32, "bf16": jnp.bfloat16}[os.environ.get("DT", "fp32")]
bs = 16; steps = int(os.environ.get("STEPS", "5"))
m = fm.UNetGN(num_classes=11, dtype=dt)
params = fm.init_params(fm.UNetGN(num_classes=11), 10, seed=0)
opt = train.make_optimizer()
state = train.create_train_state(params, opt)
step = train.make_train_step(m.apply, opt)
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((bs, 64, 64, 10), dtype=np.float32))
y = jnp.asarray(rng.integers(0, 11, (bs, 64, 64)).astype(np.int32))
t = time.perf_counter(); state, loss = step(state, x, y); loss.block_until_ready(); comp = time.perf_counter() - t
w, c = [], []
for _ in range(steps):
    t = time.perf_counter(); p = time.process_time()
    state, loss = step(state, x, y); loss.block_until_ready()
    w.append(time.perf_counter() - t); c.append(time.process_time() - p)
print(json.dumps({"dt": os.environ.get("DT", "fp32"), "flags": os.environ.get("XLA_FLAGS", ""), "compile_s": round(comp, 1),
  "img_s_wall": round(bs / statistics.median(w), 1), "img_s_best": round(bs / min(w), 1),
  "cpu_ms": round(statistics.median(c) * 1000), "loss": float(loss), "load": os.getloadavg()[0]}), flush=True)
