"""Math problems from every supported source, with train/test splits.

    from tinyr1.data import load_problems
    problems = load_problems(DataConfig(source="gsm8k:../shared/data/GSM8K"), "train")

Sources and the split rule: sources.py and splits.py. Importing this package stays light:
datasets and reasoning_gym load only when a hub or synthetic source is read.
"""

from tinyr1.data.sources import SCHEMES, load_problems, open_source, parse_source
from tinyr1.data.splits import Source, held_out_split, normalise_question

__all__ = ["SCHEMES", "Source", "held_out_split", "load_problems", "normalise_question", "open_source", "parse_source"]
