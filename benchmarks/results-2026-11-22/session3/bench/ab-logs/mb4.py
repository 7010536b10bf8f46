import os, time, sys, torch
import torch.nn.functional as F
torch.set_num_threads(2); B=16
def wg_onednn(go,x,w): return torch.ops.aten.convolution_backward(go, x, w, None, [1,1],[1,1],[1,1],False,[0,0],1,[False,True,False])[1]
def wg_1thread(go,x,w):
    torch.set_num_threads(1)
    try: return wg_onednn(go,x,w)
    finally: torch.set_num_threads(2)
def wg_fp32(go,x,w): return wg_onednn(go.float(),x.float(),w.float())
def wg_mm(go,x,w):
    Co,Ci,kh,kw=w.shape
    cols=F.unfold(x,(kh,kw),padding=1)            # B, Ci*9, L
    g=go.flatten(2)                                  # B, Co, L
    # sum_b g_b @ cols_b^T
    gw=torch.bmm(g, cols.transpose(1,2)).sum(0) if False else (g.transpose(0,1).reshape(Co,-1) @ cols.transpose(0,1).reshape(Ci*kh*kw,-1).t())
    return gw.view(Co,Ci,kh,kw)
fns=dict(onednn=wg_onednn, onethread=wg_1thread, fp32=wg_fp32, mm=wg_mm)
for C,HW in [(128,8),(256,4),(512,2),(256,8),(512,4),(64,16),(128,16)]:
    x=torch.randn(B,C,HW,HW,dtype=torch.bfloat16); go=torch.randn(B,C,HW,HW,dtype=torch.bfloat16); w=torch.randn(C,C,3,3,dtype=torch.bfloat16)
    ref=wg_fp32(go,x,w)
    ts={k:[] for k in fns}
    for k,f in fns.items():
        err=(f(go,x,w).float()-ref).abs().max().item()/ref.abs().max().item()
        ts[k].append(err)
    for r in range(8):
        for k,f in fns.items():
            t=time.perf_counter(); f(go,x,w); ts[k].append(time.perf_counter()-t)
    print(C,HW," ".join(f"{k}={sorted(v[1:])[4]*1e3:.2f}ms(err{v[0]:.1e})" for k,v in ts.items()), flush=True)
print(os.getloadavg())
