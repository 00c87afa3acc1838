"""A few labelled cells of a lab, as a technician would have: N images of each class, drawn at random.

Writes class folders of links to the chosen images (nothing is copied), for ``hv adapt
--labelled``: what 10 corrected cells per class teach a model adapted to that lab.

    python benchmarks/labelled_subset.py ../shared/data/pbc/TRAIN --per-class 10 --out out/pbc_train_10_per_class
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hv.labels import OUTPUT_NAMES
from training.data import discover


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a labelled folder (class folders): a TRAIN set, never a TEST set")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    split, _ = discover(args.folder)
    labels = np.array(split.labels)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    for label in sorted(set(split.labels)):
        chosen = rng.permutation(np.flatnonzero(labels == label))[: args.per_class]
        folder = out / OUTPUT_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        for index in sorted(chosen):
            source = Path(split.paths[index]).resolve()
            link = folder / source.name
            if not link.exists():
                link.symlink_to(source)
        print(f"{OUTPUT_NAMES[label]}: {len(chosen)} of {int((labels == label).sum())}")


if __name__ == "__main__":
    main()
