import os, time, torch
from concurrent.futures import ThreadPoolExecutor
torch.set_num_threads(2); B=16
pool = ThreadPoolExecutor(2)
def wg(go,x,w): return torch.ops.aten.convolution_backward(go, x, w, None, [1,1],[1,1],[1,1],False,[0,0],1,[False,True,False])[1]
def one(go,x,w):
    torch.set_num_threads(1)
    try: return wg(go,x,w)
    finally: torch.set_num_threads(2)
def _half(args):
    torch.set_num_threads(1)
    return wg(*args).float()
def split(go,x,w):
    h=go.shape[0]//2
    a,b = pool.map(_half, [(go[:h],x[:h],w),(go[h:],x[h:],w)])
    return (a+b).to(w.dtype)
fns=dict(stock=wg, one=one, split=split)
for C,HW in [(128,8),(256,4),(512,2),(256,8),(64,16),(128,16),(32,64)]:
    x=torch.randn(B,C,HW,HW,dtype=torch.bfloat16); go=torch.randn(B,C,HW,HW,dtype=torch.bfloat16); w=torch.randn(C,C,3,3,dtype=torch.bfloat16)
    ref=one(go,x,w).float()
    errs={k:((f(go,x,w).float()-ref).abs().max()/ref.abs().max()).item() for k,f in fns.items()}
    ts={k:[] for k in fns}
    for r in range(8):
        for k,f in fns.items():
            t=time.perf_counter(); f(go,x,w); ts[k].append(time.perf_counter()-t)
    print(C,HW," ".join(f"{k}={sorted(v)[4]*1e3:.2f}ms(min {min(v)*1e3:.2f}, err {errs[k]:.1e})" for k,v in ts.items()), flush=True)
print(os.getloadavg())
