"""The Setting class: defaults for MNIST, TOML and flag overrides, clear errors,
one description per setting, and model directories that refuse contradictions."""

import dataclasses
import json

import pytest

from conftest import REPO, run_cli
from mnist_folders.commands import settings_docs
from mnist_folders.errors import SettingError
from mnist_folders.data.folders import index_tree
from mnist_folders.settings import Setting, options
from mnist_folders.train.choices import resolve_settings

CLI = str(REPO / "mnist_keras.py")


def test_defaults_serve_mnist(small_data):
    s = Setting()
    assert str(s.train_path) == "mnist_data/train" and str(s.predict_path) == "mnist_data/tmp"
    assert (s.model, s.color_mode, s.validation_split, s.pipeline) == ("auto", "auto", 0.2, "tfdata")
    # On MNIST the automatic settings become the reference model on 28x28 grayscale.
    index = index_tree(small_data / "train")
    resolved = resolve_settings(Setting(data_dir=str(small_data)), index)
    assert resolved.input_shape == (28, 28, 1) and resolved.model == "strong"  # 4,000 training images
    assert (resolved.class_weight, resolved.batch_size, resolved.optimizer) == ("none", 64, "adam")


def test_toml_then_flags_override(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('train_dir = "my/train"\nepochs = 3\ncolor_mode = "rgb"\nimage_height = 64\n')
    s = Setting.from_sources(config, {"epochs": 5, "batch_size": None})
    assert s.epochs == 5 and s.batch_size == "auto"  # resolved from the training images by train
    assert (s.image_height, s.image_width, s.color_mode) == (64, "auto", "rgb") and str(s.train_path) == "my/train"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": -1}, "epochs must be at least 1. Received: epochs=-1"),
        ({"validation_split": 1.0}, r"validation_split must be in \(0, 1\)"),
        ({"model": "resnet"}, "model must be one of .*Received: model='resnet'"),
        ({"pipeline": "dali"}, "pipeline must be one of tfdata, idg"),
        ({"epochs": "ten"}, "epochs must be of type int"),
        ({"class_names": ["a"]}, "at least 2 classes"),
        ({"seed": -1}, r"seed must be in \[0, 2147483647\]"),
        ({"seed": 99999999999}, r"seed must be in \[0, 2147483647\]"),
        ({"learning_rate": float("nan")}, "learning_rate must be greater than 0"),
        ({"learning_rate": float("inf")}, "learning_rate must be greater than 0"),
        ({"image_height": True}, "image_height must be of type int"),
        ({"class_weight": "some"}, "class_weight must be one of auto, none, balanced"),
    ],
)
def test_invalid_values_name_the_value(values, message):
    with pytest.raises(SettingError, match=message):
        Setting.from_dict(values)


def test_unknown_toml_key_suggests_the_closest(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("epoch = 3\n")
    with pytest.raises(SettingError, match="unknown setting 'epoch' \\(did you mean 'epochs'\\?\\)"):
        Setting.from_sources(config)


def test_every_setting_is_described_once_and_the_generated_docs_are_current():
    assert settings_docs.main(["--check"]) == 0, "run: python -m mnist_folders.commands.settings_docs"
    readme = (REPO / "docs" / "cli-reference.md").read_text()
    for name in options():
        assert f"| `{name}` |" in readme
        assert f"\n{name} " in (REPO / "setting.py").read_text()


def test_help_without_a_mode_is_short_and_each_mode_fits_a_screen_naming_what_it_reads():
    from mnist_folders.commands.arguments import MODE_GROUPS

    plain = run_cli(CLI, "--help").stdout
    assert len(plain.splitlines()) < 80 and "--epochs" not in plain and "--mode MODE --help" in plain
    modes = ("train", "evaluate", "predict", "lr_find", "check", "export", "explain", "serve")
    helps = {mode: run_cli(CLI, "--mode", mode, "--help").stdout for mode in modes}
    for mode, out in helps.items():
        assert len(out.splitlines()) <= 60, (mode, len(out.splitlines()))  # one screen
        assert "serve  " not in out or mode == "serve"  # the other modes' descriptions are not repeated
        for f in dataclasses.fields(Setting):  # every setting the mode reads is named: described, or listed
            if f.metadata["option"].group in MODE_GROUPS[mode]:
                assert "--" + f.name.replace("_", "-") in out, (mode, f.name)
    assert "--epochs EPOCHS" in helps["train"] and "(default: auto)" in helps["train"] and "--resume" in helps["train"]
    assert "--seed" in helps["train"].split("more settings --mode train reads")[1]  # listed, not described
    assert "--port" not in helps["train"] and "--watch" not in helps["train"]
    assert "--port" in helps["serve"] and "--epochs" not in helps["serve"] and "--resume" not in helps["serve"]
    # a run option of several modes says what it does in this one
    assert "check:" not in helps["train"] and "exit 2 on leakage" in helps["check"]


@pytest.mark.parametrize("args, line", [
    (("--mode", "train", "--watch"), "error: --watch is read by --mode predict, not train"),
    (("--mode", "predict", "--resume"), "error: --resume is read by --mode train, not predict"),
    (("--mode", "evaluate", "--format", "onnx"), "error: --format is read by --mode train and export, not evaluate"),
    (("--mode", "train", "--epoch", "3"), "error: unrecognized arguments: --epoch 3"),  # no abbreviations
])
def test_an_option_of_another_mode_or_an_abbreviation_is_a_usage_error(args, line):
    result = run_cli(CLI, *args, check=False)
    assert result.returncode == 2 and result.stderr.strip().endswith(line), result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the short usage line and the error


def test_saved_setting_takes_only_what_the_user_chose(trained_model):
    saved = Setting.from_dict(json.loads((trained_model / "setting.json").read_text()))
    moved = Setting.for_model(saved, {"data_dir": "elsewhere", "invert": "true"})
    assert str(moved.test_path) == "elsewhere/test" and moved.invert == "true"
    assert moved.input_shape == saved.input_shape and moved.model == saved.model


@pytest.mark.parametrize("flag, value", [("--image-height", "32"), ("--color-mode", "rgb"),
                                         ("--class-names", "a,b"), ("--model", "mlp")])
@pytest.mark.parametrize("mode", ["evaluate", "predict"])
def test_contradicting_a_trained_model_is_refused(mode, flag, value, trained_model):
    result = run_cli(CLI, "--mode", mode, "--model-dir", str(trained_model), flag, value, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "trained with" in result.stderr and flag[2:].replace("-", "_") in result.stderr
