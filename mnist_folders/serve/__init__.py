"""Using a trained model: evaluation, prediction, calibration, export, runtimes without TensorFlow, the watch."""
