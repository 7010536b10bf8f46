"""Interleaved 1-vs-2-thread A/B for one model: fp32 t1/t2, bf16 t1, bf16 t2 stock, bf16 t2 wgrad-1. usage: ab3.py MODEL ROUNDS"""
import os, sys, time, statistics, torch
from senland_geo.backends.cpu import CPUBackend
from senland_geo.train import SegmentationLoss
from senland_geo import registry
model, rounds = sys.argv[1], int(sys.argv[2])
V = [("fp32-t1", "fp32", 1, 1), ("fp32-t2", "fp32", 2, 1), ("bf16-t1", "bf16", 1, 1), ("bf16stock-t2", "bf16", 2, None), ("bf16w1-t2", "bf16", 2, 1)]
x0 = torch.randn(16, 10, 64, 64); y = torch.randint(0, 11, (16, 64, 64)); lf = SegmentationLoss()
steps = {}
for name, prec, th, wg in V:
    be = CPUBackend(threads=th, precision=prec, bf16_wgrad_threads=wg)
    torch.manual_seed(0); m = registry.load("models", model)(in_channels=10, num_classes=11)
    net = be.prepare_model(m); opt = be.make_optimizer(m.parameters(), lr=1e-3)
    def step(net=net, opt=opt, be=be, th=th):
        torch.set_num_threads(th)
        opt.zero_grad(set_to_none=True)
        with be.autocast():
            loss = lf(net(x0).float(), y)
        loss.backward(); opt.step()
    step(); steps[name] = step
walls = {v[0]: [] for v in V}; cpus = {v[0]: [] for v in V}
l0 = os.getloadavg()
for r in range(rounds):
    for name, *_ in V:
        c, t = time.process_time(), time.perf_counter(); steps[name]()
        walls[name].append(time.perf_counter() - t); cpus[name].append(time.process_time() - c)
l1 = os.getloadavg()
print(f"{model} rounds={rounds} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} load {l0[0]:.2f}->{l1[0]:.2f}")
med = {k: statistics.median(v) for k, v in walls.items()}
for name, *_ in V:
    print(f"  {name:13s} wall {med[name]*1e3:7.1f} ms img/s {16/med[name]:6.2f} best {16/min(walls[name]):6.2f} cpu {statistics.median(cpus[name])*1e3:7.1f} ms")
print(f"  bf16/fp32 at 2 threads: stock {med['fp32-t2']/med['bf16stock-t2']:.2f}x, wgrad-1 {med['fp32-t2']/med['bf16w1-t2']:.2f}x; 1 thread {med['fp32-t1']/med['bf16-t1']:.2f}x")
print(f"  1->2 threads: fp32 {med['fp32-t1']/med['fp32-t2']:.2f}x, bf16 stock {med['bf16-t1']/med['bf16stock-t2']:.2f}x, bf16 wgrad-1 {med['bf16-t1']/med['bf16w1-t2']:.2f}x")
