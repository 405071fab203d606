"""The argument groups the commands compose: names of configuration fields, in display order."""

DATA = ("dataset", "data_dir", "holdout", "val_split", "image_size", "synthetic_examples")
LENGTH = ("epochs", "steps")        # one or the other (a mutually exclusive group)
OPTIMISATION = ("batch_size", "lr", "momentum", "weight_decay", "schedule", "warmup_epochs",
                "label_smoothing")
HARDWARE = ("backend", "gpus", "precision", "xla", "sync_bn", "remat", "unroll",
            "steps_per_execution",
            "log_every", "seed", "deterministic")
OUTPUT = ("run_dir", "export", "no_export", "quiet", "fresh")
