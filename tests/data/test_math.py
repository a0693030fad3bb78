"""MATH folders: boxed answers, levels, numeric id order, subject/level filters, bad files.

Run: .venv/bin/python -m pytest tests/data/test_math.py -q
"""

from __future__ import annotations

import json

import pytest

from tinyr1.data import load_problems
from tinyr1.data.math import parse_level
from tinyr1.errors import UserError

from .conftest import MATH, cfg


def _by_id(problems):
    return {p.id: p for p in problems}


def test_train_split_reads_subjects_alphabetically_and_ids_numerically():
    train = load_problems(cfg(f"math:{MATH}"), "train")
    assert [p.id for p in train] == [
        "algebra/2", "algebra/10", "algebra/100",
        "counting_and_probability/3",
        "geometry/7", "geometry/31",
        "number_theory/4", "number_theory/12",
    ]  # fmt: skip


def test_answers_come_from_the_last_boxed_in_every_spelling():
    p = _by_id(load_problems(cfg(f"math:{MATH}"), "train"))
    assert p["algebra/2"].answer == "2"
    assert p["algebra/10"].answer == r"\frac{1}{2}"  # nested braces
    assert p["algebra/100"].answer == "5"  # \boxed 5
    assert p["geometry/31"].answer == "5"  # \fbox{5}
    assert p["number_theory/4"].answer == "2"  # the last of two boxes
    assert p["number_theory/12"].answer == r"\{6\}_{\text{gcd}}"
    assert p["algebra/10"].question == "Solve $2x = 1$."
    assert p["algebra/10"].solution == r"Divide by 2: $x = \boxed{\frac{1}{2}}$."


def test_meta_carries_subject_type_and_level_with_none_for_level_unknown():
    p = _by_id(load_problems(cfg(f"math:{MATH}"), "train"))
    assert p["counting_and_probability/3"].meta == {
        "source": "math", "subject": "counting_and_probability", "type": "Counting & Probability", "level": 3,
    }  # fmt: skip
    assert p["geometry/7"].meta["level"] is None  # "Level ?"


def test_parse_level():
    assert [parse_level(v) for v in ("Level 1", "Level 5", "level 3", 4, "Level ?")] == [1, 5, 3, 4, None]
    with pytest.raises(ValueError):
        parse_level("hard")


def test_a_real_test_split_is_used_as_is():
    test = load_problems(cfg(f"math:{MATH}"), "test")
    assert [(p.id, p.answer) for p in test] == [("algebra/5", "5"), ("geometry/8", r"\pi")]


@pytest.mark.parametrize("subjects", [["algebra"], ["ALGEBRA"], ["Algebra"]])
def test_subject_filter_matches_folder_or_type_name_in_any_case(subjects):
    train = load_problems(cfg(f"math:{MATH}", subjects=subjects), "train")
    assert [p.id for p in train] == ["algebra/2", "algebra/10", "algebra/100"]


def test_subject_filter_by_display_name_with_ampersand():
    train = load_problems(cfg(f"math:{MATH}", subjects=["counting & probability"]), "train")
    assert [p.id for p in train] == ["counting_and_probability/3"]


def test_level_filter_keeps_only_those_levels_and_never_level_unknown():
    train = load_problems(cfg(f"math:{MATH}", levels=[2, 3]), "train")
    assert [p.id for p in train] == ["algebra/10", "counting_and_probability/3", "geometry/31", "number_theory/4"]


def test_subject_and_level_filters_combine():
    train = load_problems(cfg(f"math:{MATH}", subjects=["geometry", "number_theory"], levels=[5]), "train")
    assert [p.id for p in train] == ["number_theory/12"]


def test_empty_selection_names_the_filters():
    with pytest.raises(UserError, match=r"no problems left in the train split \(because of filters subjects=\['geometry'\] levels=\[1\]\)"):
        load_problems(cfg(f"math:{MATH}", subjects=["geometry"], levels=[1]), "train")


def test_unknown_subject_and_level_are_refused():
    with pytest.raises(UserError, match=r"data\.subjects: unknown subject\(s\) \['geometri'\]; known: algebra"):
        load_problems(cfg(f"math:{MATH}", subjects=["geometri"]), "train")
    with pytest.raises(UserError, match=r"data\.levels: \[6\] outside 1-5"):
        load_problems(cfg(f"math:{MATH}", levels=[6]), "train")


def test_held_out_split_is_drawn_before_filters_so_no_filter_leaks_test_into_train(math_train_only):
    source = f"math:{math_train_only}"
    test_all = {p.id for p in load_problems(cfg(source, test_size=4, seed=1), "test")}
    train_all = {p.id for p in load_problems(cfg(source, test_size=4, seed=1), "train")}
    assert len(test_all) == 4 and len(train_all) == 4 and not test_all & train_all
    for levels in ([1], [2], [3], [5]):
        c = cfg(source, test_size=4, seed=1, levels=levels)
        for split, side in (("train", train_all), ("test", test_all)):
            try:
                assert {p.id for p in load_problems(c, split)} <= side
            except UserError as e:  # a filter may leave one side empty; that is reported, not leaked
                assert "no problems left" in str(e)


def _write(folder, name, text):
    path = folder / "train" / "algebra" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _record(solution="so $\\boxed{1}$", **kw):
    return json.dumps({"problem": "p", "level": "Level 1", "type": "Algebra", "solution": solution, **kw}, indent=4)


def test_invalid_json_file_names_the_file(tmp_path):
    _write(tmp_path, "1.json", _record())
    bad = _write(tmp_path, "2.json", '{"problem": "p",')
    with pytest.raises(UserError, match=rf"{bad}: not valid JSON"):
        load_problems(cfg(f"math:{tmp_path}", test_size=0), "train")


def test_solution_without_boxed_names_the_file(tmp_path):
    bad = _write(tmp_path, "3.json", _record(solution="the answer is 4"))
    with pytest.raises(UserError, match=rf"{bad}: the solution has no \\boxed"):
        load_problems(cfg(f"math:{tmp_path}", test_size=0), "train")


def test_missing_key_and_bad_level_name_file_and_key(tmp_path):
    bad = _write(tmp_path, "4.json", json.dumps({"level": "Level 1", "solution": "\\boxed{1}"}))
    with pytest.raises(UserError, match=rf"{bad}: key 'problem' is missing"):
        load_problems(cfg(f"math:{tmp_path}", test_size=0), "train")
    _write(tmp_path, "4.json", _record(level="Level hard"))
    with pytest.raises(UserError, match=r"4\.json: key 'level': expected 'Level 1'"):
        load_problems(cfg(f"math:{tmp_path}", test_size=0), "train")


def test_empty_boxed_answer_is_skipped_with_a_warning(tmp_path):
    _write(tmp_path, "1.json", _record())
    _write(tmp_path, "2.json", _record(solution="there are $\\boxed{}$ primes"))
    with pytest.warns(UserWarning, match=r"skipped 1 problem\(s\) whose \\boxed\{\} answer is empty: algebra/2"):
        train = load_problems(cfg(f"math:{tmp_path}", test_size=0), "train")
    assert [p.id for p in train] == ["algebra/1"]


def test_missing_folder_names_path_and_layout(tmp_path):
    with pytest.raises(UserError, match=r"MATH does not exist; expected a folder holding train/<subject>/<id>\.json"):
        load_problems(cfg(f"math:{tmp_path / 'MATH'}"), "train")


def test_pointing_at_the_train_folder_suggests_its_parent():
    with pytest.raises(UserError, match=rf"holds the subject folders itself; point at {MATH} instead"):
        load_problems(cfg(f"math:{MATH / 'train'}"), "train")


def test_folder_with_no_problem_files_says_so(tmp_path):
    (tmp_path / "train" / "algebra").mkdir(parents=True)
    with pytest.raises(UserError, match=r"train: no <subject>/<id>\.json files found"):
        load_problems(cfg(f"math:{tmp_path}"), "train")


def test_a_folder_holding_only_test_serves_the_test_split(tmp_path):
    import shutil

    shutil.copytree(MATH / "test", tmp_path / "test")
    assert load_problems(cfg(f"math:{tmp_path}"), "test") == load_problems(cfg(f"math:{MATH}"), "test")
    with pytest.raises(UserError, match="has no train/ folder"):
        load_problems(cfg(f"math:{tmp_path}"), "train")
