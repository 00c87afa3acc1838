"""Which blood-cells/ images are copies of one original field? Matched by their pixels, not by a feature model.

blood-cells/TRAIN and TEST are augmented copies (rotated, mirrored, shifted, zoomed) of a
few hundred original fields, and the ``_<field>_`` id in a file name is not the original:
one id holds different cells, and one original appears under several ids
(``benchmarks/train_field_duplicates.py``, which tried ImageNet similarity and found it
cannot tell "the same cell" from "the same kind of cell"). A validation split that keeps
every copy of an original on one side needs the originals.

Copies of one field share their red cells' exact arrangement, which no other field has.
This script finds SIFT keypoints in every image and in its mirror image (SIFT is rotation
and scale invariant, not mirror invariant: without the mirror view, 2026-12-05's first
grouping split most originals into a mirrored and an unmirrored group), proposes
for each image the images that share most descriptors (a FLANN index over all of them;
then, in a second pass, those in other groups than its own by then), and keeps a pair only
if an affine map, fitted with RANSAC, carries at least ``--min-inliers`` keypoints of one
image onto the other: an arrangement, not a texture. Pairs are joined into groups
(connected components). The BCCD fields, the originals of both sets where this subset has
them, are matched the same way and name the groups they join.

Checks it reports: how many groups hold more than one class (a field with two white cells
of different classes, each cropped and filed apart; or one cell filed under two labels,
as when BCCD holds the same field twice with different labels: two_classes.jpg shows
them), how many groups hold both TRAIN and TEST images (the sets share that original), and
the distribution of inlier counts for pairs of the same and of different classes (the
threshold sits in the gap between them).

Writes ``--out``/blood_cells_originals.csv (``path,group``, ``blood-cells/TRAIN/<class>/<file>``
and TEST; ``training/originals/blood-cells.csv`` is this file), pairs.csv (every pair checked,
with its inlier count), originals.json (the checks) and two_classes.jpg (copies of one
original filed under two classes). One core; about 50 minutes here beside a training, and up
to 7 GB: beside a two-lab training (16 GB) on a 24 GB machine it got a training killed.

Usage: python benchmarks/blood_cells_originals.py [--data ../shared/data] [--out out/blood_cells_originals]
       python benchmarks/blood_cells_originals.py --check-simple training/originals/blood-cells.csv
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def keypoints(path: Path, sift: cv2.SIFT, mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint positions (n, 2) and SIFT descriptors (n, 128) of one image's smear, in grey.

    ``mirror``: of the image flipped left to right. SIFT matches turned and scaled copies but
    not mirrored ones, and the data set's augmentation mirrors: a mirrored copy matches the
    other copies only through its mirror image (a flip upside down is a mirror and a half turn).
    """
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    if mirror:
        grey = np.ascontiguousarray(grey[:, ::-1])
    # Rotated copies have black wedges at the corners; their straight edges and corners match
    # between any two copies rotated alike, so only the smear itself is searched.
    smear = cv2.erode((grey > 12).astype(np.uint8), np.ones((15, 15), np.uint8))
    found, descriptors = sift.detectAndCompute(grey, smear)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    return np.array([k.pt for k in found], np.float32), descriptors.astype(np.float32)


def affine_inliers(points_a, descriptors_a, points_b, descriptors_b, matcher) -> int:
    """Keypoints of image a that one affine map (RANSAC) carries onto their matches in b."""
    if len(descriptors_a) < 2 or len(descriptors_b) < 2:
        return 0
    pairs = matcher.knnMatch(descriptors_a, descriptors_b, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < 0.8 * n.distance]
    if len(good) < 4:
        return 0
    source = points_a[[m.queryIdx for m in good]]
    target = points_b[[m.trainIdx for m in good]]
    _, mask = cv2.estimateAffine2D(source, target, ransacReprojThreshold=4.0)
    return int(mask.sum()) if mask is not None else 0


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def conflicts_picture(root: Path, rows: list[tuple[str, str]], out: Path, originals: int = 4,
                      tile_px: int = 240) -> int:
    """For up to ``originals`` originals filed under two classes: one copy from each class folder, side by side.

    ``rows`` are (path relative to blood-cells/, group). Returns how many originals were drawn.
    """
    by_group: dict[str, dict[str, str]] = {}
    counts: dict[str, Counter] = {}
    for path, group in rows:
        by_group.setdefault(group, {}).setdefault(path.split("/")[1], path)
        counts.setdefault(group, Counter())[path.split("/")[1]] += 1
    # The originals with the most copies in their second class first: the likeliest label conflicts.
    mixed = sorted(((g, copies) for g, copies in by_group.items() if len(copies) > 1),
                   key=lambda item: (-sorted(counts[item[0]].values())[-2], item[0]))[:originals]
    lines = []
    for group, copies in mixed:
        tiles = []
        for cls, path in sorted(copies.items())[:2]:
            tile = cv2.imread(str(root / path))
            tile = cv2.resize(tile, (tile_px, round(tile_px * tile.shape[0] / tile.shape[1])))
            caption = f"{cls.lower()}, {counts[group][cls]} copies ({group})"
            cv2.rectangle(tile, (0, 0), (tile_px, 24), (255, 255, 255), -1)
            cv2.putText(tile, caption, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            tiles.append(tile)
        lines.append(np.hstack(tiles))
    if lines:
        cv2.imwrite(str(out), np.vstack(lines), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return len(lines)


def check_against_simple(root: Path, grouping: Path, min_inliers: int, features: int, candidates: int = 60) -> dict:
    """How many TEST originals each unaugmented TEST_SIMPLE image matches: 1 each if no original was split in two.

    ``grouping`` is a CSV this script wrote. Each TEST_SIMPLE image is matched (as above) against
    its ``candidates`` most voted TEST images; the groups of those it matches are counted.
    """
    with open(grouping, newline="") as f:
        group = {row["path"].removeprefix("blood-cells/"): row["group"] for row in csv.DictReader(f)}
    test = sorted(p for p in group if p.startswith("TEST/"))
    sift = cv2.SIFT_create(nfeatures=features, contrastThreshold=0.01)
    found = [keypoints(root / p, sift) for p in test]
    owner = np.concatenate([np.full(len(d), i) for i, (_, d) in enumerate(found)])
    index = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 32})
    index.add([np.vstack([d for _, d in found])])
    index.train()
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    matched = {}
    for path in sorted((root / "TEST_SIMPLE").glob("*/*")):
        groups = set()
        for mirror in (False, True):
            points, descriptors = keypoints(path, sift, mirror)
            votes = Counter(owner[m.trainIdx] for row in index.knnMatch(descriptors, k=6) for m in row)
            groups |= {group[test[j]] for j, _ in votes.most_common(candidates)
                       if affine_inliers(points, descriptors, *found[j], matcher) >= min_inliers}
        matched[f"{path.parent.name}/{path.name}"] = sorted(groups)
    spread = Counter(min(len(g), 2) for g in matched.values())
    return {"simple_images": len(matched), "matching_0_1_2plus_originals": [spread[n] for n in (0, 1, 2)],
            "matching_two_or_more": {k: v for k, v in matched.items() if len(v) > 1}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--features", type=int, default=250, help="SIFT keypoints kept per image")
    parser.add_argument("--candidates", type=int, default=8, help="images checked with RANSAC per image")
    parser.add_argument("--min-inliers", type=int, default=20)
    parser.add_argument("--index-parts", type=int, default=4, help="build the descriptor index in this many parts")
    parser.add_argument("--limit", type=int, default=0, help="use every n-th image only (a quick look)")
    parser.add_argument("--out", default=str(REPO / "out" / "blood_cells_originals"))
    parser.add_argument("--check-simple", metavar="CSV",
                        help="only check a grouping this script wrote against TEST_SIMPLE (a few minutes)")
    args = parser.parse_args()
    if args.check_simple:
        result = check_against_simple(Path(args.data) / "blood-cells", Path(args.check_simple), args.min_inliers,
                                      args.features)
        print(json.dumps(result, indent=1))
        return

    data = Path(args.data)
    root = data / "blood-cells"
    paths = sorted(p for part in ("TRAIN", "TEST") for p in (root / part).glob("*/*") if p.suffix in IMAGE_SUFFIXES)
    if args.limit:
        paths = paths[:: args.limit]
    fields = sorted((data / "bccd" / "JPEGImages").glob("*.jpg"))
    names = [str(p.relative_to(root)) for p in paths] + [f"bccd/{p.stem}" for p in fields]
    classes = [p.parent.name for p in paths] + ["" for _ in fields]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    sift = cv2.SIFT_create(nfeatures=args.features, contrastThreshold=0.01)
    # Each image as it is and mirrored ("views" 0 and 1); the index holds the first only, and
    # an image queried mirrored finds the copies mirrored relative to it.
    points, descriptors = ([], []), ([], [])
    for i, path in enumerate(paths + fields):
        for view in (0, 1):
            p, d = keypoints(path, sift, mirror=bool(view))
            points[view].append(p)
            descriptors[view].append(d.astype(np.float16))  # half the memory; ample for matching
        if i % 2000 == 0:
            print(f"keypoints: {i} of {len(names)} images  [{time.perf_counter() - started:.0f} s]", flush=True)
    owner = np.concatenate([np.full(len(d), i) for i, d in enumerate(descriptors[0])])
    # Candidates: the images that own most of an image's nearest descriptors, for each view.
    # The index is built over a part of the images at a time; the votes still grow to several GB.
    votes = ([Counter() for _ in names], [Counter() for _ in names])
    bounds = np.linspace(0, len(names), args.index_parts + 1).astype(int)
    for part, (low, high) in enumerate(zip(bounds[:-1], bounds[1:])):
        index = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 32})
        index.add([np.vstack(descriptors[0][low:high]).astype(np.float32)])
        index.train()
        part_owner = owner[(owner >= low) & (owner < high)]
        for view in (0, 1):
            for i, d in enumerate(descriptors[view]):
                if len(d):
                    votes[view][i].update(part_owner[m.trainIdx]
                                          for row in index.knnMatch(d.astype(np.float32), k=6) for m in row)
        print(f"candidates: index part {part + 1} of {args.index_parts}  [{time.perf_counter() - started:.0f} s]",
              flush=True)
        del index

    matcher = cv2.BFMatcher(cv2.NORM_L2)
    union = UnionFind(len(names))
    edges = []  # (i, j, mirrored, inliers) for every pair checked
    # Two passes: the first checks each image's most voted candidates, mostly copies of its own
    # original; the second checks the most voted candidates from other groups than its own by
    # then, which is how a field that appears twice (BCCD holds some twice) is joined. Each
    # view of image i is matched against the candidates it voted for.
    for pass_number in (1, 2):
        for i in range(len(names)):
            for view in (0, 1):
                votes[view][i].pop(i, None)
                ranked = (j for j, _ in votes[view][i].most_common())
                if pass_number == 2:
                    ranked = (j for j in ranked if union.find(int(j)) != union.find(i))
                for j in itertools.islice(ranked, args.candidates):
                    count = affine_inliers(points[view][i], descriptors[view][i].astype(np.float32), points[0][j],
                                           descriptors[0][j].astype(np.float32), matcher)
                    edges.append((i, int(j), view, count))
                    if count >= args.min_inliers:
                        union.join(i, int(j))
            if i % 2000 == 0:
                print(f"pairs, pass {pass_number}: {i} of {len(names)} images  [{time.perf_counter() - started:.0f} s]",
                      flush=True)
    with open(out / "pairs.csv", "w") as f:
        f.write("a,b,mirrored,inliers\n")
        f.writelines(f"{names[i]},{names[j]},{view},{n}\n" for i, j, view, n in edges)

    inliers_same, inliers_other = [], []
    for i, j, _, count in edges:
        if classes[i] and classes[j]:
            (inliers_same if classes[i] == classes[j] else inliers_other).append(count)

    roots = [union.find(i) for i in range(len(names))]
    members: dict[int, list[int]] = {}
    for i, r in enumerate(roots):
        members.setdefault(r, []).append(i)
    group_name = {}
    for r, items in members.items():
        anchors = sorted(names[i] for i in items if names[i].startswith("bccd/"))
        group_name[r] = anchors[0].removeprefix("bccd/") if anchors else f"g{min(items):05d}"
    with open(out / "blood_cells_originals.csv", "w") as f:
        f.write("path,group\n")
        for i in range(len(paths)):  # keyed as training.data.original_key reads it
            f.write(f"blood-cells/{names[i]},{group_name[roots[i]]}\n")

    image_groups = {r: [i for i in items if i < len(paths)] for r, items in members.items()}
    image_groups = {r: items for r, items in image_groups.items() if items}
    mixed = {group_name[r]: dict(Counter(classes[i] for i in items)) for r, items in image_groups.items()
             if len({classes[i] for i in items}) > 1}
    sets = {r: {names[i].split("/")[0] for i in items} for r, items in image_groups.items()}
    shared = sorted(group_name[r] for r, s in sets.items() if s == {"TRAIN", "TEST"})
    sizes = sorted((len(items) for items in image_groups.values()), reverse=True)
    report = {
        "images": len(paths), "bccd_fields": len(fields), "min_inliers": args.min_inliers,
        "groups": {part: sum(1 for s in sets.values() if part in s) for part in ("TRAIN", "TEST")},
        "singletons": sum(1 for n in sizes if n == 1),
        "largest_groups": sizes[:10],
        "images_in_groups_named_by_bccd": sum(len(items) for r, items in image_groups.items()
                                             if not group_name[r].startswith("g")),
        "groups_with_two_classes": mixed,
        "groups_in_train_and_test": shared,
        "inliers_same_class_percentiles": np.percentile(inliers_same, [50, 90, 99]).tolist() if inliers_same else [],
        "inliers_other_class_percentiles": np.percentile(inliers_other, [50, 90, 99, 100]).tolist()
        if inliers_other else [],
        "inliers_other_class_at_or_above_threshold": int(np.sum(np.array(inliers_other) >= args.min_inliers)),
        "seconds": round(time.perf_counter() - started),
    }
    (out / "originals.json").write_text(json.dumps(report, indent=2) + "\n")
    conflicts_picture(root, [(names[i], group_name[roots[i]]) for i in range(len(paths))], out / "two_classes.jpg")
    print(json.dumps({k: v for k, v in report.items() if k != "groups_in_train_and_test"}, indent=1))
    print(f"groups in TRAIN and TEST: {len(shared)}")


if __name__ == "__main__":
    main()
