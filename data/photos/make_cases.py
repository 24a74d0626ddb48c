"""Write cases.jsonl beside this file: 4 writing cases on each photo here (udifftext.data.photo_cases, seed 0).

usage: python data/photos/make_cases.py   (tests/test_photo_cases.py checks the committed file matches)
"""

from pathlib import Path

from udifftext.config import DataConfig
from udifftext.data.photo_cases import write_photo_cases

HERE = Path(__file__).resolve().parent
PER_PHOTO = 4
SEED = 0

if __name__ == "__main__":
    print(f"wrote {write_photo_cases(HERE, DataConfig(split='heldout'), PER_PHOTO, SEED)}")
