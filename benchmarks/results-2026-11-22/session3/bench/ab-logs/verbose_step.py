import os, sys, torch
from senland_geo.backends.cpu import CPUBackend
from senland_geo.backends.conv_wgrad import limit_bf16_weight_grad_threads
from senland_geo.train import SegmentationLoss
from senland_geo import registry
model, th, v = sys.argv[1], int(sys.argv[2]), sys.argv[3]
be = CPUBackend(threads=th, precision="bf16" if "bf16" in v else "fp32", channels_last="cl" in v); be.setup()
torch.manual_seed(0); m = be.prepare_model(registry.load("models", model)(in_channels=10, num_classes=11))
if "w1" in v: limit_bf16_weight_grad_threads(m, 1)
x = be.prepare_batch(torch.randn(16, 10, 64, 64)); y = torch.randint(0, 11, (16, 64, 64)); lf = SegmentationLoss(); opt = be.make_optimizer(m.parameters())
for i in range(3):
    if i == 2: print("STEP", flush=True); os.environ  # marker
    opt.zero_grad()
    with be.autocast(): loss = lf(m(x).float(), y)
    loss.backward(); opt.step()
