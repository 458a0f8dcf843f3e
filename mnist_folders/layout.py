"""The model directory's layout: every file name in it, once.

A model directory is self-describing; ``evaluate`` and ``predict`` need
nothing else::

    <model_dir>/
      setting.json        the Setting used (image size, color mode, model, ...),
                          with the automatic batch size, patience and epoch
                          cap resolved for the training images
      class_names.json    class names in label (output index) order
      best.weights.h5     weights of the epoch with the best val_accuracy
      best.json           that epoch and its val_accuracy
      last.keras          the full model (optimizer state included) after the
                          last completed epoch: what --resume continues from
      history.csv         one row per completed epoch: loss, accuracy,
                          val_loss, val_accuracy, seconds, and the
                          optimizer's step count after it (steps)
      dataset.json        the training images: counts per class, a digest of
                          their names and sizes (--resume compares it), files
                          ignored or unreadable, share with a light background
      calibration.json    the softmax temperature fitted on the validation
                          split, with the calibration error before and after
      export/             written by --mode export (SavedModel, TFLite, ONNX)
      explained/          --mode explain's Grad-CAM pictures (its default --output)
      report.html         written by evaluate: the evaluation to browse
      logs/<run>/         TensorBoard's event files, one folder per training run
                          (train with tensorboard = true; kept across runs)
      evaluation.json     written by evaluate
      predictions.csv     written by predict

How the files are written and read back: :mod:`mnist_folders.artifacts`
(JSON and CSV, staging and promotion) and :mod:`mnist_folders.networks.saved`
(the Keras checkpoints). This module imports nothing.
"""

SETTING = "setting.json"
CLASS_NAMES = "class_names.json"
BEST_WEIGHTS = "best.weights.h5"
BEST_INFO = "best.json"
LAST_MODEL = "last.keras"
HISTORY = "history.csv"
DATASET = "dataset.json"
EVALUATION = "evaluation.json"
PREDICTIONS = "predictions.csv"
CALIBRATION = "calibration.json"
EXPORT = "export"  # the folder --mode export writes (see mnist_folders.serve.deploy)
EXPLAINED = "explained"  # --mode explain's pictures, by default: removed with the model they show
LOGS = "logs"  # TensorBoard's event files, one sub-folder per training run (setting tensorboard = true)
# history.csv's columns; "steps" (the optimizer's step count after the epoch) ties each row to the last.keras
# of that epoch, and is absent from the histories of older versions.
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "steps"]
HISTORY_REQUIRED = HISTORY_FIELDS[:5]
# Figures and reports (mnist_folders.plots, mnist_folders.explain.report, the dataset audit, lr_find).
TRAINING_CURVES = "training_curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"
MISCLASSIFIED = "misclassified.png"
SAMPLES = "samples.png"
RELIABILITY = "reliability_diagram.png"
REPORT_HTML = "report.html"
CHECK_JSON = "check.json"
CHECK_FIGURE = "check_duplicates.png"
SUSPECT_CSV = "suspect_labels.csv"
SUSPECT_FIGURE = "suspect_labels.png"
LR_FIND_JSON = "lr_find.json"
LR_FIND_PNG = "lr_find.png"
QUARANTINE_MANIFEST = "manifest.json"  # in a --quarantine DIR, not the model directory
STAGING = ".staging"  # where a fresh run trains until its first checkpoint exists
# What one training run writes: replaced as a whole by the next run (see promote).
RUN_FILES = (SETTING, CLASS_NAMES, DATASET, BEST_WEIGHTS, BEST_INFO, LAST_MODEL, HISTORY, CALIBRATION,
             TRAINING_CURVES)
# Reports about a model: removed when a new run replaces it (they would describe the old one).
REPORTS = (EVALUATION, REPORT_HTML, CONFUSION_MATRIX, MISCLASSIFIED, RELIABILITY, SUSPECT_CSV, SUSPECT_FIGURE)
