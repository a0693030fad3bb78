"""Problems from rows: a `datasets` folder (hf:), field mapping, GSM8K-style answers, bad rows named."""

import pytest

from tinyr1.config import DataConfig
from tinyr1.data import load_problems
from tinyr1.errors import UserError


@pytest.fixture
def saved_dataset(tmp_path):
    import datasets

    train = datasets.Dataset.from_list([{"problem": f"What is {i} + {i}?", "target": 2 * i} for i in range(10)])
    test = datasets.Dataset.from_list([{"problem": "What is 2 * 3?", "target": "2 * 3 = 6\n#### 6"}])
    folder = tmp_path / "ds"
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(folder))
    return folder


def test_a_saved_datasetdict_gives_its_train_and_test_splits_with_mapped_fields(saved_dataset):
    cfg = DataConfig(source=f"hf:{saved_dataset}", question_field="problem", answer_field="target")
    train, test = load_problems(cfg, "train"), load_problems(cfg, "test")
    assert [(p.id, p.question, p.answer) for p in train[:2]] == [("ds/train/0", "What is 0 + 0?", "0"),
                                                                  ("ds/train/1", "What is 1 + 1?", "2")]
    assert len(train) == 10 and [(p.answer, p.solution) for p in test] == [("6", "2 * 3 = 6\n#### 6")]


def test_a_single_dataset_has_its_test_split_held_out(tmp_path):
    import datasets

    folder = tmp_path / "one"
    datasets.Dataset.from_list([{"question": f"q{i}", "answer": str(i)} for i in range(8)]).save_to_disk(str(folder))
    cfg = DataConfig(source=f"hf:{folder}", test_size=3)
    train, test = load_problems(cfg, "train"), load_problems(cfg, "test")
    assert len(train) == 5 and len(test) == 3 and not {p.id for p in train} & {p.id for p in test}


def test_a_wrong_field_names_the_row_and_the_key(saved_dataset):
    with pytest.raises(UserError, match=r"hf:.*ds \(train row 0\): key 'question' is missing .* data.question_field"):
        load_problems(DataConfig(source=f"hf:{saved_dataset}", answer_field="target"), "train")
    with pytest.raises(UserError, match="hf:/no/such/thing: could not be read"):
        load_problems(DataConfig(source="hf:/no/such/thing"), "train")
