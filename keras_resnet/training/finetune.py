"""Fine-tuning a pretrained ResNet on an image folder, in two stages.

Stage 1 trains a new classifier (sized from the folder's classes) on a frozen
backbone whose BatchNorms run in inference mode. Stage 2 unfreezes the
backbone (all of it, or the stages from ``unfreeze_from`` on) and trains it
with the classifier at a lower learning rate; its BatchNorms stay frozen
(statistics and scale/offset) unless ``train_bn``. Each stage is one ordinary
:class:`~keras_resnet.training.trainer.Trainer` run in a subdirectory of the
run directory (``stage1/``, ``stage2/``), so both checkpoint and resume as any
training run does; stage 1's final weights (``stage1/final.weights.h5``, written
atomically) are where stage 2 starts. Rerunning the same command resumes
whichever stage was interrupted.

The input preprocessing is the one the weights were trained with
(:data:`keras_resnet.weights.PREPROCESSING`), not the folder pipeline's
default, and the export records it with the class names. keras.applications'
"caffe" weights expect BGR: the stem kernel's input channels are reversed
once after loading, so the fine-tuned model takes RGB like every other model
of this package, with the caffe means subtracted and no scaling.

This module imports neither Keras nor TensorFlow (the command line checks its
flags and the folder first); :mod:`keras_resnet.training.finetune_stage` holds
the Keras side.
"""

from __future__ import annotations

import dataclasses
import os

from keras_resnet.training.config import ConfigError, TrainConfig, resolve_config, setting

PREPROCESSING_CHOICES = ("auto", "caffe", "tf", "torch")
# Fine-tuning defaults that differ from the ImageNet recipe's (a small folder, a CPU).
DEFAULTS = {"batch_size": 32, "lr": 0.1, "schedule": "cosine", "epochs": 10}


@dataclasses.dataclass
class FinetuneConfig:
    """The fine-tuning settings beyond a :class:`TrainConfig` (stage 2's length is its
    ``epochs``/``steps``; stage 1's learning rate is its ``lr``)."""

    weights: str = setting(
        help="pretrained weights: 'imagenet' (keras.applications' ResNet50/101/152, "
             "downloaded once by Keras) or a file: a keras.applications .h5, a "
             "torchvision/timm .pth or .safetensors state dict, our .weights.h5 of a "
             "headless model (include_top=False), or a trained model's .keras file (an "
             "export's model.keras: every layer but its classifier)")
    head_epochs: int = setting(3, help="stage 1: epochs training the new classifier on the "
                                        "frozen backbone")
    stage2_lr: float = setting(0.1, help="stage 2's learning rate as a fraction of --lr")
    unfreeze_from: int = setting(
        1, help="stage 2 trains the network's stages N..4 and the classifier; 0 also the "
                "stem", choices=(0, 1, 2, 3, 4))
    train_bn: bool = setting(
        False, help="stage 2: let the unfrozen BatchNorms adapt (batch statistics in training, "
                    "moving averages and scale/offset updated); default: frozen, as for "
                    "small batches")
    preprocessing: str = setting(
        "auto", help="input preprocessing: auto (what the weights declare: caffe for "
                     "keras.applications' ResNets, torch for torchvision/timm; our own files: "
                     "torch), caffe, tf or torch", choices=PREPROCESSING_CHOICES)


def resolve(base, ft):
    """Check both configurations and fill in the fine-tuning defaults.

    Returns:
        ``(base, ft)``: a resolved :class:`TrainConfig` (recipe ``imagenet``,
        ``--data-dir`` required) and the checked :class:`FinetuneConfig`.

    Raises:
        ConfigError: naming the flag, the value received and what is allowed.
    """
    if base.data_dir is None:
        raise ConfigError("--data-dir is required: fine-tuning trains on an image folder "
                          "DIR/train/<class>/ (and DIR/val/<class>/).")
    if ft.weights is None:
        raise ConfigError("--weights is required: 'imagenet' or the path of a weights file.")
    if ft.weights != "imagenet" and not os.path.isfile(ft.weights):
        raise ConfigError(f"--weights {ft.weights}: no such file; expected 'imagenet' or the "
                          "path of a weights file (.h5, .weights.h5, .pth, .safetensors).")
    if ft.preprocessing not in PREPROCESSING_CHOICES:
        raise ConfigError(f"--preprocessing {ft.preprocessing!r}: expected one of "
                          f"{', '.join(PREPROCESSING_CHOICES)}.")
    if ft.unfreeze_from not in (0, 1, 2, 3, 4):
        raise ConfigError(f"--unfreeze-from {ft.unfreeze_from!r}: expected 0 (the stem and "
                          "every stage), 1, 2, 3 or 4.")
    for name in ("head_epochs",):
        value = getattr(ft, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer; "
                              f"received {value!r}.")
    if isinstance(ft.stage2_lr, bool) or not isinstance(ft.stage2_lr, (int, float)) \
            or not 0 < ft.stage2_lr <= 1:
        raise ConfigError(f"--stage2-lr must be in (0, 1]; received {ft.stage2_lr!r}.")
    if base.preact and ft.weights == "imagenet":
        raise ConfigError("--preact with --weights imagenet (keras.applications' V2 layout) is "
                          "not offered by fine-tuning; use the post-activation ResNets.")
    base = dataclasses.replace(base, recipe="imagenet", zero_init="off")
    from keras_resnet.weights_torch import is_torch_weights, torch_layout

    if is_torch_weights(ft.weights) and base.depth is not None:
        # torchvision/timm bottlenecks stride on the 3x3 (the file cannot say so itself).
        try:
            extras = torch_layout(base.depth, base.model_extras or {}, "imagenet")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        base = dataclasses.replace(base, model_extras=extras)
    for key, value in DEFAULTS.items():
        if getattr(base, key) is None and not (key == "epochs" and base.steps is not None):
            base = dataclasses.replace(base, **{key: value})
    if base.image_size is None:
        base = dataclasses.replace(base, image_size=224)
    return resolve_config(base), ft


def check_folder(data_dir, image_size, val_split=None, seed=0):
    """The class names of an image folder fit for fine-tuning, or a one-line ConfigError.

    Refused: fewer than two classes, a class folder without images (in train/ or
    val/), a class in val/ absent from train/, and images smaller than
    ``image_size`` on either side (read from the file headers only).
    """
    from keras_resnet.data.common import DataError
    from keras_resnet.data.folders import class_folders, list_images, load_folder

    if not os.path.isdir(data_dir):
        raise ConfigError(f"--data-dir {data_dir} is not an existing folder; expected "
                          "DIR/train/<class>/ (and DIR/val/<class>/) image folders.")
    train = os.path.join(data_dir, "train")
    roots = {"train": train if os.path.isdir(train) else data_dir}
    if os.path.isdir(os.path.join(data_dir, "val")):
        roots["val"] = os.path.join(data_dir, "val")
    names = class_folders(roots["train"])
    if len(names) < 2:
        raise ConfigError(f"--data-dir {data_dir}: found {len(names)} class folder"
                          f"{'s' * (len(names) != 1)} ({', '.join(names) or 'none'}) in "
                          f"{roots['train']}; a classifier needs at least two classes, one "
                          "folder of images each.")
    if "val" in roots:
        extra = sorted(set(class_folders(roots["val"])) - set(names))
        if extra:
            raise ConfigError(f"--data-dir {data_dir}: val/ has class folders that train/ "
                              f"lacks: {', '.join(extra[:5])}; the classifier can only learn "
                              "the classes of train/.")
    for root in roots.values():
        for name in class_folders(root):
            if not list_images(os.path.join(root, name)):
                raise ConfigError(f"--data-dir {data_dir}: the class folder "
                                  f"{os.path.join(root, name)} holds no image files.")
    try:
        folder = load_folder(data_dir, image_size, val_split=val_split, seed=seed)
    except DataError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    small = _small_images(list(folder.train.images) + list(folder.val.images), image_size)
    if small:
        path, (w, h) = small[0]
        raise ConfigError(f"--data-dir {data_dir}: {len(small)} image(s) are smaller than the "
                          f"input size {image_size}x{image_size}, e.g. {path} ({w}x{h}); "
                          f"pass a smaller --image-size (at least 32) or enlarge the images.")
    return names


def _small_images(paths, size):
    """``[(path, (width, height)), ...]`` of the images with a side below ``size``."""
    from PIL import Image

    small = []
    for path in paths:
        try:
            with Image.open(path) as image:
                dims = image.size
        except Exception:  # unreadable files are the pipeline's to skip and count
            continue
        if min(dims) < size:
            small.append((path, dims))
    return small


def finetune(base, ft, *, verbose=None, callbacks=None):
    """Fine-tune pretrained weights on an image folder: stage 1, then stage 2.

    Args:
        base: a :class:`TrainConfig` with ``data_dir`` (stage 2's length, ``lr``,
            batch, hardware and output settings; ``run_dir`` holds both stages).
        ft: a :class:`FinetuneConfig`.
        verbose: as :class:`~keras_resnet.training.trainer.Trainer`'s.
        callbacks: Keras callbacks for both stages.

    Returns:
        Stage 2's metrics (with ``export_dir``), plus ``stage1`` (stage 1's metrics, None
        when it had finished before) and ``run_dir``. Each stage's trained weights are in
        ``<run_dir>/stage1/final.weights.h5`` and ``<run_dir>/stage2/final.weights.h5``.

    Raises:
        ConfigError: bad settings or folder (nothing written); OSError: the
            ``"imagenet"`` weights could not be downloaded (the message names the
            file to fetch and ``--weights PATH``).
    """
    base, ft = resolve(base, ft)
    check_folder(base.data_dir, base.image_size, base.val_split, base.seed)
    from keras_resnet.training import finetune_stage

    return finetune_stage.run_stages(base, ft, verbose=verbose, callbacks=callbacks)[0]
