"""Interleaved A/B of training steps: fp32, bf16, bf16+1-thread-wgrad. usage: ab.py MODEL THREADS ROUNDS [variants]"""
import os, sys, time, statistics, torch
from senland_geo.backends.cpu import CPUBackend
from senland_geo.backends.conv_wgrad import limit_bf16_weight_grad_threads
from senland_geo.train import SegmentationLoss
from senland_geo import registry
model, th, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
variants = sys.argv[4].split(",") if len(sys.argv) > 4 else ["fp32", "bf16", "bf16w1"]
torch.set_num_threads(th)
x0 = torch.randn(16, 10, 64, 64); y = torch.randint(0, 11, (16, 64, 64)); lf = SegmentationLoss()
steps = {}
for v in variants:
    prec = "bf16" if v.startswith("bf16") else "fp32"
    cl = "cl" in v
    be = CPUBackend(threads=th, precision=prec, channels_last=cl)
    torch.manual_seed(0)
    m = registry.load("models", model)(in_channels=10, num_classes=11)
    if "w1" in v: limit_bf16_weight_grad_threads(m, 1)
    net = be.prepare_model(m); x = be.prepare_batch(x0); opt = be.make_optimizer(m.parameters(), lr=1e-3)
    def step(net=net, x=x, opt=opt, be=be):
        opt.zero_grad(set_to_none=True)
        with be.autocast():
            loss = lf(net(x).float(), y)
        loss.backward(); opt.step()
    step(); steps[v] = step
walls = {v: [] for v in variants}; cpus = {v: [] for v in variants}
l0 = os.getloadavg()
for r in range(rounds):
    for v in variants:
        c, t = time.process_time(), time.perf_counter(); steps[v]()
        walls[v].append(time.perf_counter() - t); cpus[v].append(time.process_time() - c)
l1 = os.getloadavg()
base = statistics.median(walls[variants[0]])
print(f"{model} threads={th} rounds={rounds} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} load {l0[0]:.2f}->{l1[0]:.2f}")
for v in variants:
    w = statistics.median(walls[v]); c = statistics.median(cpus[v])
    print(f"  {v:10s} wall {w*1e3:7.1f} ms  img/s {16/w:6.2f}  best {16/min(walls[v]):6.2f}  cpu {c*1e3:7.1f} ms  speedup vs {variants[0]} {base/w:.2f}x")
