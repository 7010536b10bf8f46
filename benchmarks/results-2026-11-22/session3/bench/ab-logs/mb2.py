import os, time, sys, torch
th = int(sys.argv[1]); torch.set_num_threads(th)
B=16
def run(C, HW, dtype, cl, reps=30):
    x = torch.randn(B, C, HW, HW, dtype=dtype); w = torch.randn(C, C, 3, 3, dtype=dtype); go = torch.randn(B, C, HW, HW, dtype=dtype)
    if cl:
        x,go,w = [t.contiguous(memory_format=torch.channels_last) for t in (x,go,w)]
    f = lambda: torch.ops.aten.convolution_backward(go, x, w, None, [1,1],[1,1],[1,1],False,[0,0],1,[False,False,True])
    for _ in range(3): f()
    ts=[]
    for _ in range(reps):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    ts.sort(); return ts[len(ts)//2]*1e3
out=[]
for C,HW in [(64,16),(128,8),(256,4),(512,2),(256,8),(128,16),(64,32)]:
    r=[run(C,HW,torch.float32,False),run(C,HW,torch.bfloat16,False),run(C,HW,torch.float32,True),run(C,HW,torch.bfloat16,True)]
    print(th, C, HW, " ".join(f"{v:7.2f}" for v in r), flush=True)
print("load", os.getloadavg())
