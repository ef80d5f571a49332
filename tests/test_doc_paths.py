"""Every repository path the README, the docs, the code (its comments and docstrings included), the tests and the
benchmarks name exists, and every `cmdcl.x.y` module the docs name can be imported from this checkout: a file that
moves takes its mentions with it. User-facing text also names no tracker numbers, no internal history and no path
outside the repository."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "extract", "head", "pipelines", "tests", "scripts", "benchmarks", "docs")
PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(FOLDERS)})/[\w./-]*\w)")
# Any `a/b.ext` path, and any bare `name.md` / `name.py`: the first must resolve when it starts at a top-level
# entry of the repository (`.ci/run`, `scripts/demo.sh`) or names a .md/.py file; others are users' paths
# (`runs/mine/best.pt`, `feats/`). A bare name must be some file of the repository.
SLASHED = re.compile(r"(?<![\w./:<>$~*{-])((?:[\w.-]+/)+[\w-]*\.[A-Za-z]\w*)(?![\w/(])")
BARE = re.compile(r"(?<![\w./<>*{$-])([\w-]+\.(?:md|py))(?![\w/(])")
MODULE = re.compile(r"(?<![\w.])cmdcl((?:\.\w+)+)")
# Named as examples of what a user adds (docs/EXTRACT.md, docs/TRAINING.md), and where benchmarks write.
EXAMPLES = {"extract/datasets/mysegments.py", "head/model/gru.py", "cmdcl.extract.datasets.mysegments",
            "cmdcl.head.model.gru", "mysegments.py", "gru.py", "head/metrics/margin.py"}  # worked examples
WRITTEN = ("benchmarks/out",)  # git-ignored output of the benchmark scripts
# What user-facing text must not say (case-insensitive): tracker numbers, how the work was organised, baselines
# named by commit, paths of the machine the project is built on.
FORBIDDEN = re.compile(r"\bissues? +#?[0-9]|design card|the main job|method-audit|the audit\b|shared/design|/work/|"
                       r"\bcommit [0-9a-f]{7,}\b|\bmain at [0-9a-f]{7,}\b", re.I)


def documents() -> list[Path]:
    top = [ROOT / name for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md") if (ROOT / name).is_file()]
    return [*top, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def sources() -> list[Path]:
    return sorted(p for folder in FOLDERS if folder != "docs" for p in (ROOT / folder).rglob("*.py")
                  if ".venv" not in p.parts)


def checked_texts() -> list[Path]:
    """Everything the new checks read, less this file (it spells out what they look for)."""
    return [p for p in documents() + sources() + other_texts() if p != Path(__file__).resolve()]


def other_texts() -> list[Path]:
    """Scripts and settings users read: shell scripts, the SLURM recipe, CI, the pins, the project file."""
    found = [*(ROOT / "scripts").glob("*.sh"), *(ROOT / "benchmarks").glob("*.sh"), *(ROOT / "pipelines").glob("*.s*")]
    return sorted(found) + [ROOT / n for n in ("constraints.txt", "pyproject.toml", ".ci/run") if (ROOT / n).is_file()]


def _mentions(pattern: re.Pattern, files: list[Path]):
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in pattern.finditer(line):
                yield f"{path.relative_to(ROOT)}:{number}", match.group(1)


def _exists(path: str, where: Path = ROOT) -> bool:
    """The file or folder (from the root, or from the mentioning file's folder), or `module.name` for a name in
    module.py (`head/training/seeds.train_jobs`)."""
    return any((base / path).exists() or (base / re.sub(r"\.\w+$", ".py", path)).is_file() for base in (ROOT, where))


def _repository_names() -> set[str]:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split()
    return {Path(p).name for p in listed}


def test_every_named_path_exists():
    missing = [f"{where}: {path}" for where, path in _mentions(PATH, documents() + sources())
               if path not in EXAMPLES and not path.startswith(WRITTEN) and not _exists(path)]
    assert not missing, "\n".join(missing)


def _must_resolve(path: str) -> bool:
    # what a clean checkout holds: the demo's runs/ and data/ (git-ignored) are examples, whether or not they exist
    ignored = {line.strip("/") for line in (ROOT / ".gitignore").read_text().split() if "*" not in line}
    top = {p.name for p in ROOT.iterdir()} - {".git"} - ignored
    return path.split("/")[0] in top or path.endswith((".md", ".py"))


def test_every_path_like_mention_resolves():
    """`a/b.ext` paths into the repository (and every .md/.py path), and bare `X.md` / `x.py` names, in every
    text a user reads: docs, code, tests, benchmarks, scripts."""
    files = checked_texts()
    names = _repository_names()
    missing = [f"{where}: {path}" for where, path in _mentions(SLASHED, files)
               if _must_resolve(path) and path not in EXAMPLES and not path.startswith(WRITTEN)
               and not _exists(path, (ROOT / where.split(":")[0]).parent)]
    missing += [f"{where}: {name}" for where, name in _mentions(BARE, files) if name not in names | EXAMPLES]
    assert not missing, "\n".join(missing)


def test_no_tracker_numbers_or_internal_history_in_user_facing_text():
    found = [f"{where}: {text}" for where, text in _mentions(re.compile(f"({FORBIDDEN.pattern})", re.I),
                                                             checked_texts())]
    assert not found, "\n".join(found)


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
    gone = "docs/" "GONE.md"  # split, so that the first test does not read it in this file
    line = f"see scripts/demo.sh, {gone}, runs/mine/best.pt, https://x.org/a/b.html and METHOD.md or gone.py"
    assert [m.group(1) for m in SLASHED.finditer(line)] == ["scripts/demo.sh", gone, "runs/mine/best.pt"]
    assert [m.group(1) for m in BARE.finditer(line)] == ["METHOD.md", "gone.py"]
    assert _must_resolve(gone) and _must_resolve(".ci/run") and not _must_resolve("runs/mine/best.pt")
    assert "METHOD.md" in _repository_names() and "gone.py" not in _repository_names()
    for bad in ("see issue 28", "Issues 25 and 30", "the design card", "at commit 5af9501", "in /work/shared"):
        assert FORBIDDEN.search(bad), bad
    assert not FORBIDDEN.search("an issue with 3 videos") and not FORBIDDEN.search("tissue 3")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_to_a_section_finds_its_heading():
    """Links to a section of a document, or of the same one (`(#anchor)`), in the README and the docs land on a
    heading."""
    link = re.compile(r"\]\(([\w./-]*\.md)?#([\w-]+)\)")
    broken = []
    for path in documents():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for target, anchor in link.findall(line):
                doc = (path.parent / target).resolve() if target else path
                headings = re.findall(r"^#+ (.+)$", doc.read_text(encoding="utf-8"), re.M) if doc.is_file() else []
                if anchor not in {_anchor(h) for h in headings}:
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {target}#{anchor}")
    assert not broken, "\n".join(broken)
    assert _anchor("Comparing methods (`cmdcl compare`)") == "comparing-methods-cmdcl-compare"
