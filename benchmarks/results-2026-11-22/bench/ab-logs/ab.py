"""Interleaved A/B: cpu-time and wall per training step. usage: ab.py model variant..."""
import os, sys, time, statistics, torch
import segmentation_models_pytorch as smp
from senland_geo.train import SegmentationLoss
from senland_geo import registry
T = int(os.environ.get("T", "1")); torch.set_num_threads(T)
ROUNDS = int(os.environ.get("ROUNDS", "3")); STEPS = int(os.environ.get("STEPS", "3"))
model_name = sys.argv[1]
x = torch.randn(16,10,64,64); y = torch.randint(0,11,(16,64,64))
def make(v):
    torch.manual_seed(0)
    m = registry.load("models", model_name)(in_channels=10, num_classes=11).train()
    opts = set(v.split("+"))
    cl = "cl" in opts or "clx" in opts
    if "cl" in opts: m = m.to(memory_format=torch.channels_last)
    xx = x.contiguous(memory_format=torch.channels_last) if cl else x
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused="fused" in opts)
    lossf = SegmentationLoss() if "seg" in opts else torch.nn.CrossEntropyLoss()
    amp = "bf16" in opts
    torch.backends.mkldnn.conv.fp32_precision = "bf16" if "fpm" in opts else "ieee"
    fpm = "fpm" in opts
    def step():
        torch.backends.mkldnn.conv.fp32_precision = "bf16" if fpm else "ieee"
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = lossf(m(xx).float(), y)
        loss.backward(); opt.step()
    step()
    return step
steps = {v: make(v) for v in sys.argv[2:]}
res = {v: ([], []) for v in steps}
print("load", os.getloadavg(), "T", T, "OMP", os.environ.get("OMP_WAIT_POLICY"), flush=True)
for r in range(ROUNDS):
    for v, fn in steps.items():
        for _ in range(STEPS):
            w = time.perf_counter(); c = time.process_time(); fn()
            res[v][0].append(time.process_time() - c); res[v][1].append(time.perf_counter() - w)
base = None
for v, (c, w) in res.items():
    cm = statistics.median(c); wm = statistics.median(w)
    base = base or cm
    print(f"{model_name:14s} {v:22s} cpu {cm*1000:7.1f} ms/step ({16/cm*T:5.1f} cpu-img/s, x{base/cm:.2f})  wall {wm*1000:7.1f} ms ({16/wm:5.1f} img/s) best-wall {16/min(w):5.1f}")
print("load end", os.getloadavg())
