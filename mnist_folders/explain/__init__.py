"""Explanations of a trained model's predictions: where in the image its evidence for a class lies."""
