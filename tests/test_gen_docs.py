"""The docs' lists of datasets, methods and commands are generated from their tables (pipelines/gen_docs.py): the
files in the repository are current, a new table entry shows up, and the README's short table names every command."""
from __future__ import annotations

import json
import re

import pytest

from cmdcl.core.errors import CmdclError
from cmdcl.pipelines import gen_docs
from test_extension_points import run

REFRESH = "python -m cmdcl.pipelines.gen_docs"


def test_readme_and_docs_are_current():
    stale = gen_docs.stale_files()
    assert not stale, f"{', '.join(stale)} out of date with the tables: run `{REFRESH}` and commit the result"


def test_throwaway_entries_show_in_the_generated_docs():
    probe = ("import json, sys, throwaway_entries; from cmdcl.pipelines import gen_docs; "
             "texts = {n: gen_docs.regenerate((gen_docs.ROOT / n).read_text(), n, r) for n, r in gen_docs.FILES.items()}; "
             "print(json.dumps({'texts': texts, 'torch': 'torch' in sys.modules}))")
    result = run("-c", probe)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.splitlines()[-1])
    readme, extract, training = (out["texts"][n] for n in ("docs/COMMANDS.md", "docs/EXTRACT.md", "docs/TRAINING.md"))
    assert not out["torch"]  # the generator reads the tables and the CLI as `cmdcl --help` does
    assert ", `throwaway`<!-- end generated: dataset-names -->" in readme  # registered last, listed last
    assert "`throwaway` (ROOT holds throwaway manifest.csv and videos/)<!-- end" in readme  # no `about`: its layout
    assert "\\|throwaway]`<!-- end generated: method-option -->" in readme
    assert ", `throwaway`<!-- end generated: dataset-names -->" in extract
    assert "| `throwaway` | throwaway manifest.csv and videos/ | `--classes` (`classes=`): the throwaway class list |" \
        in extract
    assert "`throwaway` (a throwaway GRU baseline)<!-- end generated: methods -->" in training
    assert "| `throwaway` | a throwaway GRU baseline | `dropout`, `init_temperature` | 1 |" in training
    assert "| `throwaway_margin` | the gap between the top two class logits | higher | `throwaway_margin` | " \
        "`margin` (OOD) |" in training  # the metric table's row
    assert "throwaway" not in (gen_docs.ROOT / "docs" / "COMMANDS.md").read_text()  # generated in memory only


def test_the_readme_table_names_every_command():
    """README's short table is written by hand (two commands a row); it names every command of the app."""
    readme = (gen_docs.ROOT / "README.md").read_text()
    table = readme[readme.index("## Commands"):readme.index("## Hardware")]
    listed = re.findall(r"\| `cmdcl ([\w-]+)` \|", table)
    assert sorted(listed) == sorted(gen_docs.command_names()), "README.md's command table: add or drop a row"


def test_command_rows_follow_the_app():
    current = ("\n| command | what it does |\n|---|---|\n| `cmdcl frobnicate X` | gone |\n"
               "| `cmdcl verify PATH...` | kept as written |\n")
    table = gen_docs.commands(current)
    names = gen_docs.command_names()
    assert "frobnicate" not in table and "| `cmdcl verify PATH...` | kept as written |" in table
    assert len(names) >= 12 and {"extract", "train-head", "demo"} <= set(names)
    for name in names:  # every command has a row; the missing ones say what their --help says
        assert f"| `cmdcl {name}" in table
    assert "| `cmdcl merge` | Merge compatible shards into one contiguous (memory-mappable) feature file. |" in table
    assert table.index("cmdcl verify PATH") < table.index("cmdcl extract")  # present rows keep their place


def test_an_unknown_or_lost_section_is_an_error():
    with pytest.raises(CmdclError, match="README.md: unknown generated section 'datasetz'"):
        gen_docs.regenerate("<!-- generated: datasetz -->x<!-- end generated: datasetz -->", "README.md")
    with pytest.raises(CmdclError, match="no section '<!-- generated: methods -->'"):
        gen_docs.regenerate("no markers here", "docs/TRAINING.md", ("methods",))


def test_check_exits_1_on_a_stale_file(tmp_path, capsys):
    for name in gen_docs.FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((gen_docs.ROOT / name).read_text())
    reference = tmp_path / "docs" / "COMMANDS.md"
    reference.write_text(reference.read_text().replace("`breakfast`, `coin`", "`coin`", 1))
    assert gen_docs.main(["--check", "--root", str(tmp_path)]) == 1
    assert "stale: docs/COMMANDS.md" in capsys.readouterr().out
    assert gen_docs.main(["--root", str(tmp_path)]) == 0
    assert gen_docs.main(["--check", "--root", str(tmp_path)]) == 0
    assert reference.read_text() == (gen_docs.ROOT / "docs" / "COMMANDS.md").read_text()
