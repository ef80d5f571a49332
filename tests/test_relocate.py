"""Runs that move: predict, evaluate and report from another working directory and on a copied run folder,
the weights found beside the run and checked against the recorded SHA-256 (core/relocate.py)."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from cmdcl.core.errors import WeightsError
from cmdcl.core.relocate import candidates, file_sha256, find_file, find_weights
from cmdcl.pipelines.cli import main


def test_candidates_try_the_record_then_each_anchor_and_parent_by_trailing_parts(tmp_path):
    anchor = tmp_path / "copy" / "demo" / "cmdcl"
    found = [str(p.relative_to(tmp_path)) for p in candidates("runs/demo/pretrain/w.pt", [anchor])
             if str(p).startswith(str(tmp_path))]
    assert found[0] == "copy/demo/cmdcl/runs/demo/pretrain/w.pt"  # the whole record first
    assert "copy/demo/pretrain/w.pt" in found and found.index("copy/demo/pretrain/w.pt") < found.index("copy/w.pt")
    assert len(found) == len(set(found))
    assert all(len(Path(p).parts) >= 3 for p in candidates("a/b/c.h5", [anchor], min_parts=2) if "c.h5" in str(p)
               and str(p).startswith(str(anchor)))
    weights = tmp_path / "copy" / "demo" / "pretrain" / "w.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    (tmp_path / "copy" / "w.pt").write_bytes(b"other weights")
    sha = file_sha256(weights)
    assert find_file("runs/demo/pretrain/w.pt", [anchor], sha) == weights
    assert find_file("/gone/w.pt", [anchor], file_sha256(tmp_path / "copy" / "w.pt")) == tmp_path / "copy" / "w.pt"
    assert find_file("runs/demo/pretrain/w.pt", [anchor], "0" * 64) is None


def test_find_weights_checks_the_given_file_and_leaves_tags_alone(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"weights")
    (tmp_path / "x.pt").write_bytes(b"other")
    prov = {"pretrained": "runs/demo/w.pt", "weights_sha256": file_sha256(tmp_path / "w.pt")}
    with pytest.raises(WeightsError, match="ckpt: --pretrained .*x.pt is not the encoder"):
        find_weights(prov, [tmp_path], str(tmp_path / "x.pt"), "ckpt")
    assert find_weights(prov, [tmp_path], str(tmp_path / "w.pt"), "ckpt") == str(tmp_path / "w.pt")
    assert find_weights(prov, [tmp_path / "run"], None, "ckpt") == str(tmp_path / "w.pt")
    assert find_weights({"pretrained": "openai"}, [tmp_path], None, "ckpt") is None
    assert find_weights({"pretrained": "random:seed=3"}, [tmp_path], None, "ckpt") is None
    with pytest.raises(WeightsError, match=r"weights runs/demo/w.pt \(sha256 \w{12}\.\.\.\) are neither there.*"
                                           r"Fix: pass --pretrained PATH"):
        find_weights({**prov, "weights_sha256": "f" * 64}, [tmp_path], None, "ckpt")


def _make_run(work: Path) -> Path:
    """The demo's layout, made from `work` as the working directory with relative paths throughout."""
    from cmdcl.extract.models import load_encoder
    from video_fixtures import write_test_video

    demo = Path("runs/demo")
    (demo / "pretrain").mkdir(parents=True)
    torch.save(load_encoder("cmdcl-tiny", "random", device="cpu", precision="fp32", seed=7).model.state_dict(),
               demo / "pretrain" / "weights.pt")
    videos = Path("videos")
    videos.mkdir()
    (videos / "classes.txt").write_text("pour\nstir\n")
    rows = []
    for i in range(6):
        write_test_video(videos / f"v{i}.mp4", num_frames=12 + 4 * i, height=32, width=48, pattern="index", seed=i)
        rows.append({"video_id": f"v{i}", "path": f"v{i}.mp4", "split": "train" if i < 4 else "test",
                     "label": i % 2, "steps": []})
    (videos / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["extract", "--dataset", "manifest", "--root", "videos", "--out", "runs/demo/features", "--model",
          "cmdcl-tiny",
          "--patch-grid", "0", "--pretrained", "runs/demo/pretrain/weights.pt", "--frames", "6", "--workers", "0",
          "--device", "cpu", "--precision", "fp32", "--no-progress"])
    main(["train-head", "--features", "runs/demo/features", "--out", "runs/demo/linear", "--method", "linear",
          "--epochs", "1", "--val-fraction", "0", "--device", "cpu", "--no-progress", "--no-evaluate"])
    return work / demo


@pytest.mark.slow
def test_a_copied_run_predicts_evaluates_and_reports_from_another_directory(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    demo = _make_run(work)
    recorded = json.loads((demo / "linear" / "provenance.json").read_text())
    assert recorded["pretrained"] == "runs/demo/pretrain/weights.pt"  # relative to `work`, as the demo records it
    # The run folder is copied to another machine and the original is gone; commands run from elsewhere.
    copy = tmp_path / "elsewhere" / "demo-copy"
    shutil.copytree(demo, copy)
    videos = shutil.copytree(work / "videos", tmp_path / "clips")
    shutil.rmtree(work)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    capsys.readouterr()
    main(["predict", str(videos / "v5.mp4"), "--checkpoint", str(copy / "linear" / "best.pt"), "--device", "cpu",
          "--json", "pred.json"])
    assert json.loads(Path("pred.json").read_text())[0]["top"][0]["class"] in ("pour", "stir")
    main(["evaluate", "--checkpoint", str(copy / "linear" / "best.pt"), "--features", str(copy / "features"),
          "--device", "cpu"])
    assert (copy / "linear" / "metrics_test.json").is_file()
    main(["report", str(copy / "linear"), "--device", "cpu"])  # features found from config.json's record
    assert (copy / "linear" / "report" / "report.html").is_file()

    # Without the weights: one line, before the heavy part, naming how to point at them.
    weights = shutil.move(copy / "pretrain" / "weights.pt", tmp_path / "kept.pt")
    monkeypatch.setattr("cmdcl.pipelines.cmd_head.predict_videos", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(SystemExit):
        main(["predict", str(videos / "v5.mp4"), "--checkpoint", str(copy / "linear" / "best.pt")])
    error = capsys.readouterr().err.strip()
    assert "runs/demo/pretrain/weights.pt" in error and "pass --pretrained PATH" in error and "\n" not in error
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path / "cwd")
    main(["predict", str(videos / "v5.mp4"), "--checkpoint", str(copy / "linear" / "best.pt"), "--device", "cpu",
          "--pretrained", str(weights)])
    assert "v5.mp4: 1." in capsys.readouterr().out
