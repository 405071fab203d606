"""The last lines of a training run: accuracy, what was written where, what to run next.

Shared by the training command line and the search's final retraining.
"""

from __future__ import annotations

import os
import shlex
import sys


def shell_command(args):
    """A command line that works pasted into a plain shell: this interpreter, quoted paths."""
    return shlex.join([sys.executable, *args])


def _script(name):
    """The path of ``recipes/<name>`` to print: relative to the working directory when inside it."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "recipes", name)
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def report(trainer, metrics):
    """The run's last lines: accuracy, what was written where (and how big), what to run next."""
    from keras_resnet.training.rundir import describe

    speed = metrics["train_images_per_sec"]
    print(f"\nTest accuracy: {metrics['test_accuracy']:.4f} ({metrics['dataset']}, "
          f"{metrics['epochs_completed']} epochs"
          + (f", {speed:.0f} train images/s)" if speed else ")"))
    print(f"Wrote {describe(trainer.run_dir)}")
    export_dir = metrics.get("export_dir")
    if export_dir:
        print(f"Wrote {describe(export_dir)}")
        keras_file = os.path.join(export_dir, "model.keras")
        print(f"  Keras:       import keras, keras_resnet.layers; "
              f"keras.saving.load_model({keras_file!r})")
        if os.path.isdir(os.path.join(export_dir, "saved_model")):
            print(f"  SavedModel:  tf.saved_model.load({os.path.join(export_dir, 'saved_model')!r})"
                  ".signatures['serving_default'](images=uint8 RGB batch)['probabilities']")
        if os.path.exists(os.path.join(export_dir, "model.tflite")):
            print(f"  TFLite:      {os.path.join(export_dir, 'model.tflite')} (uint8 RGB input, "
                  "preprocessing inside)")
        print(f"  metadata:    {os.path.join(export_dir, 'metadata.json')}")
        examples = write_examples(trainer.data, os.path.join(trainer.run_dir, "examples"))
        if examples:
            folder = os.path.dirname(examples[0])
            print("Classify images with it (a few test images were saved for you):\n  "
                  + shell_command([_script("predict.py"), export_dir])
                  + " " + shlex.quote(folder) + "/*.png")
    elif trainer.smoke and not trainer.config.no_export:
        print(f"Not exported: a run of {trainer.plan.total_steps} steps, shorter than one epoch "
              f"({trainer.plan.steps_per_epoch} steps), keeps no checkpoint and exports only "
              "with --export DIR.")


def write_examples(data, directory, n=5):
    """Save ``n`` raw test images as PNG files named ``<i>_<class>.png``; return their paths.

    They let a user try ``recipes/predict.py`` on the export straight away.
    """
    from PIL import Image
    import numpy as np

    try:
        images, labels = data.raw_test_images(n, across_classes=True)
    except Exception:  # noqa: BLE001 - examples are a convenience, never a failure
        return []
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        name = str(data.class_names[int(label)]).replace(os.sep, "_")
        path = os.path.join(directory, f"{i}_{name}.png")
        Image.fromarray(np.asarray(image, np.uint8)).save(path)
        paths.append(path)
    return paths
