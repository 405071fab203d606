"""How build time, step time and peak memory grow with depth (``--train --depths``).

Each depth runs in a fresh process (:func:`keras_resnet.runs.run_isolated`)
so that the peak memory of each is its own.
"""

from __future__ import annotations

import os

from keras_resnet.runs.isolation import IsolatedError, run_isolated


def one_depth(depth, batch_size=16, precision="float32", preact=True, repeats=3, remat=False):
    """One depth in this process: build, one warm-up call, ``repeats`` timed steps."""
    from keras_resnet.bench.cases import engine_case
    from keras_resnet.bench.machine import peak_memory

    from keras_resnet.bench.compile_memory import depth_block

    block = depth_block(depth)

    def model_fn():
        import keras_resnet

        model = keras_resnet.ResNet(depth=depth, family="cifar", block=block, preact=preact,
                                    input_shape=(32, 32, 3), classes=10)
        if remat:
            from keras_resnet.training.remat import rematerialize_blocks

            rematerialize_blocks(model)
        return model

    case = engine_case(f"depth {depth}", model_fn, batch_size=batch_size, precision=precision,
                       xla=False, steps_per_execution=1)
    case.run(1)
    case.reset()
    case.run(repeats)
    r = case.result()
    row = {"depth": depth, "block": block, "preact": preact, "remat": remat,
           "batch_size": batch_size, "precision": precision, "backend": r["backend"],
           "build_seconds": r["build_seconds"], "seconds_per_step": r["seconds_per_call_median"],
           "images_per_sec": r["images_per_sec"], **peak_memory()}
    if r["backend"] == "jax":
        # The same step compiled ahead of time: XLA's compile time and temporary bytes.
        from keras_resnet.bench.compile_memory import measure

        aot = measure(depth, mode="scan-remat" if remat else "scan", batch_size=batch_size,
                      preact=preact, precision=precision, block=block)
        row.update(compile_seconds=aot["compile_seconds"], xla_temp_bytes=aot["xla_temp_bytes"])
    return row


def depth_table(depths, *, batch_size=16, precision="float32", preact=True, repeats=3,
                remat=False, log=print):
    """Build time, step time and peak memory per depth, one fresh process each."""
    rows = []
    for depth in depths:
        try:
            row = run_isolated(one_depth, kwargs=dict(
                depth=depth, batch_size=batch_size, precision=precision, preact=preact,
                repeats=repeats, remat=remat), output=os.devnull).value
        except IsolatedError as e:
            rows.append({"depth": depth, "error": str(e)})
            log(f"depth {depth}: failed: {e}")
            continue
        rows.append(row)
        log(f"depth {depth}: build {row['build_seconds']:.1f} s, step "
            f"{row['seconds_per_step'] * 1000:.0f} ms, peak {row['peak_bytes'] / 2**30:.2f} GiB "
            f"({row['memory']})" + (f", compile {row['compile_seconds']:.1f} s, XLA temp "
                                    f"{row['xla_temp_bytes'] / 2**30:.2f} GiB"
                                    if row.get("xla_temp_bytes") is not None else ""))
    return rows
