"""The Setting class: defaults for MNIST, TOML and flag overrides, clear errors."""

from __future__ import annotations

import pytest

from mnist_folders.errors import SettingError
from mnist_folders.settings import Setting


def test_defaults_serve_mnist():
    s = Setting()
    assert s.input_shape == (28, 28, 1)
    assert str(s.train_path) == "mnist_data/train" and str(s.predict_path) == "mnist_data/tmp"
    assert (s.model, s.validation_split, s.pipeline) == ("cnn_64_128_256", 0.2, "tfdata")


def test_toml_then_flags_override(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('train_dir = "my/train"\nepochs = 3\ncolor_mode = "rgb"\nimage_height = 64\n')
    s = Setting.from_sources(config, {"epochs": 5, "batch_size": None})
    assert s.epochs == 5 and s.batch_size == 256  # None: the reference model's own default
    assert s.input_shape == (64, 28, 3) and str(s.train_path) == "my/train"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": -1}, "epochs must be at least 1. Received: epochs=-1"),
        ({"validation_split": 1.0}, r"validation_split must be in \(0, 1\)"),
        ({"model": "resnet"}, "model must be one of .*Received: model='resnet'"),
        ({"pipeline": "dali"}, "pipeline must be one of tfdata, idg"),
        ({"epochs": "ten"}, "epochs must be of type int"),
        ({"class_names": ["a"]}, "at least 2 classes"),
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
