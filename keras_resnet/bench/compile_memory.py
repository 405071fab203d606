"""Compile time, XLA's temporary memory and the first steps of a deep net's training step (JAX).

One measurement builds a CIFAR ResNet, compiles the JAX engine's training step
ahead of time (``jax.jit(...).lower(...).compile()``) and reads XLA's own
accounting of the compiled program (``memory_analysis()``: temporary bytes,
the activations kept for the backward pass among them), then runs two steps
with the compiled program (the first step's wall time, then a second one) and
reports the peak memory: ``device.memory_stats()`` on a GPU, the process's peak
resident set on the CPU. Each measurement runs in a fresh process with a time
limit (:func:`measure_isolated`), so one slow compilation cannot hold up the
rest and every peak is its own.

    KERAS_BACKEND=jax python recipes/benchmark.py --compile --depths 110,164,1001,1202 \\
        --modes scan,scan-remat --batch-size 16 --json depths.jsonl

Modes: ``scan`` (the engine's default: one ``jax.lax.scan`` per run of
identical blocks, :mod:`keras_resnet.training.scan`), ``unroll`` (every block
compiled into the step), and either with ``-remat`` (every block recomputed in
the backward pass, :mod:`keras_resnet.training.remat`; ``-remat-convs`` keeps
the convolutions' outputs). ``--memory-scheduler`` runs XLA's CPU scheduler
that plans for memory instead of concurrency (:data:`MEMORY_SCHEDULER_FLAG`).
"""

from __future__ import annotations

import os
import time

MODES = ("scan", "scan-remat", "scan-remat-convs", "unroll", "unroll-remat")
MEMORY_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def depth_block(depth):
    """The block kind of a CIFAR depth: bottleneck for 9n+2 depths that are not 6n+2 (164, 1001)."""
    from keras_resnet import specs

    block = "bottleneck" if (depth - 2) % 9 == 0 and (depth - 2) % 6 else None
    if depth in (164, 1001):
        block = "bottleneck"
    blocks = specs.cifar_blocks_for(depth)
    return block if block in blocks else blocks[0]

def _mode(mode):
    if mode not in MODES:
        raise ValueError(f"Invalid value for argument `mode`: received {mode!r}; expected one "
                         f"of {', '.join(MODES)}.")
    remat = "nothing" if mode.endswith("-remat") else ("convs" if mode.endswith("-convs")
                                                       else None)
    return mode.startswith("unroll"), remat


def _cpu():
    """CPU seconds of this process (user + system): on a shared machine, less noisy than
    the wall clock for single-threaded work such as XLA's compilation."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(depth, *, mode="scan", batch_size=16, preact=True, precision="float32",
            image_size=32, block=None, steps=2):
    """One measurement in this process; returns a dict (see the module docstring).

    ``steps`` (0, 1 or 2) steps run with the compiled program; a step's time is None
    when it does not run (0: compile time and XLA's memory accounting only).
    """
    import jax
    import keras
    import numpy as np

    import keras_resnet
    from keras_resnet.bench.machine import peak_memory
    from keras_resnet.training.config import TrainConfig
    from keras_resnet.training.model import decay_variables
    from keras_resnet.training.trainer import make_engine

    unroll, remat = _mode(mode)
    block = block or depth_block(depth)
    config = TrainConfig(precision=precision, unroll=unroll, steps_per_execution=1,
                         deterministic=False, seed=0)
    engine = make_engine(config)
    engine.set_global_state(0)
    t0 = time.perf_counter()
    with engine.scope():
        model = keras_resnet.ResNet(depth=depth, family="cifar", block=block, preact=preact,
                                    classes=10, input_shape=(image_size, image_size, 3),
                                    dtype=precision)
        if remat:
            from keras_resnet.training.remat import rematerialize_blocks

            rematerialize_blocks(model, policy=remat)
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        optimizer.build(model.trainable_variables)
    build = time.perf_counter() - t0
    engine.compile(model, optimizer, decay_variables(model), classes=10, weight_decay=1e-4,
                   label_smoothing=0.0, global_batch=batch_size)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((1, batch_size, image_size, image_size, 3), dtype=np.float32)
    labels = rng.integers(0, 10, size=(1, batch_size)).astype(np.int32)
    batches = engine._put(images, labels)
    state = engine._pull_state()
    c0, t0 = _cpu(), time.perf_counter()
    lowered = engine._train_steps.lower(state, batches)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    c2, t2 = _cpu(), time.perf_counter()
    analysis = compiled.memory_analysis()
    seconds, step_cpu = [], []
    loss = None
    for _ in range(max(0, min(int(steps), 2))):
        c, t = _cpu(), time.perf_counter()
        state, sums = compiled(state, batches)
        loss = float(np.asarray(sums)[0])
        seconds.append(time.perf_counter() - t)
        step_cpu.append(_cpu() - c)
    temp = getattr(analysis, "temp_size_in_bytes", None) if analysis is not None else None
    args = getattr(analysis, "argument_size_in_bytes", None) if analysis is not None else None
    return {"depth": depth, "block": block, "preact": preact, "mode": mode,
            "batch_size": batch_size, "precision": precision, "backend": "jax",
            "device": str(jax.devices()[0].device_kind),
            "scanned_runs": engine._scan.describe() if engine._scan is not None else [],
            "build_seconds": build, "lower_seconds": t1 - t0, "compile_seconds": t2 - t1,
            "lower_and_compile_cpu_seconds": c2 - c0, "step_cpu_seconds": step_cpu,
            "xla_temp_bytes": temp, "xla_argument_bytes": args,
            "first_step_seconds": seconds[0] if seconds else None,
            "second_step_seconds": seconds[1] if len(seconds) > 1 else None, "loss": loss,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), **peak_memory()}


def measure_isolated(depth, *, mode="scan", timeout=600, memory_scheduler=False, **kwargs):
    """:func:`measure` in a fresh process with a time limit; a dict with ``error`` on failure."""
    env = dict(os.environ, KERAS_BACKEND="jax")
    if memory_scheduler:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + MEMORY_SCHEDULER_FLAG).strip()
    from keras_resnet.runs.isolation import IsolatedError, run_isolated

    t0 = time.perf_counter()
    try:
        return run_isolated(measure, (depth,), dict(mode=mode, **kwargs), timeout=timeout,
                            env=env, output=os.devnull).value
    except IsolatedError as e:
        error = f"stopped after {timeout} s" if "did not finish" in str(e) else str(e)
        return {"depth": depth, "mode": mode, "error": error,
                "seconds": time.perf_counter() - t0, **kwargs}


def row_text(r):
    if "error" in r:
        return f"{r['depth']:>5} {r['mode']:<17} {r['error']}"
    gib = 2 ** 30
    temp = "-" if r["xla_temp_bytes"] is None else f"{r['xla_temp_bytes'] / gib:.2f}"
    first = "-" if r["first_step_seconds"] is None else f"{r['first_step_seconds']:.2f}"
    second = "-" if r["second_step_seconds"] is None else f"{r['second_step_seconds']:.2f}"
    return (f"{r['depth']:>5} {r['mode']:<17} {r['compile_seconds']:>9.1f} "
            f"{r['lower_and_compile_cpu_seconds']:>9.1f} "
            f"{first:>9} {second:>9} {temp:>9} "
            f"{r['peak_bytes'] / gib:>9.2f}")


HEADER = (f"{'depth':>5} {'mode':<17} {'compile s':>9} {'cpu s':>9} {'step 1 s':>9} "
          f"{'step 2 s':>9} "
          f"{'temp GiB':>9} {'peak GiB':>9}")  # cpu s: lowering and compiling, CPU time
