"""Timeline of one build child: python timeline.py SIZE_NAME [composite] [src_root]"""
import json, sys, time, os, threading, functools
src = sys.argv[3] if len(sys.argv) > 3 else "/work/main"
sys.path.insert(0, f"{src}/src"); sys.path.insert(0, f"{src}/benchmarks")
T0 = time.perf_counter(); C0 = time.process_time()
import bench_cube as bc
import dask
from senland_geo import store, cube, stac, labels, build, aligned_read
from senland_geo.build import build_region_cube
imp = (time.perf_counter()-T0, time.process_time()-C0)
EV = []
def wrap(mod, name, label=None):
    f = getattr(mod, name)
    @functools.wraps(f)
    def w(*a, **k):
        s, c = time.perf_counter(), time.thread_time()
        try: return f(*a, **k)
        finally: EV.append((threading.current_thread().name[-3:], label or name, s, time.perf_counter(), time.thread_time()-c))
    setattr(mod, name, w)
for m, n in [(stac,"search"),(cube,"stack"),(build,"_check_not_all_cloudy"),(labels,"labels_for_grid"),(store,"cube_to_dataset"),
             (store,"write_cube"),(store,"_create_structure"),(store,"_write_pooled"),(aligned_read,"read_chunk"),(store,"_write_chunk"),
             (cube, "composite_median"), (store, "_fingerprint"), (store, "grid_of"), (aligned_read, "plan_prepared")]:
    wrap(m, n)
from senland_geo import composite
wrap(composite, "median_block")
name = sys.argv[1]; comp = sys.argv[2] if len(sys.argv) > 2 else "none"
info = json.loads(open(f"/tmp/h3/cubebench/{name}/done.json").read())
out = "/tmp/h3/prof/out.zarr"
import shutil; shutil.rmtree(out, ignore_errors=True)
rep = []
with dask.config.set(num_workers=2):
    t0, c0 = time.perf_counter(), time.process_time()
    build_region_cube(bc._region(info), out, composite=comp, overwrite=True, scheduler="threads", report=rep)
    wall, cpu = time.perf_counter()-t0, time.process_time()-c0
print(f"imports {imp[0]:.3f}/{imp[1]:.3f}  build wall {wall:.3f} cpu {cpu:.3f} load {os.getloadavg()[0]:.1f}")
for th, n, s, e, c in sorted(EV, key=lambda x: x[2]):
    print(f"{th:>4} {n:24s} {1000*(s-t0):7.1f} {1000*(e-t0):7.1f}  dur {1000*(e-s):6.1f}  cpu {1000*c:6.1f}")
