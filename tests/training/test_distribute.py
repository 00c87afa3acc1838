"""tf.distribute on this CPU: two logical devices mirror one, and two local workers train one model."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import draw_field

REPO = Path(__file__).resolve().parents[2]


def write_dataset(root: Path) -> Path:
    import cv2
    import numpy as np

    from hv.labels import CLASS_NAMES

    rng = np.random.default_rng(1)
    for label, name in enumerate(CLASS_NAMES):
        (root / name).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(root / name / f"_{i}_{i}.png"), cv2.cvtColor(draw_field(rng, label), cv2.COLOR_RGB2BGR))
    return root


def tiny_config_toml(data: Path, out: Path, strategy: str) -> str:
    # No dropout and no augmented views: the two runs must see the same numbers, replica or not.
    return textwrap.dedent(f"""
        [data]
        train_dirs = ["{data}"]
        test_dirs = []
        test_fraction = 0.0
        val_fraction = 0.0
        [model]
        weights = "none"
        image_size = 32
        dropout = 0.0
        dense_units = 16
        [train]
        batch_size = 8
        out_dir = "{out}"
        views_per_image = 1
        strategy = "{strategy}"
        mixed_precision = "off"
        [train.phase1]
        epochs = 2
        learning_rate = 0.001
        [train.phase2]
        epochs = 0
        learning_rate = 0.0001
        unfreeze_layers = 10
    """)


def run(code: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def test_mirrored_on_two_logical_cpus_gives_the_one_device_loss(tmp_path):
    data = write_dataset(tmp_path / "data")
    for strategy in ("default", "mirrored"):
        (tmp_path / f"{strategy}.toml").write_text(tiny_config_toml(data, tmp_path / "runs", strategy))
    code = textwrap.dedent(f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from hv.config import load_config
        from training.train import train
        from training.distribute import place
        losses = {{}}
        for strategy in ("default", "mirrored"):
            config = load_config("{tmp_path}/" + strategy + ".toml")
            losses[strategy] = [place(strategy).replicas]
            run = train(config, __import__("pathlib").Path("{tmp_path}/runs/" + strategy))
            rows = open(run / "history.csv").read().splitlines()[1:]
            losses[strategy] += [float(r.split(",")[2]) for r in rows]
        print(json.dumps(losses))
    """)
    result = run(code)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    assert losses["default"][0] == 1 and losses["mirrored"][0] == 2  # one replica, then two
    # The same global batches, split over two replicas: the same loss, to float32 summation order.
    assert losses["mirrored"][1:] == pytest.approx(losses["default"][1:], rel=1e-3)
    assert losses["default"][1] != losses["default"][2]  # and it did train


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_local_workers_train_one_model(tmp_path):
    data = write_dataset(tmp_path / "data")
    config = tmp_path / "multi.toml"
    config.write_text(tiny_config_toml(data, tmp_path / "runs", "multi_worker"))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [
        subprocess.Popen([sys.executable, "-m", "hv.cli", "--config", str(config), "train", "--name", "two_workers"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                              "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)]
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    for output in outputs:  # two replicas, and every epoch saw the 16 images once, over both workers
        assert "training on 2 replica(s)" in output and "(16 images over all workers)" in output
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["two_workers"] and (tmp_path / "runs" / "two_workers" / "model.keras").is_file()


def test_multi_worker_without_tf_config_is_a_clear_error(tmp_path, monkeypatch):
    from training.distribute import DistributeError, make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DistributeError, match="needs TF_CONFIG"):
        make_strategy("multi_worker")
