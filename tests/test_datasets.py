import json
import re
import tokenize
from pathlib import Path

import pytest

from cmdcl.core.errors import CmdclError, DatasetError
from cmdcl.extract.datasets import DATASETS, load_dataset
from dataset_fixtures import write_breakfast, write_charades, write_coin, write_manifest


def raises_one_line(error, match, call, *args, **kwargs) -> str:
    with pytest.raises(error, match=match) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def by_id(index):
    return {item.video_id: item for item in index.items}


# ---------------------------------------------------------------- registry

def test_unknown_dataset_lists_valid_names(tmp_path):
    message = raises_one_line(CmdclError, "unknown dataset 'kinetics'", load_dataset, "kinetics", tmp_path)
    assert all(name in message for name in DATASETS)


def test_missing_root_names_path_and_layout(tmp_path):
    message = raises_one_line(DatasetError, "does not exist", load_dataset, "coin", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in message and "COIN.json" in message


def test_split_selection_text_list_and_unknown(tmp_path):
    root = write_coin(tmp_path)
    assert load_dataset("coin", root, "test").split_sizes() == {"test": 2}
    assert load_dataset("coin", root, "train, test").split_sizes() == {"test": 2, "train": 3}
    assert load_dataset("coin", root, ["train"]).missing == ["vidC02"]
    assert load_dataset("coin", root, ["test"]).missing == []
    message = raises_one_line(DatasetError, "unknown split val", load_dataset, "coin", root, "train,val")
    assert "splits present: test, train" in message


def test_unknown_option_is_one_line_error(tmp_path):
    root = write_breakfast(tmp_path)
    raises_one_line(CmdclError, "no option stereo.*split, stereo_channel, annotations", load_dataset, "breakfast",
                    root, stereo="ch0")


def test_synthetic_generates_then_reads_manifest(tmp_path, monkeypatch):
    calls = []

    def ensure_synthetic(root, *, num_videos=4):
        calls.append((root, num_videos))
        return write_manifest(root / "world")

    from cmdcl.extract.datasets import synthetic

    monkeypatch.setattr(synthetic, "ensure_synthetic", ensure_synthetic)
    index = load_dataset("synthetic", tmp_path, "train", num_videos=7)
    assert calls == [(tmp_path, 7)]
    assert index.name == "synthetic" and [item.video_id for item in index.items] == ["v000", "v001"]
    raises_one_line(CmdclError, "no option seed", load_dataset, "synthetic", tmp_path, seed=1)


def test_relative_roots_give_absolute_paths(tmp_path, monkeypatch):
    write_manifest(tmp_path / "mine")
    write_coin(tmp_path / "coin")
    monkeypatch.chdir(tmp_path)
    for name, root in (("manifest", "mine"), ("coin", "coin")):
        index = load_dataset(name, root)
        assert all(Path(item.path).is_absolute() and Path(item.path).is_file() for item in index.items)
    assert load_dataset("manifest", "mine").unannotated == ["videos/extra.mp4"]


# ---------------------------------------------------------------- Breakfast

def test_breakfast_ltar_split_labels_and_segments(tmp_path):
    index = load_dataset("breakfast", write_breakfast(tmp_path))
    assert index.split_sizes() == {"test": 2, "train": 3}
    assert index.class_names == ["cereals", "coffee", "fried egg", "juice", "milk", "pancake", "salad", "sandwich",
                                 "scrambled egg", "tea"]
    assert len(index.step_names) == 13 and "background" not in index.step_names
    assert {"take bowl", "put egg to plate", "add salt and pepper", "put fruit to bowl"} <= set(index.step_names)
    assert index.missing == ["P47_cam01_P47_tea"]
    assert index.unannotated == ["P16_cam02_P16_milk"]
    items = by_id(index)
    assert sorted(items) == ["P03_cam01_P03_cereals", "P03_stereo01_P03_cereals_ch0", "P16_webcam01_P16_friedegg",
                             "P47_cam02_P47_tea", "P54_cam01_P54_salat"]
    cereals = items["P03_cam01_P03_cereals"]
    step = index.step_names.index
    assert (cereals.split, cereals.label, cereals.labels) == ("train", 0, [0])
    assert cereals.segments == [(step("take bowl"), 2.0, 10.0), (step("pour cereals"), 10.0, 20.0),
                                (step("pour milk"), 20.0, 28.0)]
    assert cereals.steps == sorted([step("take bowl"), step("pour cereals"), step("pour milk")])
    salad = items["P54_cam01_P54_salat"]
    assert (salad.split, index.class_names[salad.label]) == ("test", "salad")
    assert items["P03_stereo01_P03_cereals_ch0"].path.endswith("P03/stereo/P03_cereals_ch0.avi")
    assert Path(items["P16_webcam01_P16_friedegg"].path).is_absolute()


@pytest.mark.parametrize("split, sizes", [("s1", {"test": 2, "train": 3}), ("s2", {"test": 1, "train": 4}),
                                          ("s3", {"train": 5}), ("s4", {"test": 2, "train": 3})])
def test_breakfast_official_splits(tmp_path, split, sizes):
    assert load_dataset("breakfast", write_breakfast(tmp_path), split=split).split_sizes() == sizes


def test_breakfast_stereo_channels_and_video_folder_as_root(tmp_path):
    root = write_breakfast(tmp_path)
    both = load_dataset("breakfast", root, stereo_channel="both")
    assert len(both.items) == 6 and by_id(both)["P03_stereo01_P03_cereals_ch1"].path.endswith("_ch1.avi")
    ch1 = load_dataset("breakfast", root, stereo_channel="ch1")
    assert "P03_stereo01_P03_cereals_ch1" in by_id(ch1) and "P03_stereo01_P03_cereals_ch0" not in by_id(ch1)
    inner = load_dataset("breakfast", root / "BreakfastII_15fps_qvga_sync")
    assert [item.video_id for item in inner.items] == [item.video_id for item in load_dataset("breakfast", root).items]


def test_breakfast_ms_tcn_layout_matches_coarse(tmp_path):
    coarse = load_dataset("breakfast", write_breakfast(tmp_path / "a"))
    ms_tcn = load_dataset("breakfast", write_breakfast(tmp_path / "b", layout="ms-tcn"))
    assert ms_tcn.step_names == coarse.step_names
    assert [(i.video_id, i.split, i.label, i.steps, i.segments) for i in ms_tcn.items] == \
           [(i.video_id, i.split, i.label, i.steps, i.segments) for i in coarse.items]
    assert ms_tcn.missing == coarse.missing


def test_breakfast_bad_inputs(tmp_path):
    root = write_breakfast(tmp_path)
    raises_one_line(DatasetError, "split 'ltr' unknown", load_dataset, "breakfast", root, split="ltr")
    raises_one_line(DatasetError, "stereo_channel 'ch2'", load_dataset, "breakfast", root, stereo_channel="ch2")
    bad = root / "segmentation_coarse" / "tea" / "P47_cam02_P47_tea.txt"
    bad.write_text("1-100 take_cup\n101 add_teabag\n")
    raises_one_line(DatasetError, f"{bad}:2: expected 'start-end label'", load_dataset, "breakfast", root)
    bad.rename(bad.with_name("P47_cam02_P47_toast.txt"))
    raises_one_line(DatasetError, "P47_cam02_P47_toast' is not", load_dataset, "breakfast", root)
    empty = tmp_path / "empty"
    (empty / "BreakfastII_15fps_qvga_sync").mkdir(parents=True)
    raises_one_line(DatasetError, "annotations not found.*segmentation_coarse", load_dataset, "breakfast", empty)
    (tmp_path / "other").mkdir()
    raises_one_line(DatasetError, "breakfast videos not found", load_dataset, "breakfast", tmp_path / "other")


def test_breakfast_background_step_is_an_option(tmp_path):
    root = write_breakfast(tmp_path)
    dropped = load_dataset("breakfast", root)
    kept = load_dataset("breakfast", root, background=True)
    assert len(dropped.step_names) == 13 and len(kept.step_names) == 14
    assert kept.step_names[0] == "background" and kept.step_names[1:] == dropped.step_names
    cereals = by_id(kept)["P03_cam01_P03_cereals"]
    assert cereals.segments[0] == (0, 0.0, 2.0) and cereals.segments[-1] == (0, 28.0, 30.0)
    assert 0 in cereals.steps and len(cereals.segments) == 5
    assert "SIL kept as step 0" in kept.notes[0] and "SIL (background) dropped" in dropped.notes[0]
    ms_tcn = load_dataset("breakfast", write_breakfast(tmp_path / "b", layout="ms-tcn"), background=True)
    assert ms_tcn.step_names == kept.step_names and by_id(ms_tcn)["P03_cam01_P03_cereals"].segments == \
        cereals.segments


def test_breakfast_edited_mapping_is_refused(tmp_path):
    """A mapping.txt edited for seq2seq code (1-based, SOS/EOS added) would silently add two steps."""
    root = write_breakfast(tmp_path, layout="ms-tcn-edited")
    message = raises_one_line(DatasetError, "mapping.txt: line 15 'SOS', line 16 'EOS': not Breakfast action labels",
                              load_dataset, "breakfast", root)
    assert "--annotations FOLDER" in message
    # 1-based ids alone change nothing: labels are read by name.
    mapping = root / "mapping.txt"
    mapping.write_text("".join(line + "\n" for line in mapping.read_text().splitlines()[:-2]))
    assert len(load_dataset("breakfast", root).step_names) == 13


def test_breakfast_video_dir_option(tmp_path):
    root = write_breakfast(tmp_path / "annotations")
    (root / "BreakfastII_15fps_qvga_sync").rename(tmp_path / "videos")
    index = load_dataset("breakfast", root, video_dir=tmp_path / "videos")
    assert len(index.items) == 5 and all(item.path.startswith(str(tmp_path / "videos")) for item in index.items)
    raises_one_line(DatasetError, "breakfast videos not found.*--video-dir", load_dataset, "breakfast", root)


def test_breakfast_ms_tcn_unknown_label(tmp_path):
    root = write_breakfast(tmp_path, layout="ms-tcn")
    with open(root / "groundTruth" / "P47_cam02_P47_tea.txt", "a") as f:
        f.write("drink_tea\n")
    raises_one_line(DatasetError, "label drink_tea not in .*mapping.txt", load_dataset, "breakfast", root)


# ---------------------------------------------------------------- Charades

def test_charades_multilabel_segments_and_clipping(tmp_path):
    index = load_dataset("charades", write_charades(tmp_path))
    assert index.multilabel and index.split_sizes() == {"test": 2, "train": 3}
    assert index.class_names[0] == "holding some clothes" and index.step_names == index.class_names
    assert index.missing == ["ZZMIS"] and index.unannotated == ["EXTRA"]
    items = by_id(index)
    first = items["46GP8"]
    assert (first.label, first.labels, first.steps) == (-1, [0, 2, 4], [0, 2, 4])
    assert first.segments == [(2, 12.6, 18.4), (0, 0.0, 24.83), (4, 11.9, 21.2)]  # c000 end clipped to length
    assert items["N11GT"].labels == [] and items["N11GT"].segments == []
    assert items["5UA8E"].segments == [(4, 2.0, 30.04)] and items["5UA8E"].split == "test"
    assert items["YSKX3"].labels == [1, 5]


def test_charades_as_commonly_unpacked(tmp_path):
    """CSVs in Charades/ beside Charades_v1_480/: the folder holding both and Charades/ itself are both roots."""
    flat = load_dataset("charades", write_charades(tmp_path / "flat"))
    parent = write_charades(tmp_path / "nested", subfolder=True)
    assert not (parent / "Charades_v1_train.csv").exists() and (parent / "Charades" / "Charades_v1_train.csv").exists()
    for root in (parent, parent / "Charades", parent / "Charades_v1_480"):
        index = load_dataset("charades", root)
        assert [(i.video_id, i.labels, i.segments) for i in index.items] == \
               [(i.video_id, i.labels, i.segments) for i in flat.items]
        assert index.missing == ["ZZMIS"] and index.unannotated == ["EXTRA"]
        assert f"annotations from {parent / 'Charades'} (Charades_v1_classes.txt" in index.notes[0]
        assert f"videos from {parent / 'Charades_v1_480'}" in index.notes[0]
    moved = tmp_path / "elsewhere"
    (parent / "Charades_v1_480").rename(moved)
    index = load_dataset("charades", parent, video_dir=moved)
    assert len(index.items) == 5 and all(item.path.startswith(str(moved)) for item in index.items)
    raises_one_line(DatasetError, "Charades videos not found.*Fix: pass the video folder as --video-dir",
                    load_dataset, "charades", parent)
    raises_one_line(DatasetError, "Charades_v1_classes.txt not found in .*Fix: pass .* --annotations FOLDER",
                    load_dataset, "charades", moved)


def test_charades_bad_inputs(tmp_path):
    root = write_charades(tmp_path)
    train = root / "Charades_v1_train.csv"
    text = train.read_text()
    train.write_text(text.replace("c003 3.00 7.10", "c003 3.00"))
    raises_one_line(DatasetError, r"Charades_v1_train.csv:\d+: action 'c003 3.00'", load_dataset, "charades", root)
    train.write_text(text.replace("c003 3.00 7.10", "c999 3.00 7.10"))
    raises_one_line(DatasetError, "action class c999 not in Charades_v1_classes.txt", load_dataset, "charades", root)
    train.write_text(text.replace("actions", "acts", 1))
    raises_one_line(DatasetError, "Charades_v1_train.csv:1: missing column actions", load_dataset, "charades", root)
    train.write_text(text)
    (root / "Charades_v1_test.csv").unlink()
    raises_one_line(DatasetError, "Charades_v1_test.csv not found", load_dataset, "charades", root)
    (root / "Charades_v1_classes.txt").unlink()
    raises_one_line(DatasetError, "Charades_v1_classes.txt not found", load_dataset, "charades", root)


# ---------------------------------------------------------------- manifest

def test_manifest_csv_and_jsonl_agree(tmp_path):
    from_csv = load_dataset("manifest", write_manifest(tmp_path / "csv"))
    from_jsonl = load_dataset("manifest", write_manifest(tmp_path / "jsonl", fmt="jsonl"))
    for index, root in ((from_csv, tmp_path / "csv"), (from_jsonl, tmp_path / "jsonl")):
        for item in index.items:
            item.path = str(Path(item.path).relative_to(root))
    assert from_csv.items == from_jsonl.items
    assert from_csv.missing == from_jsonl.missing == ["v004"]
    assert from_csv.unannotated == from_jsonl.unannotated == ["videos/extra.mp4"]


def test_manifest_values(tmp_path):
    root = write_manifest(tmp_path)
    index = load_dataset("manifest", root / "manifest.csv")  # the file itself is a valid root
    assert index.split_sizes() == {"test": 1, "test_ood": 1, "train": 2} and not index.multilabel
    assert index.step_names == ["crack egg", "stir pot", "pour water", "flip pancake"]
    items = by_id(index)
    assert (items["v000"].label, items["v000"].labels, items["v000"].steps) == (0, [0], [0, 3])
    assert items["v000"].segments == [(0, 0.0, 3.5), (3, 3.5, 9.25)]
    assert (items["v001"].label, items["v001"].steps, items["v001"].segments) == (1, [0, 1], [])
    assert items["v002"].path == str(root.absolute() / "videos" / "v002.mp4") and items["v002"].label == 2
    assert items["v003"].split == "test_ood" and items["v003"].steps == []


def test_manifest_multilabel_and_derived_steps(tmp_path):
    (tmp_path / "classes.txt").write_text("walk\nrun\njump\n")
    (tmp_path / "manifest.csv").write_text("video_id,path,split,labels,steps\n"
                                           "a,a.mp4,train,run;walk,wave@1-2\nb,b.mp4,test,,\n")
    (tmp_path / "a.mp4").touch()
    (tmp_path / "b.mp4").touch()
    index = load_dataset("manifest", tmp_path)
    assert index.multilabel and index.step_names == ["wave"]
    a, b = index.items
    assert (a.label, a.labels, a.segments) == (-1, [0, 1], [(0, 1.0, 2.0)])
    assert (b.label, b.labels) == (-1, [])


@pytest.mark.parametrize("body, match", [
    ("video_id,path,label\n", "manifest.csv:1: missing column split"),
    ("video_id,path,split,label\na,a.mp4,train,cook\n", "manifest.csv:2: unknown class 'cook'.*/classes.txt"),
    ("video_id,path,split,label\na,a.mp4,train,7\n", "manifest.csv:2: unknown class 7.*index 0..2"),
    ("video_id,path,split,label,steps\na,a.mp4,train,0,crack egg@1-2;dance@0-1\n", "manifest.csv:2: unknown step"),
    ("video_id,path,split,label,steps\na,a.mp4,train,0,crack egg@1\n", "manifest.csv:2: step entry 'crack egg@1'"),
    ("video_id,path,split,label,steps\na,a.mp4,train,0,crack egg@5-2\n", "manifest.csv:2: step 'crack egg' has times"),
    ("video_id,path,split,label\na,a.mp4,train,0\nb,b.mp4,train,1\na,c.mp4,test,2\n",
     "manifest.csv:4: duplicate video_id 'a' .first on line 2"),
    ("video_id,path,split,label\na,,train,0\n", "manifest.csv:2: empty path"),
])
def test_manifest_bad_csv(tmp_path, body, match):
    write_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text(body)
    raises_one_line(DatasetError, match, load_dataset, "manifest", tmp_path)


def test_manifest_bad_files(tmp_path):
    raises_one_line(DatasetError, "no manifest.csv or manifest.jsonl", load_dataset, "manifest", tmp_path)
    root = write_manifest(tmp_path, fmt="jsonl")
    vocabulary = tmp_path / "elsewhere.txt"
    vocabulary.write_text("brew tea\nfry egg\nmake pancake\n")
    (root / "classes.txt").write_text("a\n\nb\n")
    raises_one_line(DatasetError, "classes.txt:2: blank line", load_dataset, "manifest", root)
    assert load_dataset("manifest", root, classes=vocabulary).class_names[0] == "brew tea"
    (root / "classes.txt").unlink()
    raises_one_line(DatasetError, "vocabulary file .*classes.txt not found", load_dataset, "manifest", root)
    (root / "manifest.csv").write_text("video_id,path,split,label\n")
    raises_one_line(DatasetError, "both manifest.csv and manifest.jsonl", load_dataset, "manifest", root)
    with open(root / "manifest.jsonl", "a") as f:
        f.write('{"video_id": "v9", "path": "x.mp4"\n')
    raises_one_line(DatasetError, "manifest.jsonl:6: not valid JSON", load_dataset, "manifest",
                    root / "manifest.jsonl", classes=vocabulary)


def test_manifest_relative_root_lists_nothing_unannotated(tmp_path, monkeypatch):
    write_manifest(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    index = load_dataset("manifest", "m")
    absolute_index = load_dataset("manifest", tmp_path / "m")
    assert index.unannotated == absolute_index.unannotated
    assert [i.path for i in index.items] == [i.path for i in absolute_index.items]


# ---------------------------------------------------------------- flags named by errors and docs

def extract_flags() -> set[str]:
    import typer.main

    from cmdcl.pipelines.cli import _register, app

    _register()
    command = typer.main.get_command(app).commands["extract"]
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def test_every_flag_the_adapters_mention_exists():
    """Every `--flag` in a string of the dataset adapters (fix= hints, messages, docstrings) is a real option of
    `cmdcl extract`, or of `cmdcl` itself."""
    flags = extract_flags() | {"--help", "--debug"}
    folder = Path(load_dataset.__code__.co_filename).parent
    mentioned = {}
    for source in sorted(folder.glob("*.py")):
        with open(source, "rb") as f:
            for token in tokenize.tokenize(f.readline):
                if token.type == tokenize.STRING:
                    for flag in FLAG.findall(token.string):
                        mentioned.setdefault(flag, f"{source.name}:{token.start[0]}")
    assert {"--annotations", "--split-scheme", "--video-dir", "--stereo-channel", "--background"} <= set(mentioned)
    unknown = {flag: where for flag, where in mentioned.items() if flag not in flags}
    assert not unknown, unknown


def error_calls(tmp_path: Path) -> list[tuple[str, Path, dict]]:
    """Calls of `load_dataset` that must fail with a Fix: hint, for every entry of the dataset table: a missing
    and an empty ROOT (unless the adapter creates it), an unknown split, and each of its options given a path
    that does not exist (FILE, FOLDER) or a value that is not one of its choices; then the quirks of the
    published layouts, adapter by adapter."""
    from cmdcl.extract.datasets.registry import options_of
    from test_dataset_contract import written

    calls = []
    for name, entry in DATASETS.items():
        root, options = written(name, tmp_path / name)
        if not entry.creates_root:
            (tmp_path / f"{name}-empty").mkdir()
            calls += [(name, tmp_path / f"{name}-absent", {}), (name, tmp_path / f"{name}-empty", {})]
        calls.append((name, root, {**options, "splits": "nosuch"}))
        for option in options_of(name):
            if option.metavar in ("FILE", "FOLDER"):
                calls.append((name, root, {**options, option.keyword: tmp_path / "none" / "x.txt"}))
            elif "|" in option.metavar:
                calls.append((name, root, {**options, option.keyword: "bogus"}))
    calls += [("breakfast", write_breakfast(tmp_path / "e", layout="ms-tcn-edited"), {}),
              ("breakfast", tmp_path / "breakfast", {"splits": "s2"}), ("charades", tmp_path / "coin", {})]
    return calls


def dataset_errors(tmp_path: Path) -> list[str]:
    """Trigger the dataset errors that carry a Fix: hint (`error_calls`), and return their lines."""
    lines = []
    for name, root, options in error_calls(tmp_path):
        with pytest.raises(CmdclError) as info:
            load_dataset(name, root, **options)
        lines.append(f"{name}: {info.value.one_line()}")
    return lines


def test_every_fix_hint_of_the_dataset_errors_names_a_real_flag(tmp_path):
    flags = extract_flags()
    lines = dataset_errors(tmp_path)
    assert {line.split(":")[0] for line in lines} == set(DATASETS)  # every entry of the table is tried
    assert all("Fix:" in line for line in lines), [line for line in lines if "Fix:" not in line]
    for line in lines:
        hint = line.split("Fix:", 1)[1]
        assert "=" not in hint.split("(")[0], line  # a flag, not a Python keyword argument
        for flag in FLAG.findall(hint):
            assert flag in flags, line


# ---------------------------------------------------------------- end to end through the CLI

def test_extract_cli_writes_every_missing_video_and_reads_charades_as_unpacked(tmp_path, capsys):
    """`cmdcl extract` on Charades unpacked with its CSVs in Charades/: missing.txt beside the shards and the
    summary JSON list every missing video, not only the first ten the log shows."""
    from cmdcl.pipelines.cli import main as cli_main
    from video_fixtures import write_test_video

    def tiny(path: Path) -> None:
        write_test_video(path, num_frames=6, height=32, width=32, fps=15.0, codec="libx264", gop=3)

    root = write_charades(tmp_path / "charades", subfolder=True, write_video=tiny)
    train = root / "Charades" / "Charades_v1_train.csv"
    extra = [f"ZZGONE{i:02d}" for i in range(12)]  # more than the log lists
    with open(train, "a", newline="") as f:
        f.write("".join(f"{video_id},HR43,Kitchen,6,7,Yes,s,o,d,c001 1.00 2.00,10.00\n" for video_id in extra))
    out, summary_json = tmp_path / "feats", tmp_path / "summary.json"
    cli_main(["extract", "--dataset", "charades", "--root", str(root / "Charades"), "--out", str(out),
              "--model", "cmdcl-tiny",
              "--pretrained", "random", "--patch-grid", "0", "--frames", "2", "--workers", "0", "--device", "cpu",
              "--precision", "fp32",
              "--no-progress", "--summary-json", str(summary_json)])
    expected = sorted(extra + ["ZZMIS"])
    assert (out / "missing.txt").read_text().splitlines() == expected
    summary = json.loads(summary_json.read_text())
    assert summary["missing"] == 13 and summary["missing_ids"] == expected and summary["extracted"] == 5
    err = capsys.readouterr().err
    assert f"annotations from {root / 'Charades'}" in err and f"listed in {out / 'missing.txt'}" in err


def test_a_split_scheme_given_as_a_split_names_the_flag(tmp_path):
    message = raises_one_line(DatasetError, "unknown split s1; splits present: test, train", load_dataset,
                              "breakfast", write_breakfast(tmp_path), "s1")
    assert message.endswith("Fix: pass --split-scheme s1 and --splits train,test")
