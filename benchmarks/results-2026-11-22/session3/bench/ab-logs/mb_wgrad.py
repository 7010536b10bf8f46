"""Micro-benchmark: conv3x3 weight-gradient, fp32 vs bf16, 1 vs 2 threads, nchw vs cl."""
import os, time, sys
import torch
B = 16
shapes = [(64, 16), (128, 8), (256, 4), (512, 2), (256, 8), (128, 16)]
def run(C, HW, dtype, threads, cl, reps=20):
    torch.set_num_threads(threads)
    x = torch.randn(B, C, HW, HW, dtype=dtype)
    w = torch.randn(C, C, 3, 3, dtype=dtype)
    go = torch.randn(B, C, HW, HW, dtype=dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last); go = go.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    f = lambda: torch.ops.aten.convolution_backward(go, x, w, None, [1,1],[1,1],[1,1],False,[0,0],1,[False,False,True])
    for _ in range(3): f()
    ts=[]
    for _ in range(reps):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    ts.sort(); return ts[len(ts)//2]*1e3
print("load", os.getloadavg(), "OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY"))
print("C HW | fp32 t1 | fp32 t2 | bf16 t1 | bf16 t2 | bf16cl t1 | bf16cl t2 (ms median)")
for C, HW in shapes:
    r = []
    for dt, cl in ((torch.float32, False), (torch.bfloat16, False), (torch.bfloat16, True)):
        for th in (1, 2):
            r.append(run(C, HW, dt, th, cl))
    print(C, HW, " ".join(f"{v:8.3f}" for v in r), flush=True)
print("load", os.getloadavg())
