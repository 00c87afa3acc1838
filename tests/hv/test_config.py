from pathlib import Path

import pytest

from hv.config import Config, ConfigError, config_from_dict, load_config, override

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.toml"


def test_repo_config_loads_and_resolves_paths():
    config = load_config(REPO_CONFIG)
    assert config.model.backbone == "efficientnet_lite0"
    assert all(Path(d.partition("#")[0]).is_absolute() for d in config.data.train_dirs + config.data.test_dirs)
    assert config.data.train_dirs[-1].endswith("pbc/OTHER#train")  # the part survives resolution
    assert config.train.phase2.unfreeze_layers > 0


def test_original_groups_path_is_resolved_but_keywords_are_not(tmp_path):
    assert load_config(REPO_CONFIG).data.original_groups == "bundled"
    for keyword in ("bundled", "none"):
        config = config_from_dict({"data": {"original_groups": keyword}}, base_dir=tmp_path)
        assert config.data.original_groups == keyword
    resolved = config_from_dict({"data": {"original_groups": "groups.csv"}}, base_dir=tmp_path).data.original_groups
    assert resolved == str(tmp_path / "groups.csv")


def test_partial_table_keeps_other_defaults():
    config = config_from_dict({"train": {"phase2": {"epochs": 7}}})
    assert config.train.phase2.epochs == 7
    assert config.train.phase2.learning_rate == Config().train.phase2.learning_rate


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"model": {"backbone": "resnet"}}, "model.backbone = 'resnet': expected one of"),
        ({"locator": {"stain_correction": "on"}}, "locator.stain_correction = 'on': expected one of"),
        ({"train": {"batch_size": "32"}}, "train.batch_size = '32': expected an integer"),
        ({"train": {"batch_size": 0}}, "train.batch_size = 0: expected a value > 0"),
        ({"model": {"dropout": 1.5}}, "model.dropout = 1.5: expected a value between 0 and 1"),
        ({"stream": {"check_below": 1.5}}, "stream.check_below = 1.5: expected a value between 0 and 1"),
        ({"stream": {"track_part_of_cell": 2.0}}, "stream.track_part_of_cell = 2.0: expected a value between 0 and 1"),
        ({"augment": {"horizontal_flip": 1}}, "augment.horizontal_flip = 1: expected true or false"),
        ({"train": {"phase1": {"epochs": -1}}}, "train.phase1.epochs = -1: expected a value >= 0"),
        ({"model": {"colour": "red"}}, "unknown key 'colour' in [model]"),
        ({"modle": {}}, "unknown key 'modle' in the top level"),
        ({"data": {"val_fold": "3/2"}}, "data.val_fold = '3/2': expected \"I/K\""),
        ({"data": {"val_fold": "1/1"}}, "data.val_fold = '1/1': expected \"I/K\""),
        ({"data": {"val_fold": "first"}}, "data.val_fold = 'first': expected \"I/K\""),
        ({"data": {"split_seed": -2}}, "data.split_seed = -2: expected a seed >= 0, or -1 for train.seed"),
    ],
)
def test_invalid_values_name_the_key(table, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(table)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad.write_text('[train]\nseed = "x"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: train.seed = 'x'"):
        load_config(bad)


def test_override_validates_and_ignores_none():
    config = Config()
    assert override(config, **{"train.seed": None}) == config
    assert override(config, **{"train.seed": 3}).train.seed == 3
    with pytest.raises(ConfigError, match="train.batch_size"):
        override(config, **{"train.batch_size": -2})


def test_cell_diameter_is_auto_or_a_fraction():
    assert Config().locator.cell_diameter_frac == "auto"
    assert config_from_dict({"locator": {"cell_diameter_frac": 0.3}}).locator.cell_diameter_frac == 0.3
    with pytest.raises(ConfigError, match="expected a value between 0 and 1"):
        config_from_dict({"locator": {"cell_diameter_frac": 1.5}})
    with pytest.raises(ConfigError, match="cell_diameter_frac = 'big': expected a number or 'auto'"):
        config_from_dict({"locator": {"cell_diameter_frac": "big"}})


def test_a_validation_fold_reads_as_fold_and_count():
    assert config_from_dict({"data": {"val_fold": "2/5"}}).data.fold == (2, 5)
    assert Config().data.fold is None


def test_the_split_seed_follows_the_training_seed_unless_set():
    assert config_from_dict({"train": {"seed": 4}}).split_seed == 4
    assert config_from_dict({"train": {"seed": 4}, "data": {"split_seed": 0}}).split_seed == 0
