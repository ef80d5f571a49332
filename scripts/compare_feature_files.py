"""Compare two cmdcl feature files: every dataset (dtype, shape, chunking, values, float bit patterns) and attribute.

Ignored: attributes `created`, `code_version`, `merged_from` (paths differ), and groups named with --ignore-group.
Usage: python scripts/compare_feature_files.py A.h5 B.h5 [--ignore-group=segments]  (to check that a refactor
leaves a fixed-seed extraction byte-identical).
Rows of /videos are compared video by video (matched by id): with several decode workers videos are stored
in the order they finish. Exit 1 and list differences when any.
"""
import sys

import h5py
import numpy as np

IGNORED_ATTRS = {"created", "code_version", "merged_from"}


def items(f, ignore_groups):
    out = {}
    def visit(name, obj):
        if name.split("/")[0] in ignore_groups:
            return
        out[name] = obj
    f.visititems(visit)
    return out


def video_order(f):
    """Row order that sorts /videos by id (stable), so that files written in different orders compare equal."""
    if "videos/video_id" not in f:
        return None
    return np.argsort(np.asarray(f["videos/video_id"][()]).astype(str), kind="stable")


def values(f, name, dataset, order):
    data = dataset[()]
    if order is not None and name.startswith("videos/") and data.ndim and len(data) == len(order):
        data = data[order]
    return data


def compare(a_path, b_path, ignore_groups=()):
    diffs = []
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        for key in sorted(set(a.attrs) | set(b.attrs)):
            if key in IGNORED_ATTRS:
                continue
            va, vb = a.attrs.get(key, "<missing>"), b.attrs.get(key, "<missing>")
            if not np.array_equal(np.asarray(va), np.asarray(vb)):
                diffs.append(f"attr {key}: {va!r} vs {vb!r}")
        ia, ib = items(a, ignore_groups), items(b, ignore_groups)
        for name in sorted(set(ia) ^ set(ib)):
            diffs.append(f"only in {'first' if name in ia else 'second'}: {name}")
        checked = 0
        order_a, order_b = video_order(a), video_order(b)
        for name in sorted(set(ia) & set(ib)):
            x, y = ia[name], ib[name]
            if isinstance(x, h5py.Group) != isinstance(y, h5py.Group):
                diffs.append(f"{name}: group vs dataset")
                continue
            if isinstance(x, h5py.Group):
                continue
            if (x.dtype, x.shape, x.chunks, x.compression) != (y.dtype, y.shape, y.chunks, y.compression):
                diffs.append(f"{name}: {(x.dtype, x.shape, x.chunks, x.compression)} vs {(y.dtype, y.shape, y.chunks, y.compression)}")
                continue
            va, vb = values(a, name, x, order_a), values(b, name, y, order_b)
            same = np.array_equal(va, vb) if va.dtype.kind != "f" else (va.tobytes() == vb.tobytes())
            if not same:
                diffs.append(f"{name}: values differ")
            checked += 1
    return diffs, checked


if __name__ == "__main__":
    args = sys.argv[1:]
    ignore = [x.split("=", 1)[1] for x in args if x.startswith("--ignore-group=")]
    a, b = [x for x in args if not x.startswith("--")]
    diffs, checked = compare(a, b, ignore)
    for d in diffs:
        print(d)
    print(f"{a} vs {b}: {checked} datasets compared, {len(diffs)} difference(s)")
    sys.exit(1 if diffs else 0)
