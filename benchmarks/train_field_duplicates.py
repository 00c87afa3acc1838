"""Are TRAIN's field ids really different fields? Near-duplicates across ids, by appearance.

The validation split (``training.data.split_by_field``) holds out whole field ids, the
``_<field>_`` prefix of each TRAIN file, and reaches 99.7 % while TEST reaches 84 %. If one
original field appears under several ids, the split puts copies of one cell on both sides.
This script embeds every TRAIN and TEST cell crop (the locator's crop, as training sees
it) with the ImageNet Lite0 backbone, not trained on this data, and compares whole fields:
the similarity of two fields is the highest cosine similarity between any of their copies.

It reports, for each TRAIN field, its most similar other TRAIN field, and for each TEST
field its most similar TRAIN field. TEST is the reference for "different fields", if
TEST's fields are new to TRAIN. It counts how many groups TRAIN's ids fall into when
fields at or above a threshold are joined (connected components, which chain, and
complete linkage, which does not), and draws the most similar cross-id pairs
(`pairs.png`) and the TRAIN fields whose best partner is the least similar
(`weakest_pairs.png`).

Last, it asks whether holding out whole complete-linkage groups would give a validation
split that tracks TEST: a linear probe (softmax on the same features) is trained on the
rest of TRAIN and scored on the held-out groups and on TEST. A split that keeps copies of
one original together scores about what TEST scores.

Usage: python benchmarks/train_field_duplicates.py [--thresholds 0.94 0.95 0.96] [--out out/train_field_duplicates]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import keras
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from hv.config import load_config
from hv.model import build_backbone
from hv.preprocess import read_image_rgb, to_model_batch
from training.data import discover, field_group
from training.evaluate import crop_fields

REPO = Path(__file__).resolve().parent.parent


def embed(paths: list[str], config, backbone: keras.Model, chunk: int = 256) -> np.ndarray:
    """Unit-length ImageNet features of each field's cell crop."""
    pool = keras.layers.GlobalAveragePooling2D()
    progress = keras.utils.Progbar(len(paths))
    features = []
    for start in range(0, len(paths), chunk):
        crops, _ = crop_fields(paths[start : start + chunk], config)
        for b in range(0, len(crops), 64):
            f = np.asarray(pool(backbone.predict_on_batch(to_model_batch(crops[b : b + 64]))))
            features.append(f / np.linalg.norm(f, axis=1, keepdims=True))
        progress.update(min(start + chunk, len(paths)))
    return np.concatenate(features)


def field_similarity(query: np.ndarray, query_groups: np.ndarray, ref: np.ndarray,
                     ref_groups: np.ndarray) -> tuple[list[str], list[str], np.ndarray]:
    """(query field names, reference field names, matrix of max copy-to-copy similarity)."""
    q_names, r_names = sorted(set(query_groups)), sorted(set(ref_groups))
    r_order = np.argsort(ref_groups, kind="stable")
    r_sorted = ref[r_order]
    starts = np.searchsorted(ref_groups[r_order], r_names)
    matrix = np.zeros((len(q_names), len(r_names)), np.float32)
    for i, name in enumerate(q_names):
        sims = query[query_groups == name] @ r_sorted.T
        matrix[i] = np.maximum.reduceat(sims.max(axis=0), starts)
    return q_names, r_names, matrix


def pairs_picture(train_paths, train_groups, features, pairs, out: Path) -> None:
    rows = []
    for a, b in pairs:
        ia, ib = np.flatnonzero(train_groups == a), np.flatnonzero(train_groups == b)
        i, j = np.unravel_index((features[ia] @ features[ib].T).argmax(), (len(ia), len(ib)))
        images = [cv2.resize(read_image_rgb(train_paths[k]), (320, 240)) for k in (ia[i], ib[j])]
        for image, name in zip(images, (a, b)):
            cv2.rectangle(image, (0, 0), (150, 30), (255, 255, 255), -1)
            cv2.putText(image, f"field {name}", (6, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 2)
        rows.append(np.hstack(images))
    cv2.imwrite(str(out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def grouped_holdout(field_names: list[str], group_of_field: np.ndarray, fraction: float, seed: int) -> set[str]:
    """Field names of ``fraction`` of each class's groups, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    classes = np.array([name.split(":")[0] for name in field_names])
    keys = np.array([f"{c}/{g}" for c, g in zip(classes, group_of_field)])  # a group may span classes
    held = set()
    for c in sorted(set(classes)):
        class_keys = sorted(set(keys[classes == c]))
        held.update(rng.choice(class_keys, size=max(1, round(len(class_keys) * fraction)), replace=False))
    return {name for name, key in zip(field_names, keys) if key in held}


def linear_probe(features: np.ndarray, labels: np.ndarray, fit: np.ndarray, scored: list[tuple[np.ndarray,
                 np.ndarray]], seed: int) -> list[float]:
    """Accuracy on each (features, labels) of ``scored`` of a softmax fitted on ``features[fit]``."""
    keras.utils.set_random_seed(seed)
    probe = keras.Sequential([keras.Input(features.shape[1:]), keras.layers.Dense(int(labels.max()) + 1,
                                                                                  activation="softmax")])
    probe.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    scale = 10.0  # unit-length features: give the logits room without a bias-heavy fit
    probe.fit(features[fit] * scale, labels[fit], epochs=10, batch_size=256, verbose=0)
    return [float((probe.predict(x * scale, verbose=0).argmax(1) == y).mean()) for x, y in scored]


def probe_splits(names, tree, thresholds, train_features, train_labels, train_groups, test_features,
                 test_labels, seeds) -> dict:
    """Validation vs TEST accuracy of a linear probe, holding out 20 % of field ids or of groups."""
    kinds = {"field ids": np.arange(len(names))}
    for threshold in thresholds:
        kinds[f"complete linkage {threshold}"] = fcluster(tree, t=1 - threshold, criterion="distance")
    rows = {}
    for kind, group_of_field in kinds.items():
        scores, shares = [], []
        for seed in seeds:
            held = grouped_holdout(names, group_of_field, 0.2, seed)
            validation = np.array([g in held for g in train_groups])
            shares.append([validation[train_labels == c].mean() for c in range(int(train_labels.max()) + 1)])
            scores.append(linear_probe(train_features, train_labels, ~validation,
                                       [(train_features[validation], train_labels[validation]),
                                        (test_features, test_labels)], seed))
        val, test = np.array(scores).T
        rows[kind] = {"validation": round(float(val.mean()), 3), "test": round(float(test.mean()), 3),
                      "gap": round(float((val - test).mean()), 3),
                      # a group can hold most of a class: then the probe hardly sees that class
                      "held_out_share_by_class": [[round(float(v), 2) for v in draw] for draw in shares]}
        print(kind, rows[kind], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.94, 0.95, 0.96])
    parser.add_argument("--out", default=str(REPO / "out" / "train_field_duplicates"))
    parser.add_argument("--probe-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="one validation draw and probe per seed")
    args = parser.parse_args()
    config = load_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, _ = discover(config.data.train_dir)
    test, _ = discover(config.data.test_dir)
    backbone = build_backbone(config.model)  # ImageNet weights: blind to this data's labels
    train_features = embed(list(train.paths), config, backbone)
    test_features = embed(list(test.paths), config, backbone)
    train_groups = np.array([field_group(p, y) for p, y in zip(train.paths, train.labels)])
    test_groups = np.array([field_group(p, y) for p, y in zip(test.paths, test.labels)])

    names, _, within = field_similarity(train_features, train_groups, train_features, train_groups)
    np.fill_diagonal(within, -1)
    test_names, _, across = field_similarity(test_features, test_groups, train_features, train_groups)
    best_other = within.max(axis=1)
    best_train = across.max(axis=1)
    label = np.array([n.split(":")[0] for n in names])

    def percentiles(values):
        values = np.percentile(values, [0, 10, 50, 90, 100]).round(3).tolist()
        return dict(zip(("min", "p10", "p50", "p90", "max"), values))

    result = {
        "train_field_ids": len(names), "test_field_ids": len(test_names),
        "train_field_best_other_train_field": percentiles(best_other),
        "best_other_has_same_class": round(float((label[within.argmax(axis=1)] == label).mean()), 3),
        "test_field_best_train_field": percentiles(best_train),
        "thresholds": {},
    }
    # Complete linkage joins two groups only if every pair of their fields is similar:
    # unlike the connected components, it cannot chain through look-alike cells.
    distance = 1 - np.clip(within, 0, 1)
    np.fill_diagonal(distance, 0)
    tree = linkage(squareform(distance, checks=False), method="complete")
    for threshold in args.thresholds:
        groups, _ = connected_components(csr_matrix(within >= threshold), directed=False)
        complete = fcluster(tree, t=1 - threshold, criterion="distance")
        result["thresholds"][str(threshold)] = {
            "train_fields_with_a_partner": int((best_other >= threshold).sum()),
            "train_groups_after_joining": int(groups),
            "train_groups_complete_linkage": int(complete.max()),
            "largest_complete_linkage_group": int(np.bincount(complete).max()),
            "test_fields_with_a_train_partner": int((best_train >= threshold).sum()),
        }
    result["linear_probe_validation_vs_test"] = probe_splits(
        names, tree, args.thresholds, train_features, np.array(train.labels), train_groups, test_features,
        np.array(test.labels), args.probe_seeds)

    def best_pairs(order):
        seen, pairs = set(), []
        for i in order:
            pair = tuple(sorted((names[i], names[int(within[i].argmax())])))
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
            if len(pairs) == 4:
                return pairs
        return pairs

    # The most similar cross-id pairs, and the TRAIN fields whose best partner is the least similar.
    pairs_picture(list(train.paths), train_groups, train_features, best_pairs(np.argsort(-best_other)),
                  out / "pairs.png")
    pairs_picture(list(train.paths), train_groups, train_features, best_pairs(np.argsort(best_other)),
                  out / "weakest_pairs.png")
    (out / "train_field_duplicates.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
