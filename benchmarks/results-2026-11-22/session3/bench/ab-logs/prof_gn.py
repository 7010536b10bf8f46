import os, sys, time, torch
from torch.profiler import profile, ProfilerActivity
from senland_geo.backends.cpu import CPUBackend
from senland_geo.train import SegmentationLoss
from senland_geo import registry
th=int(sys.argv[1]); prec=sys.argv[2]; cl=sys.argv[3]=="cl"; model=sys.argv[4] if len(sys.argv)>4 else "unet-gn"
be=CPUBackend(threads=th, precision=prec, channels_last=cl); be.setup()
torch.manual_seed(0)
m=registry.load("models",model)(in_channels=10,num_classes=11)
net=be.prepare_model(m); x=be.prepare_batch(torch.randn(16,10,64,64)); y=torch.randint(0,11,(16,64,64))
opt=be.make_optimizer(m.parameters(),lr=1e-3); lf=SegmentationLoss()
def step():
    opt.zero_grad(set_to_none=True)
    with be.autocast():
        loss=lf(net(x).float(),y)
    loss.backward(); opt.step()
for _ in range(2): step()
with profile(activities=[ProfilerActivity.CPU], record_shapes=bool(os.environ.get("SHAPES"))) as p:
    for _ in range(3): step()
print("load",os.getloadavg(), th, prec, cl)
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=45))
if os.environ.get("SHAPES"): print(p.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=30))
