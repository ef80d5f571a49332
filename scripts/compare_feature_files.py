"""Compare two cmdcl feature files: every dataset (dtype, shape, chunking, values, float bit patterns) and attribute.

Ignored: attributes `created`, `code_version`, `merged_from` (paths differ), and groups named with --ignore-group.
Usage: python scripts/compare_feature_files.py A.h5 B.h5 [--ignore-group=segments]  (to check that a refactor
leaves a fixed-seed extraction byte-identical).
Rows of /videos, /failures and /notes, and each video's rows of /segments, are compared video by video (matched
by id): with several decode workers videos are stored in the order they finish. Exit 1 and list differences when
any.
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


def row_orders(f):
    """Per group whose rows belong to videos (/videos, /failures, /notes): the row order that sorts them by video
    id (stable, so a video's own rows keep their order), so that files written in different orders compare equal."""
    return {group: np.argsort(np.asarray(f[f"{group}/video_id"][()]).astype(str), kind="stable")
            for group in ("videos", "failures", "notes") if f"{group}/video_id" in f}


def segments_by_video(f, name, order):
    """/segments/offsets or /segments/table with each video's rows in `order` (the /videos order sorted by id)."""
    offsets = f["segments/offsets"][()]
    if name == "segments/offsets":
        return np.concatenate([[0], np.cumsum(np.diff(offsets)[order])]).astype(offsets.dtype)
    table = f["segments/table"][()]
    return np.concatenate([table[offsets[i]:offsets[i + 1]] for i in order] or [table[:0]])


def values(f, name, dataset, orders):
    group = name.split("/")[0]
    if group == "segments" and "videos" in orders and name in ("segments/offsets", "segments/table"):
        return segments_by_video(f, name, orders["videos"])
    data = dataset[()]
    order = orders.get(group)
    if order is not None and data.ndim and len(data) == len(order):
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
        order_a, order_b = row_orders(a), row_orders(b)
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
