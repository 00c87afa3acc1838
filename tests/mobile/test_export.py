import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import mobile.export
from hv.classifier import KerasClassifier, LiteRTClassifier, ModelLoadError, load_classifier
from hv.config import Config, override
from hv.labels import OUTPUT_NAMES
from mobile.app_check import app_predict
from mobile.convert import ConversionError, convert_keras, float_layer_nodes
from mobile.export import choose_variant, export, int8_preparation, new_lab_data, summarise_test_sets
from mobile.model_card import frequent_confusions, per_class_recall
from mobile.package import PackageError, check_package, crop_description
from mobile.verify import VerificationError, verify_litert
from tests.conftest import draw_field, replace
from training.data import DataError


@pytest.fixture
def crops():
    return np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)


def test_float32_and_int8_convert_and_run_in_litert(tmp_path, tiny_model_path, crops):
    files = convert_keras(tiny_model_path, tmp_path, ("float32", "int8"), crops)
    reference = KerasClassifier(tiny_model_path).predict(crops)
    float_result = verify_litert(files["float32"], reference, crops, min_agreement=1.0)
    assert float_result["max_abs_prob_diff"] < 1e-4
    int8 = load_classifier(files["int8"])
    assert isinstance(int8, LiteRTClassifier) and int8.image_size == 32
    probs = int8.predict(crops)
    assert probs.shape == (12, 5) and np.allclose(probs.sum(axis=1), 1, atol=0.05)
    with pytest.raises(VerificationError, match="below 1.01"):
        verify_litert(files["int8"], reference, crops, min_agreement=1.01)


def test_float_layers_are_found_by_keras_layer_name_and_unknown_names_are_refused():
    ops = ["model/backbone/rescale/mul", "model/backbone/stem_conv/Conv2D;model/backbone/stem_bn/FusedBatchNorm",
           "model/member_1/backbone/stem_bn_1/FusedBatchNorm", "model/backbone/stem_relu6/Relu6",
           "model/backbone/block1_expand_conv/Conv2D"]
    # A fused op names every layer it holds; a second run's copy of a layer carries a suffix.
    assert float_layer_nodes(ops, ("stem_conv", "stem_bn")) == ops[1:3]
    assert float_layer_nodes(ops, ("stem_relu6",)) == [ops[3]]
    with pytest.raises(ConversionError, match="no layer named 'stem'"):
        float_layer_nodes(ops, ("stem", "stem_conv"))


def test_empty_representative_set_is_refused(tmp_path, tiny_model_path):
    with pytest.raises(ConversionError, match="representative set is empty"):
        convert_keras(tiny_model_path, tmp_path, ("int8",), np.zeros((0, 32, 32, 3), np.uint8))


def test_bad_tflite_file_is_named(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="bad.tflite: not a loadable TFLite model"):
        load_classifier(bad)


def test_choose_variant_prefers_int8_only_when_it_holds():
    ok = {"top1_agreement": 0.995, "accuracy": 0.90, "reference_accuracy": 0.905}
    bad = {"top1_agreement": 0.95, "accuracy": 0.85, "reference_accuracy": 0.905}
    assert choose_variant({"int8": ok, "dynamic": ok}, "auto")[0] == "int8"
    assert choose_variant({"int8": bad, "dynamic": ok}, "auto")[0] == "dynamic"
    assert choose_variant({"int8": bad}, "int8")[0] == "int8"
    assert choose_variant({"int8": bad, "int8_mixed": ok, "dynamic": ok}, "auto")[0] == "int8_mixed"


def test_unlabelled_verification_chooses_on_agreement_alone():
    close = {"top1_agreement": 0.995, "accuracy": None, "reference_accuracy": None}
    apart = {"top1_agreement": 0.97, "accuracy": None, "reference_accuracy": None}
    variant, reason = choose_variant({"int8": close, "dynamic": close}, "auto")
    assert variant == "int8" and "unlabelled" in reason
    assert choose_variant({"int8": apart, "int8_mixed": close}, "auto")[0] == "int8_mixed"
    assert choose_variant({"int8": apart}, "auto")[0] == "float32"


def test_int8_preparation_follows_the_config(tiny_model_path, config, crops):
    import keras

    off = replace(config, export=replace(config.export, bias_correction=False, qat_steps=0))
    assert int8_preparation(tiny_model_path, off, crops, crops[:0]) is None
    bias_only = replace(config, export=replace(config.export, qat_steps=0))
    model = keras.saving.load_model(tiny_model_path, compile=False)

    def kernels():
        return [np.array(w) for w in model.weights if "kernel" in w.path]

    before = kernels()
    int8_preparation(tiny_model_path, bias_only, crops, crops[:0])(model, ("stem_conv",))
    assert all(np.array_equal(a, b) for a, b in zip(kernels(), before))  # no fine-tuning: kernels unchanged


def test_export_writes_a_consistent_package(tmp_path, tiny_model_path, config):
    config = replace(config, data=replace(config.data, test_dirs=config.data.train_dirs),
                     export=replace(config.export, qat_steps=2, qat_images=8))
    report = export(tiny_model_path, config, tmp_path / "export", variants=("int8",), ship="int8",
                    calibration_images=8, verify_images=5)
    package = tmp_path / "export" / "package"
    description = check_package(package)
    assert description["variant"] == report["shipped"] == "int8"
    assert description["input"]["dtype"] == "uint8" and description["input"]["colour_order"] == "RGB"
    assert description["input"]["quantization"]["scale"] > 0 and description["float_layers"] == []
    assert description["bias_correction"] is True  # config.export's default
    assert description["crop"]["edge_margin_frac"] == config.stream.edge_margin_frac  # an app marks cut cells alike
    assert description["quantisation_aware_training"] == {"steps": 2, "learning_rate": 1e-5, "train_images": 8}
    data_set = "/".join(Path(config.data.train_dirs[0]).parts[-2:])  # not the exporting machine's whole path
    assert description["training"]["data"] == description["metrics"]["verified_on"] == data_set
    assert (package / "labels.txt").read_text().split() == ["eosinophil", "lymphocyte", "monocyte", "neutrophil",
                                                             "other"]
    card = (package / "MODEL_CARD.md").read_text()
    assert "Not a medical device" in card and "Quantisation-aware fine-tuning: before conversion" in card
    matrix = np.array(description["metrics"]["confusion_matrix"])
    assert matrix.shape == (5, 5) and matrix.sum() == 12  # the whole test set, though only 4 images verified
    assert f"monocyte {matrix[2, 2] / matrix[2].sum():.2f} (of {matrix[2].sum()})" in card
    assert json.loads((tmp_path / "export" / "verification.json").read_text())["n_images"] == 4  # one per class
    assert not [p for p in (tmp_path / "export").iterdir() if p.name.startswith(".package")]

    # An app reading only the package gets the same answers as hv's own classifier.
    crops = np.random.default_rng(5).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    app = app_predict(package, crops)
    ours = LiteRTClassifier(package / "model.tflite").predict(crops)
    assert [label for label, _ in app] == [OUTPUT_NAMES[i] for i in ours.argmax(1)]
    assert np.allclose([p for _, p in app], ours.max(1), atol=1e-6)

    (package / "labels.txt").write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(PackageError, match="differs from model.json"):
        check_package(package)
    (package / "labels.txt").unlink()
    with pytest.raises(PackageError, match="incomplete package, missing labels.txt"):
        check_package(package)


def test_test_sets_together_compare_both_models_on_the_same_cells():
    # 10 four-class cells (int8 right on 8, Keras on 9) and 10 cells outside the four (int8 flags 5, Keras 10):
    # the sets together compare the two models on the 10 four-class cells only, 80 against 90 %.
    four, other = np.zeros((5, 5), int), np.zeros((5, 5), int)
    four[0, 0], four[0, 3] = 8, 2
    four_keras = four.copy()
    four_keras[0, 0], four_keras[0, 3] = 9, 1
    other[4, 4], other[4, 1] = 5, 5
    other_keras = np.zeros((5, 5), int)
    other_keras[4, 4] = 10
    tests = {"lab/TEST": {"confusion_matrix": four.tolist(), "reference_confusion_matrix": four_keras.tolist(),
                          "accuracy": 0.8, "reference_accuracy": 0.9, "top1_agreement": 0.9},
             "lab/OTHER": {"confusion_matrix": other.tolist(), "reference_confusion_matrix": other_keras.tolist(),
                           "accuracy": 0.5, "reference_accuracy": 1.0, "top1_agreement": 0.5}}
    summary = summarise_test_sets(tests)
    assert summary["n_images"] == 10
    assert summary["accuracy"] == pytest.approx(0.8) and summary["reference_accuracy"] == pytest.approx(0.9)
    assert summary["top1_agreement"] == pytest.approx(0.7)  # over all 20 images: needs no labels
    assert summary["per_source"]["lab/OTHER"] == {"n_images": 10, "accuracy": 0.5, "reference_accuracy": 1.0,
                                                  "top1_agreement": 0.5}
    assert summarise_test_sets({})["accuracy"] is None


def test_model_card_names_the_most_frequent_mistakes():
    matrix = [[8, 0, 0, 2], [0, 10, 0, 0], [0, 0, 6, 4], [1, 0, 0, 9]]
    names = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    assert frequent_confusions(matrix, names) == ("monocyte taken for neutrophil (4 of 10); "
                                                  "eosinophil taken for neutrophil (2 of 10)")
    assert per_class_recall(matrix, names).startswith("eosinophil 0.80 (of 10), lymphocyte 1.00 (of 10)")


def test_the_package_says_when_every_crop_is_recoloured():
    auto = crop_description(Config())
    always = crop_description(override(Config(), **{"locator.stain_correction": "always"}))
    assert always["stain_correction"] == "always" and "always" not in auto["stain_correction_how"]
    assert always["stain_correction_how"].startswith(auto["stain_correction_how"])
    assert "every other crop is turned by R" in always["stain_correction_how"]


def test_the_variant_is_chosen_on_validation_and_test_is_scored_after(tmp_path, tiny_model_path, config):
    config = replace(config, data=replace(config.data, val_fraction=0.34), export=replace(config.export, qat_steps=0))
    # As hv train saves it: the split is rebuilt from the model's config, whatever today's says.
    saved = {"train": {"seed": config.train.seed}, "data": {"val_fraction": 0.34}}
    tiny_model_path.with_suffix(".config.json").write_text(json.dumps(saved))
    report = export(tiny_model_path, replace(config, data=replace(config.data, val_fraction=0.5)),
                    tmp_path / "export", variants=("float32",), calibration_images=4)
    assert report["chosen_on"].startswith("the validation split the model's training held out (seed 0")
    assert report["n_images"] == 4  # one of the three fields of each class, held out as hv train holds it out
    test_name = "/".join(Path(config.data.test_dirs[0]).parts[-2:])
    assert list(report["test"]) == [test_name] and np.sum(report["test"][test_name]["confusion_matrix"]) == 12
    assert "scored once on each test set" in (tmp_path / "export" / "verification.md").read_text()


def test_tflite_variants_agree_with_a_model_whose_answers_vary(tmp_path, learned_model):
    from hv.preprocess import field_to_model_input, read_image_rgb

    model_path, config, test_dir = learned_model
    paths = sorted(test_dir.rglob("*.png"))
    crops = np.stack([field_to_model_input(read_image_rgb(str(p)), config)[0] for p in paths])
    keras_answers = load_classifier(model_path).predict(crops).argmax(1)
    assert len(set(keras_answers.tolist())) == 4  # the reference itself tells the classes apart
    files = convert_keras(model_path, tmp_path, ("float32", "int8"), crops, ())
    # float32 must give the Keras answers. Plain int8 of this tiny model agrees on 0.8-1.0 of the
    # crops, depending on the run's training (CPU training is not bit-reproducible); a conversion
    # bug (colour order, scaling, a wrong input) gives about chance, 0.25.
    for variant, least in (("float32", 0.97), ("int8", 0.75)):
        answers = LiteRTClassifier(files[variant]).predict(crops).argmax(1)
        assert np.mean(answers == keras_answers) >= least, variant


def _lab(folder: Path, count: int, cast=(1.0, 0.75, 0.8)) -> Path:
    """Unlabelled fields of a "new lab" with a colour cast, in one flat folder (no classes)."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"field{i}.png"), cv2.cvtColor(draw_field(rng, i % 4, cast=cast), cv2.COLOR_RGB2BGR))
    return folder


def test_new_lab_crops_calibrate_and_verify_on_separate_images(tmp_path, config):
    lab = _lab(tmp_path / "my_lab", 16)
    config = replace(config, export=replace(config.export, qat_steps=3, qat_images=6))
    data = new_lab_data([str(lab)], config, ("int8",), calibration_images=5, verify_images=None)
    assert len(data.calibration) == 5 and len(data.tuning) == 6  # 12 images of one cell each: 5 + 6 of them
    assert len(data.verification) == 4 and data.labels is None  # the quarter held out: 4 images, 4 cells
    used = np.concatenate([data.calibration, data.tuning])
    assert not any(np.array_equal(v, u) for v in data.verification for u in used)
    assert data.training["adapted_to"].endswith("my_lab") and data.training["counts"] == {}
    with pytest.raises(DataError, match="needs at least 4"):
        new_lab_data([str(_lab(tmp_path / "small", 3))], config, ("int8",), None, None)


def test_export_for_a_new_lab_needs_no_labelled_data(tmp_path, tiny_model_path, config, monkeypatch):
    lab = _lab(tmp_path / "my_lab", 16)
    gone = str(tmp_path / "training data on another machine")
    config = replace(config, data=replace(config.data, train_dirs=(gone,), test_dirs=(gone,)),
                     export=replace(config.export, qat_steps=2, qat_images=4))
    seen = {}
    convert = mobile.export.convert_keras

    def spy(model_path, out_dir, variants, calibration, *args):
        seen["calibration"] = calibration
        return convert(model_path, out_dir, variants, calibration, *args)

    def tune(model, reference, tuning, calibration, **kwargs):  # the tuning itself: test_quantisation_aware.py
        seen["tuning"] = tuning

    monkeypatch.setattr(mobile.export, "convert_keras", spy)
    monkeypatch.setattr(mobile.export, "fine_tune_for_int8", tune)
    report = export(tiny_model_path, config, tmp_path / "export", variants=("int8",), ship="int8",
                    calibration_images=6, lab_data=[str(lab)])
    # Calibrated and fine-tuned on the new lab's cells: their colour cast, not the training lab's.
    for crops in (seen["calibration"], seen["tuning"]):
        assert crops[..., 1].mean() < 0.85 * crops[..., 0].mean()  # green under red
    assert len(seen["calibration"]) == 6 and len(seen["tuning"]) == 4
    assert report["test"] == {} and report["n_images"] == 4 and "my_lab" in report["chosen_on"]
    assert report["variants"]["int8"]["accuracy"] is None and report["variants"]["int8"]["top1_agreement"] >= 0
    assert "accuracy is not measured" in (tmp_path / "export" / "verification.md").read_text()
    description = check_package(tmp_path / "export" / "package")
    assert description["variant"] == report["shipped"] and description["metrics"]["accuracy"] is None
    assert description["quantisation_aware_training"]["images_from"].endswith("my_lab")  # fine-tuned on its cells
    card = (tmp_path / "export" / "package" / "MODEL_CARD.md").read_text()
    assert "adapted without labels to the cells of" in card and "Not scored on labelled cells" in card


def test_an_average_of_runs_is_tuned_run_by_run_and_converts_to_int8(tmp_path, two_runs, config, monkeypatch):
    import keras

    from hv.model import average_models

    average_models([keras.saving.load_model(p, compile=False) for p in two_runs]).save(tmp_path / "average.keras")
    tuned = []  # the tuning itself is tested on one model (tests/mobile/test_quantisation_aware.py)
    monkeypatch.setattr(mobile.export, "fine_tune_for_int8",
                        lambda model, reference, *args, **kwargs: tuned.append((model.name, reference.name)))
    config = replace(config, export=replace(config.export, qat_steps=2))
    crops = np.random.default_rng(5).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    prepare = int8_preparation(tmp_path / "average.keras", config, crops, crops)
    files = convert_keras(tmp_path / "average.keras", tmp_path, ("int8",), crops, (), prepare)
    assert tuned == [("member_0", "member_0"), ("member_1", "member_1")]  # each run towards its own float self
    int8 = LiteRTClassifier(files["int8"]).predict(crops)
    assert np.abs(int8 - KerasClassifier(tmp_path / "average.keras").predict(crops)).max() < 0.1


def test_int8_mixed_of_an_average_keeps_each_runs_stem_float(tmp_path, two_runs):
    """int8_mixed keeps the named layers float and quantises the rest. Runs of one recipe share
    their frozen stem; the converter merges it and each run's own stem_bn (rebased per run) is
    left apart: the default float layers name it."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from hv.config import ExportConfig
    from hv.model import average_models

    runs = [keras.saving.load_model(p, compile=False) for p in two_runs]
    for layer in runs[1].get_layer("backbone").layers:  # the same frozen stem, another stem_bn
        if layer.name in ("stem_conv", "rescale"):
            layer.set_weights(runs[0].get_layer("backbone").get_layer(layer.name).get_weights())
    stem_bn = runs[1].get_layer("backbone").get_layer("stem_bn")
    stem_bn.set_weights([w * 1.5 + 0.1 for w in stem_bn.get_weights()[:2]] + stem_bn.get_weights()[2:])
    average_models(runs).save(tmp_path / "average.keras")
    crops64 = np.random.default_rng(0).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    kept_float = []  # the preparation (tests/mobile/test_bias_correction.py) is told which layers stay float
    files = convert_keras(tmp_path / "average.keras", tmp_path, ("int8_mixed",), crops64,
                          ExportConfig().int8_float_layers, lambda model, keep_float: kept_float.append(keep_float))
    assert kept_float == [ExportConfig().int8_float_layers]
    interpreter = Interpreter(model_path=str(files["int8_mixed"]))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    output_dtype = {tensors[op["outputs"][0]]["name"]: tensors[op["outputs"][0]]["dtype"]
                    for op in interpreter._get_ops_details()}
    stem = {name: dtype for name, dtype in output_dtype.items() if "stem_" in name}
    assert any("member_1" in name and "stem_bn" in name for name in stem)  # each run's stem_bn apart
    assert set(stem.values()) == {np.float32}
    block1 = {dtype for name, dtype in output_dtype.items() if "/block1_expand_conv" in name}
    assert block1 == {np.int8}
    probs = LiteRTClassifier(files["int8_mixed"]).predict(crops64)
    assert np.abs(probs - KerasClassifier(tmp_path / "average.keras").predict(crops64)).max() < 0.1
