import os, time, sys, torch
th = int(sys.argv[1]); torch.set_num_threads(th)
C,HW=int(sys.argv[2]),int(sys.argv[3]); dt=getattr(torch,sys.argv[4]); B=16
x = torch.randn(B, C, HW, HW, dtype=dt); w = torch.randn(C, C, 3, 3, dtype=dt); go = torch.randn(B, C, HW, HW, dtype=dt)
f = lambda: torch.ops.aten.convolution_backward(go, x, w, None, [1,1],[1,1],[1,1],False,[0,0],1,[False,False,True])
for _ in range(5): f()
ts=[]
for _ in range(15):
    t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
ts.sort(); print("median ms", ts[len(ts)//2]*1e3, "min", ts[0]*1e3, os.getloadavg())
