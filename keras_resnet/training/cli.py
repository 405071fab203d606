"""The command line of ``recipes/cifar10.py`` and ``recipes/imagenet.py``.

Parsing and checking the flags imports neither keras nor TensorFlow, so
``--help`` and bad input answer at once; the backend (``--backend`` or
``KERAS_BACKEND``) and TensorFlow's CPU settings are fixed before keras is
imported.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from keras_resnet import specs
from keras_resnet.training.config import (BACKENDS, DATASETS, DIGITS_DEFAULTS, PRECISIONS,
                                          REFERENCE_BATCH, SCHEDULES, ZERO_INIT, ConfigError,
                                          RunDirError, TrainConfig, TrainingDiverged,
                                          resolve_config)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: ...)`` unless the help text already names the default."""

    def _get_help_string(self, action):
        if "default" in (action.help or ""):
            return action.help
        if action.default is None:
            return f"{action.help} (default: none)"
        if action.default is False:
            return f"{action.help} (default: off)"
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(recipe):
    """The argparse parser of ``recipes/<recipe>.py``; every flag shows its default."""
    ref = REFERENCE_BATCH[recipe]
    cifar = recipe == "cifar10"
    if cifar:
        description = ("Train a CIFAR ResNet (He et al. 2015, sec. 4.2) with the paper's recipe: "
                       "SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by 10 at "
                       "32k and 48k iterations, 64k iterations, pad-4 crop + flip. "
                       "`--dataset digits` trains on scikit-learn's bundled digits (no download).")
    else:
        description = ("Train an ImageNet ResNet (He et al. 2015, Goyal et al. 2017): SGD momentum "
                       "0.9, weight decay 1e-4, batch 256, lr 0.1 x batch/256, 90 epochs divided "
                       "by 10 at 30/60/80 (or cosine), 5 warm-up epochs above batch 256.")
    datasets = DATASETS[recipe]
    p = Parser(prog=f"recipes/{recipe}.py", description=description,
               formatter_class=HelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default=None,
                   help=f"one of {', '.join(datasets)} (default: {datasets[0]})")
    d.add_argument("--data-dir", default=None,
                   help="train on image folders DIR/train/<class>/ and DIR/val/<class>/ "
                        "instead of --dataset")
    if cifar:
        d.add_argument("--holdout", action="store_true",
                       help="evaluate on 10%% of the training images held out (CIFAR-10: the "
                            "paper's 45k/5k split) instead of the test set")
    d.add_argument("--image-size", type=int, default=None,
                   help="input size for --dataset synthetic and --data-dir "
                        f"(default: {32 if cifar else 224})")
    d.add_argument("--synthetic-examples", type=int, default=None,
                   help="training images of --dataset synthetic (random pixels and labels; "
                        "the test set has a quarter as many) (default: 1024)")
    m = p.add_argument_group("model (keras_resnet.ResNet)")
    m.add_argument("--depth", type=int, default=None,
                   help=f"network depth (default: {20 if cifar else 50})")
    m.add_argument("--preact", action="store_true", help="full pre-activation units (He et al. 2016)")
    m.add_argument("--width", type=float, default=1.0, help="widening factor k of every stage")
    m.add_argument("--block", choices=specs.BLOCKS, default=None,
                   help="block kind (default: from the depth table)")
    m.add_argument("--shortcut", choices=specs.SHORTCUTS, default=None,
                   help="shortcut option (default: A for CIFAR basic nets, else B)")
    m.add_argument("--ordering", choices=specs.ORDERINGS, default=None,
                   help="unit ordering of He et al. 2016, Fig. 4 (default: post; --preact: "
                        "full_preact)")
    m.add_argument("--skip", choices=specs.SKIPS, default=None,
                   help="shortcut function of He et al. 2016, Fig. 2 (default: identity)")
    m.add_argument("--gate-bias", type=float, default=None,
                   help="initial gate bias b_g of the gating skips (default: -6)")
    m.add_argument("--plain", action="store_true", help="the plain twin: the same layers, no shortcuts")
    m.add_argument("--drop-path-rate", type=float, default=0.0,
                   help="stochastic depth, linear decay over the blocks")
    m.add_argument("--zero-init", choices=ZERO_INIT, default="auto",
                   help=f"zero-initialise the last BatchNorm gamma of each block; auto: when "
                        f"the global batch is above {ref} (Goyal et al. 2017)")
    t = p.add_argument_group("optimisation")
    length = p.add_mutually_exclusive_group()
    if cifar:
        length.add_argument("--epochs", type=int, default=None,
                            help="training epochs (default: 64k iterations of batch 128, "
                                 "i.e. --steps 64000 x 128 / batch; digits: "
                                 f"{DIGITS_DEFAULTS['epochs']} epochs)")
        length.add_argument("--steps", type=int, default=None,
                            help="training iterations instead of --epochs (default: 64000 at "
                                 "batch 128)")
    else:
        length.add_argument("--epochs", type=int, default=None, help="training epochs (default: 90)")
        length.add_argument("--steps", type=int, default=None,
                            help="training iterations instead of --epochs")
    t.add_argument("--batch-size", type=int, default=None,
                   help=f"global batch, split over all replicas (default: {ref}"
                        + (f"; digits: {DIGITS_DEFAULTS['batch_size']})" if cifar else ")"))
    t.add_argument("--lr", type=float, default=None,
                   help=f"learning rate at batch {ref}; the run uses lr x batch/{ref} "
                        f"(default: 0.1)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    t.add_argument("--weight-decay", type=float, default=1e-4,
                   help="L2 penalty weight_decay/2 x sum(w^2) over conv and dense kernels, "
                        "added to the loss (the papers' SGD weight decay)")
    if cifar:
        t.add_argument("--schedule", choices=SCHEDULES, default=None,
                       help="step: lr/10 at 50%% and 75%% of the run (32k, 48k of 64k); "
                            "cosine: half-cosine to 0 (default: step; digits: "
                            f"{DIGITS_DEFAULTS['schedule']}). Depth >= 110 warms up at lr/10 "
                            "for 400 iterations of batch 128")
    else:
        t.add_argument("--schedule", choices=SCHEDULES, default=None,
                       help="step: lr/10 at epochs 30, 60, 80 of 90 (scaled to --epochs); "
                            "cosine: half-cosine to 0 (default: step)")
        t.add_argument("--warmup-epochs", type=float, default=None,
                       help="linear warm-up from lr to lr x batch/256 (default: 5 when the "
                            "batch is above 256, else 0)")
    t.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing epsilon")
    r = p.add_argument_group("hardware, speed and reproducibility")
    r.add_argument("--backend", choices=BACKENDS, default=None,
                   help="Keras backend (default: $KERAS_BACKEND, else tensorflow); jax runs "
                        "--dataset digits and synthetic without TensorFlow")
    r.add_argument("--gpus", type=int, default=None,
                   help="data-parallel over N GPUs (tf.distribute.MirroredStrategy, per worker "
                        "under TF_CONFIG; jax: keras.distribution.DataParallel); 0: CPU "
                        "(default: 1 GPU if present, else the CPU)")
    r.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="mixed_float16 uses loss scaling, mixed_bfloat16 none; the classifier "
                        "and the loss stay float32")
    r.add_argument("--xla", action="store_true", help="XLA-compile the forward and backward "
                   "pass (TensorFlow; the JAX backend always compiles with XLA)")
    r.add_argument("--sync-bn", action="store_true",
                   help="BatchNorm statistics over all replicas (small per-replica batches)")
    r.add_argument("--remat", action="store_true",
                   help="recompute each block's activations in the backward pass: less memory "
                        "for very deep nets, about one more forward pass of compute (JAX)")
    r.add_argument("--steps-per-execution", type=int, default=None,
                   help="train steps per compiled call (default: 4 on CPU, 32 on GPU)")
    r.add_argument("--log-every", type=int, default=None,
                   help="read metrics back from the device every N steps: progress and the NaN "
                        "check (default: 4 on CPU, 128 on GPU)")
    r.add_argument("--seed", type=int, default=0,
                   help="seed of initialisation, data order and augmentation")
    det = r.add_mutually_exclusive_group()
    det.add_argument("--deterministic", dest="deterministic", action="store_const", const=True,
                     default=None, help="deterministic ops: bit-identical reruns on the same "
                     "machine and software (default: on for the CPU, off on GPUs, where it "
                     "selects slower kernels)")
    det.add_argument("--nondeterministic", dest="deterministic", action="store_const",
                     const=False, help="allow nondeterministic (faster) ops "
                                       "(default: on GPUs)")
    o = p.add_argument_group("output")
    o.add_argument("--run-dir", default=None,
                   help="run directory; rerunning with the same one resumes it "
                        "(default: runs/<dataset>_<model>_<time>)")
    o.add_argument("--export", default=None,
                   help="export directory (default: saved_models/<run-name>; runs shorter than "
                        "one epoch export only when this is given)")
    o.add_argument("--no-export", action="store_true", help="do not export the trained model")
    o.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def config_from_args(recipe, argv=None):
    """Parse ``argv`` into a :class:`TrainConfig` (argparse exits 2 on syntax errors)."""
    values = vars(build_parser(recipe).parse_args(argv))
    extras = {}
    for name in ("block", "ordering", "skip", "gate_bias"):
        value = values.pop(name)
        if value is not None:
            extras[name] = value
    return TrainConfig(recipe=recipe, model_extras=extras, **values)


def _error(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr)


def prepare_environment(config):
    """Environment variables that must be set before keras/TensorFlow/JAX are imported.

    * ``KERAS_BACKEND`` from ``--backend`` (else the user's, else tensorflow).
    * ``TF_ENABLE_ONEDNN_OPTS=1``: TensorFlow leaves its oneDNN CPU kernels off on
      some x86 CPUs (AMD among them); on, a 3x3 convolution's forward and backward
      pass took half the time on the 2-core development machines. It is read
      once, when TensorFlow is imported, hence here.
    * ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` for ``--deterministic`` under JAX.
    """
    if config.backend is not None:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != config.backend:
            pass   # too late to switch: make_engine reports the mismatch
        os.environ["KERAS_BACKEND"] = config.backend
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ["KERAS_BACKEND"] == "jax" and config.deterministic:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()


def shell_command(args):
    """A command line that works pasted into a plain shell: this interpreter, quoted paths."""
    return shlex.join([sys.executable, *args])


def _script(name):
    """The path of ``recipes/<name>`` to print: relative to the working directory when inside it."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "recipes", name)
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def main(recipe, argv=None):
    """Entry point of ``recipes/<recipe>.py``; return the process exit code.

    0: done; 1: the run failed (NaN loss, run directory not writable; the last good
    checkpoint is kept); 2: bad input (nothing written).
    """
    prog = f"recipes/{recipe}.py"
    try:
        config = config_from_args(recipe, argv)
    except SystemExit as e:   # argparse already printed its one-line error (or --help)
        return int(e.code or 0)
    try:
        resolve_config(config)   # the flag checks, before anything heavy is imported
    except ConfigError as e:
        _error(prog, e)
        return 2
    prepare_environment(config)
    from keras_resnet.training.trainer import Trainer

    try:
        trainer = Trainer(config)
    except ConfigError as e:
        _error(prog, e)
        return 2
    try:
        metrics = trainer.run()
    except (TrainingDiverged, RunDirError) as e:
        _error(prog, e)
        return 1
    if trainer.chief:
        report(trainer, metrics)
    return 0


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
        images, labels = data.raw_test_images(n)
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
