import os, sys, torch, time
import segmentation_models_pytorch as smp
from torch.profiler import profile, ProfilerActivity
torch.set_num_threads(int(os.environ.get("T", "1")))
torch.manual_seed(0)
m = smp.Unet("resnet34", encoder_weights=None, in_channels=10, classes=11).train()
x = torch.randn(16,10,64,64); y = torch.randint(0,11,(16,64,64))
fused = "fused" in sys.argv
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused=fused)
amp = "bf16" in sys.argv
if "cl" in sys.argv:
    m = m.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = torch.nn.functional.cross_entropy(m(x).float(), y)
    loss.backward(); opt.step()
step(); step()
with profile(activities=[ProfilerActivity.CPU]) as p:
    step()
print(sys.argv[1:], "load", os.getloadavg())
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=22, max_name_column_width=50))
