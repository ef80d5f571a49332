"""Compare two feature shards byte for byte: every dataset and every attribute, except the creation time and
the code version. Videos are compared by id (with several decode workers they are stored in the order they
finish). Exit status 0 when identical.

    python scripts/compare_shards.py before/shard-00000-of-00001.h5 after/shard-00000-of-00001.h5
"""
import sys, h5py, numpy as np
SKIP = {"created", "created_at", "creation_time", "code_version", "date"}
def walk(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj))
    return out
def attrs(obj):
    return {k: v for k, v in obj.attrs.items() if k not in SKIP}
def same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype == object or b.dtype == object:
            return a.dtype == b.dtype and a.shape == b.shape and a.tolist() == b.tolist()
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return a == b
def order(f):
    # with several workers videos are stored in the order they finish: compare video by video
    return np.argsort(np.asarray(f["videos/video_id"][()]).astype(str), kind="stable")
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
problems, count = [], 0
ta, tb = walk(a), walk(b)
if set(ta) != set(tb): problems.append(f"objects differ: {set(ta) ^ set(tb)}")
for name in sorted(set(ta) & set(tb)):
    x, y = ta[name], tb[name]
    if isinstance(x, h5py.Dataset):
        count += 1
        vx, vy = x[()], y[()]
        if name.startswith("videos/"):
            vx, vy = vx[order(a)], vy[order(b)]
        if not same(vx, vy): problems.append(f"dataset {name} differs")
    ax, ay = attrs(x), attrs(y)
    if set(ax) != set(ay): problems.append(f"{name} attribute names differ {set(ax) ^ set(ay)}")
    for k in set(ax) & set(ay):
        if not same(ax[k], ay[k]): problems.append(f"{name}.{k}: {ax[k]!r} != {ay[k]!r}")
ra, rb = attrs(a), attrs(b)
if set(ra) != set(rb): problems.append(f"root attribute names differ {set(ra) ^ set(rb)}")
for k in sorted(set(ra) & set(rb)):
    if not same(ra[k], rb[k]): problems.append(f"/.{k}: {ra[k]!r} != {rb[k]!r}")
print(f"{sys.argv[1]} vs {sys.argv[2]}: {count} datasets, {len(ra)} root attributes compared (skipped {sorted(SKIP & (set(a.attrs)|set(b.attrs)))})")
print("\n".join(problems) if problems else "IDENTICAL")
sys.exit(1 if problems else 0)
