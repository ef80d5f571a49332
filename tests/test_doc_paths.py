"""Every repository path the README, the docs and the code's own comments name exists, and every `cmdcl.x.y`
module the docs name can be imported from this checkout: a file that moves takes its mentions with it."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "extract", "head", "pipelines", "tests", "scripts", "benchmarks", "docs")
PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(FOLDERS)})/[\w./-]*\w)")
MODULE = re.compile(r"(?<![\w.])cmdcl((?:\.\w+)+)")
# Named as examples of what a user adds (docs/EXTRACT.md, docs/TRAINING.md), and where benchmarks write.
EXAMPLES = {"extract/datasets/mysegments.py", "head/model/gru.py", "cmdcl.extract.datasets.mysegments",
            "cmdcl.head.model.gru"}
WRITTEN = ("benchmarks/out",)  # git-ignored output of the benchmark scripts


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def sources() -> list[Path]:
    return sorted(p for folder in FOLDERS if folder != "docs" for p in (ROOT / folder).rglob("*.py")
                  if ".venv" not in p.parts)


def _mentions(pattern: re.Pattern, files: list[Path]):
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in pattern.finditer(line):
                yield f"{path.relative_to(ROOT)}:{number}", match.group(1)


def _exists(path: str) -> bool:
    """The file or folder, or `module.name` for a name in module.py (`head/training/seeds.train_jobs`)."""
    return (ROOT / path).exists() or (ROOT / re.sub(r"\.\w+$", ".py", path)).is_file()


def test_every_named_path_exists():
    missing = [f"{where}: {path}" for where, path in _mentions(PATH, documents() + sources())
               if path not in EXAMPLES and not path.startswith(WRITTEN) and not _exists(path)]
    assert not missing, "\n".join(missing)


def _is_module(parts: list[str]) -> bool:
    base = ROOT.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base.is_dir() and any(base.iterdir()))


def test_every_module_the_docs_name_exists():
    """`cmdcl.a.b` is the folder or module a/b (pyproject maps the folders onto cmdcl.*), or an attribute of the
    module a (`cmdcl.extract.decoders.DEFAULT_BY_CONTAINER`)."""
    missing = []
    for where, dotted in _mentions(MODULE, documents()):
        parts = dotted.strip(".").split(".")
        if f"cmdcl.{'.'.join(parts)}" in EXAMPLES:
            continue
        if not (_is_module(parts) or (len(parts) > 1 and _is_module(parts[:-1]))):
            missing.append(f"{where}: cmdcl.{'.'.join(parts)}")
    assert not missing, "\n".join(missing)


def test_the_checks_see_what_they_look_for():
    assert ("README.md", "docs/FORMAT.md") in {(w.split(":")[0], p) for w, p in _mentions(PATH, documents())}
    assert not _is_module(["head", "gru"]) and _is_module(["head", "model", "factory"])
    assert _exists("head/training/seeds.train_jobs") and not _exists("head/" + "seeds.train_jobs")
