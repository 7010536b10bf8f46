"""JAX unet-gn train step: two-pass GroupNorm (current) vs one-pass (E[x^2]-E[x]^2), interleaved."""
import os, time, statistics, numpy as np
import jax, jax.numpy as jnp, flax.linen as nn
import senland_geo_jax.model as M
from senland_geo_jax.backend import JaxBackend

class GroupNorm1P(M.GroupNorm):
    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        g = x.astype(jnp.float32).reshape(b, h, w, self.groups, c // self.groups)
        mean = g.mean(axis=(1, 2, 4), keepdims=True)
        meansq = jnp.square(g).mean(axis=(1, 2, 4), keepdims=True)
        inv = jax.lax.rsqrt(jnp.maximum(meansq - jnp.square(mean), 0.0) + self.epsilon)
        g = (g - mean) * inv
        return (g.reshape(b, h, w, c) * scale + bias).astype(self.dtype)

rng = np.random.default_rng(0)
x = rng.standard_normal((16, 10, 64, 64), dtype=np.float32); y = rng.integers(0, 11, (16, 64, 64))
steps = {}
orig = M.GroupNorm
for name, gn in (("twopass", orig), ("onepass", GroupNorm1P)):
    M.GroupNorm = gn
    be = JaxBackend(seed=0).build("unet-gn", in_channels=10, num_classes=11, precision="fp32")
    xs, ys = be.to_device(x[None], y[None]); x1, y1 = xs[0], ys[0]
    def step(be=be, x1=x1, y1=y1):
        be.state, loss = be._step(be.state, x1, y1); return float(loss)
    t = time.perf_counter(); l0 = step(); print(name, "compile+1st", round(time.perf_counter() - t, 1), "s loss", l0, flush=True)
    steps[name] = step
M.GroupNorm = orig
walls = {k: [] for k in steps}; la = os.getloadavg()
for r in range(6):
    for k, f in steps.items():
        t = time.perf_counter(); f(); walls[k].append(time.perf_counter() - t)
print("load", la[0], "->", os.getloadavg()[0])
for k, v in walls.items():
    print(f"  {k}: median {statistics.median(v)*1e3:.0f} ms, {16/statistics.median(v):.2f} img/s, best {16/min(v):.2f}")
print("ratio onepass/twopass speed", statistics.median(walls["twopass"]) / statistics.median(walls["onepass"]))
