"""The Keras side of fine-tuning: the two stage runs, the weights they start from, freezing.

See :mod:`keras_resnet.training.finetune` for the design. A stage is a
:class:`~keras_resnet.training.trainer.Trainer` whose :meth:`prepare_model`
loads the starting weights and sets what trains, before the optimizer is
built (so the optimizer holds slots for the trainable variables only, and a
resumed stage restores the same ones).
"""

from __future__ import annotations

import dataclasses
import os
import re

import keras

from keras_resnet import preprocessing as prep
from keras_resnet import weights as weights_lib
from keras_resnet.training.config import ConfigError
from keras_resnet.training.trainer import Trainer, load_data

STAGE_DIRS = ("stage1", "stage2")
FINAL_WEIGHTS = "final.weights.h5"
_STAGE_LAYER = re.compile(r"^stage(\d)_block\d+$")


def preprocessing_mode(ft, preact=False):
    """The :data:`keras_resnet.weights.PREPROCESSING` mode of a run (``auto``: declared)."""
    if ft.preprocessing != "auto":
        return ft.preprocessing
    return weights_lib.declared_preprocessing(ft.weights, preact) or "torch"


def preprocessing_spec(folder_spec, mode):
    """The folder's spec (input size, resize) with the weights' normalisation, in RGB.

    "caffe" is BGR: the channel order is absorbed by the stem (:func:`load_pretrained`
    reverses its kernel's input channels), so the spec lists the means in RGB order.
    """
    fields = weights_lib.PREPROCESSING[mode]
    return prep.make_spec(folder_spec["input_size"], fields["mean"], fields["std"],
                          resize=folder_spec["resize"],
                          crop_fraction=folder_spec.get("crop_fraction", 0.875),
                          scale=fields["scale"])


def arch_kwargs(builder):
    """The builder's arguments of the headless network the pretrained weights load into."""
    return {k: v for k, v in builder.items() if k not in ("classes", "zero_init", "seed")}


def load_pretrained(model, builder, weights, mode):
    """Copy ``weights`` into every layer of ``model`` but its classifier.

    The weights load (and convert) into a headless twin built with the same
    arguments (a ``.keras`` file is loaded as it is); each of its layers but
    ``predictions`` is copied into ``model`` by name. With
    ``mode == "caffe"`` the stem kernel's input channels are then reversed
    (BGR weights reading RGB input: the same function).
    """
    import keras_resnet

    try:
        if str(weights).endswith(".keras"):   # a trained model (e.g. an export's model.keras)
            twin = keras.saving.load_model(weights, compile=False)
        else:
            twin = keras_resnet.ResNet(include_top=False, weights=weights, **arch_kwargs(builder))
    except OSError as e:   # "imagenet" offline: the message names the file and --weights PATH
        raise ConfigError(str(e)) from None
    except ValueError as e:
        raise ConfigError(f"--weights {weights}: {e}") from None
    for layer in twin.layers:
        if layer.weights and layer.name != "predictions":
            try:
                model.get_layer(layer.name).set_weights(layer.get_weights())
            except ValueError as e:
                raise ConfigError(f"--weights {weights}: its layer {layer.name!r} does not fit "
                                  f"the network to fine-tune ({e})".splitlines()[0]) from None
    if weights_lib.PREPROCESSING[mode]["color"] == "BGR":
        conv = model.get_layer("stem").conv
        conv.kernel.assign(keras.ops.flip(conv.kernel, axis=2))
    del twin


def set_trainable(model, stage, unfreeze_from=1, train_bn=False):
    """Stage 1: only ``predictions`` trains. Stage 2: the stem (``unfreeze_from == 0``)
    and the stages from ``unfreeze_from`` on train too; their BatchNorms stay frozen
    (``trainable=False``: inference mode, no update) unless ``train_bn``.

    Returns:
        The names of the layers that train.
    """
    training = []
    for layer in model.layers:
        if layer.name == "predictions":
            layer.trainable = True
        elif stage == 1:
            layer.trainable = False
        else:
            match = _STAGE_LAYER.match(layer.name)
            index = 0 if layer.name == "stem" else int(match.group(1)) if match else \
                4 if layer.name == "post_bn" else None
            layer.trainable = index is not None and index >= unfreeze_from
            if layer.trainable and not train_bn:
                for sub in layer._flatten_layers(include_self=True, recursive=True):
                    if isinstance(sub, keras.layers.BatchNormalization):
                        sub.trainable = False
        if layer.trainable and layer.weights:
            training.append(layer.name)
    return training


class FinetuneStage(Trainer):
    """One stage's run: :meth:`prepare_model` loads its start and freezes what does not train."""

    def __init__(self, config, *, stage, ft, start, mode, **kwargs):
        self.stage, self.ft, self.start_weights, self.mode = stage, ft, start, mode
        super().__init__(config, **kwargs)
        self.extra_metadata = {"finetune": {
            "weights": ft.weights, "preprocessing": mode,
            "stem_channels_reversed": weights_lib.PREPROCESSING[mode]["color"] == "BGR",
            "head_epochs": ft.head_epochs, "unfreeze_from": ft.unfreeze_from,
            "train_bn": ft.train_bn, "stage2_lr": ft.stage2_lr}}

    def prepare_model(self, model):
        if self.stage == 1:
            load_pretrained(model, self.builder, self.start_weights, self.mode)
        else:
            model.load_weights(self.start_weights)
        self.training_layers = set_trainable(model, self.stage, self.ft.unfreeze_from,
                                             self.ft.train_bn)


def stage_configs(base, ft):
    """``(stage 1 config, stage 2 config)``: subdirectories of one run directory."""
    from keras_resnet.training.rundir import default_run_name

    run_dir = base.run_dir or os.path.join(
        "runs", "finetune_" + default_run_name(base))
    export = base.export or os.path.join("saved_models", os.path.basename(
        os.path.normpath(run_dir)))
    base = dataclasses.replace(base, dataset=None)   # resolved again by each Trainer
    one = dataclasses.replace(base, run_dir=os.path.join(run_dir, STAGE_DIRS[0]),
                              epochs=ft.head_epochs, steps=None, no_export=True, export=None)
    two = dataclasses.replace(base, run_dir=os.path.join(run_dir, STAGE_DIRS[1]),
                              lr=base.lr * ft.stage2_lr,
                              export=None if base.no_export else export)
    return run_dir, one, two


def run_stages(base, ft, *, verbose=None, callbacks=None):
    """Stage 1 (unless its final weights exist), then stage 2; see ``finetune.finetune``.

    Returns:
        ``(metrics, the stage 2 trainer)``.
    """
    run_dir, one, two = stage_configs(base, ft)
    data = load_data(one)
    mode = preprocessing_mode(ft, base.preact)
    data.preprocessing = preprocessing_spec(data.preprocessing, mode)
    final = os.path.join(one.run_dir, FINAL_WEIGHTS)
    say = (lambda text: print(text, flush=True)) if verbose is not False else (lambda text: None)
    stage1 = None
    if not os.path.exists(final):
        say(f"Stage 1 of 2: the new classifier on the frozen backbone ({ft.head_epochs} "
            f"epoch(s)), weights {ft.weights} ({mode} preprocessing).")
        trainer = FinetuneStage(one, stage=1, ft=ft, start=ft.weights, mode=mode, data=data,
                                verbose=verbose, callbacks=callbacks)
        stage1 = trainer.run()
        save_final(trainer, final)
    else:
        say(f"Stage 1 done earlier ({final}).")
    what = ("the stem and all stages" if ft.unfreeze_from == 0 else
            f"stages {ft.unfreeze_from}-4")
    say(f"Stage 2 of 2: {what} and the classifier at lr x {ft.stage2_lr:g}, BatchNorm "
        f"{'adapting' if ft.train_bn else 'frozen'}.")
    trainer = FinetuneStage(two, stage=2, ft=ft, start=final, mode=mode, data=data,
                            verbose=verbose, callbacks=callbacks)
    metrics = trainer.run()
    save_final(trainer, os.path.join(two.run_dir, FINAL_WEIGHTS))
    metrics["stage1"] = stage1
    metrics["run_dir"] = run_dir
    return metrics, trainer


def save_final(trainer, path):
    """The stage's trained weights, written whole or not at all (the next stage starts there)."""
    if trainer.chief:
        temporary = path[:-len(FINAL_WEIGHTS)] + "final-partial.weights.h5"
        trainer.model.save_weights(temporary)
        os.replace(temporary, path)
