"""The pictures show what they claim: values read back from the drawn figures."""

import re

import numpy as np
import pytest

from mnist_folders import plots


@pytest.fixture
def drawn(monkeypatch):
    """Every figure a plots function draws, captured before it is saved and closed."""
    figures = []
    save = plots._save

    def capture(figure, path):
        figures.append(figure)
        return save(figure, path)

    monkeypatch.setattr(plots, "_save", capture)
    return figures


def test_training_curves_plot_the_history(drawn, tmp_path):
    history = [{"epoch": e, "accuracy": 0.5 + 0.1 * e, "val_accuracy": 0.55 + 0.08 * e, "loss": 2.0 / e,
                "val_loss": 2.2 / e} for e in (1, 2, 3)]
    plots.training_curves(history, tmp_path / "curves.png")
    accuracy, loss = drawn[0].axes
    lines = {line.get_label(): line for line in accuracy.get_lines()}
    assert list(lines["training"].get_xdata()) == [1, 2, 3]
    assert list(lines["training"].get_ydata()) == pytest.approx([0.6, 0.7, 0.8])
    assert list(lines["validation"].get_ydata()) == pytest.approx([0.63, 0.71, 0.79])
    assert [line.get_ydata()[0] for line in loss.get_lines()] == pytest.approx([2.0, 2.2])
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_confusion_matrix_annotates_rows_as_true_classes(drawn, tmp_path):
    matrix = [[5, 1, 0], [2, 7, 0], [0, 3, 9]]
    plots.confusion_matrix(matrix, ["a", "b", "c"], tmp_path / "cm.png")
    axis = drawn[0].axes[0]
    shown = np.zeros((3, 3), dtype=int)
    for text in axis.texts:
        column, row = (int(round(v)) for v in text.get_position())
        shown[row, column] = int(text.get_text())
    assert shown.tolist() == matrix
    assert axis.get_ylabel() == "true class" and axis.get_xlabel() == "predicted class"
    assert np.array_equal(axis.images[0].get_array(), np.asarray(matrix))


def test_misclassified_grid_keeps_the_given_order_and_draws_the_images(drawn, tmp_path):
    images = np.zeros((3, 8, 8, 1), dtype=np.uint8)
    images[1, 2:6, 2:6] = 255
    plots.misclassified(images, ["1", "2", "3"], ["7", "5", "8"], [0.9, 0.8, 0.4], tmp_path / "m.png")
    axes = [axis for axis in drawn[0].axes if axis.get_title()]
    assert [axis.get_title() for axis in axes] == ["1 -> 7 (90%)", "2 -> 5 (80%)", "3 -> 8 (40%)"]
    assert np.array_equal(axes[1].images[0].get_array(), images[1, ..., 0])


def test_evaluate_draws_the_most_confident_mistakes_first(drawn, trained_model, small_data):
    from mnist_folders.artifacts import setting_for_model
    from mnist_folders.serve.evaluation import evaluate

    report = evaluate(setting_for_model({"model_dir": str(trained_model), "data_dir": str(small_data)}),
                      progress=False)
    confusion, grid = drawn[0], drawn[1]
    assert [int(t.get_text()) for t in confusion.axes[0].texts] == np.asarray(report.confusion).ravel().tolist()
    titles = [axis.get_title() for axis in grid.axes if axis.get_title()]
    confidences = [int(re.search(r"\((\d+)%\)", title).group(1)) for title in titles]
    assert len(titles) == min(40, report.images - round(report.accuracy * report.images))
    assert confidences == sorted(confidences, reverse=True) and confidences[0] > 50


def test_samples_figure_shows_the_first_images_of_each_class_one_row_per_class(drawn, tmp_path):
    from conftest import MNIST
    from mnist_folders.data.idx import load_split

    images, labels = load_split(MNIST, "train")
    images, labels = images[:200], labels[:200]
    plots.samples_per_class(images, labels, tmp_path / "samples.png", per_class=4)
    grid = np.array(drawn[0].axes).reshape(10, 4)  # created row by row
    for digit in range(10):
        members = np.flatnonzero(labels == digit)[:4]
        for axis, index in zip(grid[digit], members):
            assert axis.get_title() == str(digit)
            assert np.array_equal(axis.images[0].get_array(), images[index])
