"""How fast an input pipeline delivers batches on its own (no model)."""

from __future__ import annotations

import time


def pipeline_throughput(dataset, batches=20, warmup=2):
    """Images per second an input pipeline delivers on its own (no model).

    Iterates ``warmup`` batches, then times ``batches`` more; compare with a
    training step's images per second to see whether the input is a
    bottleneck (the training loop also times its own waits on ``next()``).

    Args:
        dataset: an iterable of ``(images, labels, ...)`` batches: a
            ``tf.data.Dataset`` or a NumPy iterator.
        batches: int, batches to time.
        warmup: int, batches to skip first (pipeline start-up, caches).

    Returns:
        dict with ``images``, ``seconds``, ``images_per_sec``.
    """
    iterator = iter(dataset)
    for _ in range(warmup):
        if next(iterator, None) is None:
            break
    images, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            break
        images += int(batch[0].shape[0])
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds,
            "images_per_sec": images / seconds if seconds > 0 else float("inf")}
