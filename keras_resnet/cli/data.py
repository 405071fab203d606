"""``keras-resnet data`` (``python -m keras_resnet.data``): load a dataset, print its
summary and how fast the input pipeline alone delivers training batches."""

from __future__ import annotations

import json
import sys

from keras_resnet.cli.fields import Parser, add_fields
from keras_resnet.training.config import DATASETS, TrainConfig

ALL_DATASETS = tuple(dict.fromkeys(d for names in DATASETS.values() for d in names))


def build_parser(prog=None):
    """The parser of ``keras-resnet data`` (``python -m keras_resnet.data``)."""
    parser = Parser(
        prog=prog or "python -m keras_resnet.data",
        description="Load a dataset as the recipes do; print its summary and how fast the "
                    "input pipeline alone delivers training batches.")
    add_fields(parser, TrainConfig, ("dataset", "data_dir", "image_size", "holdout", "seed"),
               dataset={"help": f"one of {', '.join(ALL_DATASETS)} (default: digits, or the "
                                "image folders of --data-dir)"},
               data_dir={"help": "image folders DIR/train/<class>/ and DIR/val/<class>/ "
                                 "(default: none)"},
               image_size={"help": "square input size (default: the dataset's)"},
               holdout={"help": "evaluate on 10%% held out of the training set (default: off)"},
               seed={"help": "seed (default: 0)"})
    add_fields(parser, TrainConfig, ("batch_size",),
               batch_size={"default": 128, "help": "batch size (default: 128)"})
    parser.add_argument("--batches", type=int, default=20,
                        help="batches to time, 0 to skip timing (default: 20)")
    parser.add_argument("--pipeline", choices=("tf", "numpy"), default="tf",
                        help="tf.data, or the NumPy iterator of the JAX backend (in-memory "
                             "datasets only) (default: tf)")
    parser.add_argument("--crops-on-device", action="store_true",
                        help="with --pipeline numpy and random-resized-crop data: time the "
                             "host's part only (uint8 images, crop windows and flips; the resize "
                             "is keras_resnet.data.device.resized_crops) (default: off)")
    parser.add_argument("--check", action="store_true",
                        help="decode every file of --data-dir once now and list those that "
                             "fail, with the reason (default: off; training skips them anyway)")
    add_fields(parser, TrainConfig, ("synthetic_examples",), synthetic_examples={
        "default": 1024, "help": "training examples of --dataset synthetic (default: 1024)"})
    return parser


def main(argv=None, prog=None):
    """Parse the command line, load, summarise, time; exit code 2 on a data error."""
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as e:   # argparse printed its one-line error (or --help)
        return int(e.code or 0)
    from keras_resnet.data import folders
    from keras_resnet.data.common import DataError
    from keras_resnet.data.sources import load
    from keras_resnet.data.throughput import pipeline_throughput

    try:
        name = args.dataset or (None if args.data_dir else "digits")
        data = load(name, data_dir=args.data_dir, seed=args.seed, holdout=args.holdout,
                    image_size=args.image_size, synthetic_examples=args.synthetic_examples)
        if args.check and data.name == "folder":
            for split in (data.train_split, data.test_split):
                for path, reason in folders.check_folder(list(split.images)).items():
                    data.skip_record.add(path, reason, quiet=True)
            for path, reason in data.skipped.items():
                print(f"skipped: {path}: {reason}")
        summary = {"name": data.name, "family": data.family, "num_classes": data.num_classes,
                   "class_names": data.class_names[:5] + (["..."] if data.num_classes > 5 else []),
                   "input_shape": list(data.input_shape()), "train_size": data.train_size,
                   "test_size": data.test_size, "skipped_files": data.skipped_files,
                   "preprocessing": data.preprocessing}
        print(json.dumps(summary))
        if args.batches > 0:
            steps = data.steps_per_epoch(args.batch_size)
            warmup = min(2, max(steps - 1, 0))
            batches = args.batches + warmup
            epochs = -(-batches // max(steps, 1))
            if args.pipeline == "numpy":
                stream = data.numpy_train_epochs(args.batch_size, 0, steps, end_epoch=epochs,
                                                 crops_on_device=args.crops_on_device)
            else:
                stream = data.train_epochs(args.batch_size, 0, steps, end_epoch=epochs)
            speed = pipeline_throughput(stream, batches=args.batches, warmup=warmup)
            print(f"train pipeline ({args.pipeline}): {speed['images']} images in "
                  f"{speed['seconds']:.2f} s = {speed['images_per_sec']:.0f} images/s "
                  f"(batch {args.batch_size}); skipped files so far: {data.skipped_files}")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
