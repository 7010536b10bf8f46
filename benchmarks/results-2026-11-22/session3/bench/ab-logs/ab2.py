"""unet-gn fp32 A/B: nchw, cl, cl+inplace relu. usage: ab2.py THREADS ROUNDS"""
import os, sys, time, statistics, types, torch
import torch.nn.functional as F
from senland_geo.backends.cpu import CPUBackend
from senland_geo.train import SegmentationLoss
from senland_geo.models.unet_gn import DoubleConv
from senland_geo import registry
th, rounds = int(sys.argv[1]), int(sys.argv[2])
variants = sys.argv[3].split(",") if len(sys.argv) > 3 else ["nchw", "cl", "clinp", "nchwinp"]
torch.set_num_threads(th)
x0 = torch.randn(16, 10, 64, 64); y = torch.randint(0, 11, (16, 64, 64)); lf = SegmentationLoss()
def inplace_fwd(self, x):
    x = F.relu(self.norm1(self.conv1(x)), inplace=True)
    return F.relu(self.norm2(self.conv2(x)), inplace=True)
steps = {}
for v in variants:
    be = CPUBackend(threads=th, precision="bf16" if "bf16" in v else "fp32", channels_last=v.startswith("cl") or "cl" in v.split("-"))
    torch.manual_seed(0)
    m = registry.load("models", "unet-gn")(in_channels=10, num_classes=11)
    if "inp" in v:
        for mod in m.modules():
            if isinstance(mod, DoubleConv): mod.forward = types.MethodType(inplace_fwd, mod)
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
b = statistics.median(walls[variants[0]]); bc = statistics.median(cpus[variants[0]])
print(f"unet-gn threads={th} rounds={rounds} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} load {l0[0]:.2f}->{l1[0]:.2f}")
for v in variants:
    w = statistics.median(walls[v]); c = statistics.median(cpus[v])
    print(f"  {v:10s} wall {w*1e3:7.1f} ms img/s {16/w:6.2f} best {16/min(walls[v]):6.2f} cpu {c*1e3:7.1f} ms  wall x{b/w:.2f} cpu x{bc/c:.2f}")
