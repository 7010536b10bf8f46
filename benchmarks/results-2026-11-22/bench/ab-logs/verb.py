import torch, sys, segmentation_models_pytorch as smp
import os; torch.set_num_threads(int(os.environ.get("T", "1")))
m = smp.Unet("resnet34", encoder_weights=None, in_channels=10, classes=11).train()
cl = "cl" in sys.argv
x = torch.randn(16,10,64,64); y = torch.randint(0,11,(16,64,64))
if cl: m = m.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
for i in range(2):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    torch.nn.functional.cross_entropy(out.float(), y).backward()
    if i == 0: print("=====STEP2", flush=True)
