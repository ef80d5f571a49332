"""COIN: the published ids (tasks 0..179, steps 1..778) as indices, the taxonomy as published (.xlsx) or as CSV,
unique step texts, and partial annotation files that never shift a label."""
import json
import sys

import pytest

from cmdcl.core.errors import DatasetError
from cmdcl.extract.datasets import load_dataset
from dataset_fixtures import write_coin, write_coin_taxonomy
from test_datasets import by_id, raises_one_line


def test_coin_tasks_steps_and_files(tmp_path):
    index = load_dataset("coin", write_coin(tmp_path))
    assert index.split_sizes() == {"test": 2, "train": 3}
    # COIN's published ids, in order: tasks 0..179 at 0..179, steps 1..778 at 0..777, however few COIN.json uses.
    assert len(index.class_names) == 180 and len(index.step_names) == 778
    assert index.class_ids == list(range(180)) and index.step_ids == list(range(1, 779))
    assert [index.class_names[i] for i in (5, 12, 103)] == ["make coffee", "assemble bed", "change guitar strings"]
    assert [index.step_names[i - 1] for i in (10, 11, 45, 46, 300)] == [
        "grind the coffee beans", "pour water", "put the bed frame together", "install the bed board",
        "remove the old strings"]
    assert index.class_names[0] == "coin task 0" and index.step_names[0] == "coin step 1"
    assert index.step_names[777] == "coin step 778"
    assert any("177 task ids and 773 step ids are named neither" in note for note in index.notes)
    assert index.missing == ["vidC02"] and index.unannotated == ["zzUnknown"]
    items = by_id(index)
    assert (items["vidA01"].label, items["vidA01"].steps, items["vidA01"].segments) == \
           (12, [44, 45], [(44, 2.0, 10.5), (45, 11.0, 20.0)])
    assert items["vidB02"].path.endswith("videos/vidB02.webm") and items["vidB02"].split == "test"
    assert items["vidA02"].path.endswith("videos/12/vidA02.mkv")


def test_coin_partial_file_shared_texts_and_double_spaces(tmp_path):
    index = load_dataset("coin", write_coin(tmp_path, quirks=True))
    items = by_id(index)
    assert (items["tireA01"].label, items["tireA01"].labels, items["tireA01"].steps) == (131, [131], [599, 600])
    assert items["bikeB01"].label == 60 and items["bikeB01"].segments == [(269, 1.0, 4.0)]
    assert len(index.class_names) == 180 and len(index.step_names) == 778
    assert index.class_names[131] == "change car tire" and index.class_names[60] == "patch bike inner tube"
    # Only the shared text gets its task appended; the double space is normalised.
    assert index.step_names[599] == "remove the tire (change car tire)"
    assert index.step_names[269] == "remove the tire (patch bike inner tube)"
    assert index.step_names[600] == "install the new tire"
    assert len(set(index.step_names)) == 778
    notes = " | ".join(index.notes)
    assert "2 step texts were made unique" in notes and "600: 'remove the tire (change car tire)'" in notes
    assert "whitespace normalised in 1 names: 'install  the new tire'" in notes
    assert "names from COIN.json (no taxonomy)" in notes


def test_coin_taxonomy_names_ids_no_video_uses(tmp_path):
    index = load_dataset("coin", write_coin(tmp_path, quirks=True, taxonomy=True))
    assert index.class_names[7] == "make salad" and index.step_names[29] == "cut the lettuce"
    assert index.step_names[270] == "glue the patch" and index.step_names[599] == "remove the tire (change car tire)"
    assert by_id(index)["tireA01"].label == 131
    notes = " | ".join(index.notes)
    assert str(tmp_path / "taxonomy.csv") in notes and "177 task ids and 773 step ids are named neither" in notes
    (tmp_path / "taxonomy.csv").write_text("Target Id,Target Label,Action Id\n1,A,2\n")
    raises_one_line(DatasetError, "taxonomy.csv:1: no column for step", load_dataset, "coin", tmp_path)
    raises_one_line(DatasetError, "COIN taxonomy .*other.csv not found.*--taxonomy", load_dataset, "coin", tmp_path,
                    taxonomy=tmp_path / "other.csv")


@pytest.mark.parametrize("file", ["taxonomy.xlsx", "taxonomy.csv"])
def test_coin_published_taxonomy_gives_exactly_its_778_steps(tmp_path, file):
    root = write_coin(tmp_path, taxonomy=file)
    index = load_dataset("coin", root)  # the taxonomy is found in ROOT
    assert len(index.step_names) == 778 and len(index.class_names) == 180
    assert index.step_ids == list(range(1, 779)) and index.class_ids == list(range(180))
    names = index.step_names + index.class_names
    assert not [n for n in names if n.startswith(("coin step", "coin task"))]
    assert len({" ".join(n.split()).casefold() for n in index.step_names}) == 778  # unique after normalisation
    # The smallest change: the first of a repeated text keeps it, the later ones are marked.
    assert [index.step_names[i - 1] for i in (250, 252, 251, 253)] == [
        "aim at the pin", "aim at the pin (second time)", "push the pin out", "push the pin out (second time)"]
    assert [index.step_names[i - 1] for i in (225, 228)] == ["show the whole rope again",
                                                             "show the whole rope again (second time)"]
    notes = " | ".join(index.notes)
    assert "named neither" not in notes and str(root / file) in notes
    assert "252: 'aim at the pin (second time)'" in notes and "228: 'show the whole rope again (second time)'" in notes
    # The stored labels and step columns are the ids COIN.json gives, through the stored ids.
    database = json.loads((root / "COIN.json").read_text())["database"]
    for item in index.items:
        entry = database[item.video_id]
        assert index.class_ids[item.label] == entry["recipe_type"]
        assert [index.step_ids[j] for j in item.steps] == sorted({int(a["id"]) for a in entry["annotation"]})
        assert [(index.step_ids[j], a, b) for j, a, b in item.segments] == \
               [(int(a["id"]), *a["segment"]) for a in entry["annotation"]]


def test_coin_ids_outside_the_published_ones_and_a_missing_openpyxl(tmp_path, monkeypatch):
    root = write_coin(tmp_path, taxonomy="taxonomy.csv")
    database = json.loads((root / "COIN.json").read_text())
    database["database"]["vidA01"]["annotation"][0]["id"] = "0"
    (root / "COIN.json").write_text(json.dumps(database))
    raises_one_line(DatasetError, r"COIN.json: step id 0 \('put the bed frame together'\) is not one of COIN's "
                                  r"published ids \(1..778, 778 ids\).*--taxonomy", load_dataset, "coin", root)
    rows = [("D", 0, "T", step, f"s{step}") for step in range(0, 778)]  # a complete taxonomy, numbered from 0
    write_coin_taxonomy(root / "taxonomy.csv", rows)
    index = load_dataset("coin", root)  # its own numbering: id 0 is index 0, id 45 index 45
    assert index.step_ids == list(range(778)) and by_id(index)["vidA01"].steps == [0, 46]
    (root / "COIN.json").write_text(json.dumps({"database": {"x": {**database["database"]["vidA01"],
                                                                   "recipe_type": 180}}}))
    raises_one_line(DatasetError, r"COIN.json: task id 180 .* not one of COIN's published ids \(0..179, 180 ids",
                    load_dataset, "coin", root)
    write_coin(root, taxonomy=False)
    (root / "taxonomy.csv").write_text("Target Id,Target Label,Action Id,Action Label\n3,A,900,a step\n")
    raises_one_line(DatasetError, r"taxonomy.csv: step id 900 \('a step'\) is not one of COIN's published ids",
                    load_dataset, "coin", root)  # a partial taxonomy only names the published ids
    write_coin(tmp_path / "x", taxonomy="taxonomy.xlsx")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # as if it were not installed
    raises_one_line(DatasetError, r"taxonomy.xlsx needs openpyxl.*pip install 'cmdcl\[coin\]'", load_dataset, "coin",
                    tmp_path / "x", taxonomy=tmp_path / "x" / "taxonomy.xlsx")


def test_unique_step_texts_across_and_within_tasks():
    from cmdcl.extract.datasets.coin import unique_step_texts

    steps = {1: "remove the tire", 2: "Remove  the tire", 3: "aim", 4: "aim", 5: "aim", 6: "aim (second time)"}
    texts, changed = unique_step_texts(steps, {1: 10, 2: 11, 3: 12, 4: 12, 5: 12, 6: 13}, {10: "car", 11: "bike"})
    assert texts == {1: "remove the tire (car)", 2: "Remove  the tire (bike)", 3: "aim", 4: "aim (second time)",
                     5: "aim (third time)", 6: "aim (second time) (step 6)"}
    assert len(changed) == 5


def test_coin_bad_inputs(tmp_path):
    raises_one_line(DatasetError, "COIN.json not found", load_dataset, "coin", tmp_path)
    root = write_coin(tmp_path)
    (root / "COIN.json").write_text('{"database": {"x": ')
    raises_one_line(DatasetError, "COIN.json:1: not valid JSON", load_dataset, "coin", root)
    (root / "COIN.json").write_text(json.dumps({"videos": {}}))
    raises_one_line(DatasetError, "expected an object ..database", load_dataset, "coin", root)
    (root / "COIN.json").write_text(json.dumps({"database": {"x": {"class": "A", "subset": "training",
                                                                   "annotation": []}}}))
    raises_one_line(DatasetError, "video x: missing or malformed field.*recipe_type", load_dataset, "coin", root)
    entry = {"recipe_type": 1, "class": "A", "subset": "training", "annotation": [{"id": "3", "segment": [0, 1],
                                                                                   "label": "a"}]}
    other = {**entry, "annotation": [{"id": "3", "segment": [0, 1], "label": "b"}]}
    (root / "COIN.json").write_text(json.dumps({"database": {"x": entry, "y": other}}))
    raises_one_line(DatasetError, "step id 3 is called both 'a' and 'b'", load_dataset, "coin", root)
