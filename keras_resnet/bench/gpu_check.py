"""One GPU check: install the wheels, then measure what the GPU rows of the docs need.

``make gpu-check`` (or ``python3 -m keras_resnet.bench.gpu_check``) on a bare
GPU machine that has this working tree and the wheels of ``make wheels`` (JAX
with CUDA, no TensorFlow, no internet):

1. installs the wheels without an index into a target folder (``--site``) if
   Keras cannot be imported yet, and re-runs itself with that folder on the path;
2. runs each case in its own process with its own time limit, so one slow
   compilation cannot eat the others' time, within a total budget
   (``--budget``, default 480 s of wall time);
3. writes one JSON file (``--out``) and prints a short table (also written
   next to the JSON as ``.txt``).

The cases (mixed bfloat16 and synthetic data unless said otherwise):

* ``resnet50_b256``, ``resnet50_b512``: ImageNet ResNet-50 training-step
  throughput (images/s) at batch 256 and 512, one batch kept on the device;
* ``resnet56_b128``: CIFAR ResNet-56 at batch 128, steps per second (and the
  time the paper's 64,000 iterations would take at that rate);
* ``preact1001_b128``, ``preact1001_b128_remat``: pre-activation ResNet-1001
  at batch 128 (float32): compile time, step time and peak GPU memory
  (``device.memory_stats()``), without and with ``--remat``.

``--dry-run`` runs every case at toy size on whatever device JAX has (the CPU
here): the same code paths, in seconds, so the check is known to work before a
GPU machine's minutes are spent on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# name -> (kind, arguments, seconds allowed); the budgets add up to under 8 minutes
# with the installation and each process's start-up (JAX, CUDA, Keras).
CASES = {
    "resnet50_b256": ("throughput", {"model": "resnet50", "batch_size": 256, "size": 224,
                                      "precision": "mixed_bfloat16", "steps": 8}, 100),
    "resnet50_b512": ("throughput", {"model": "resnet50", "batch_size": 512, "size": 224,
                                      "precision": "mixed_bfloat16", "steps": 8}, 100),
    "resnet56_b128": ("throughput", {"model": "resnet56_cifar", "batch_size": 128, "size": 32,
                                      "precision": "mixed_bfloat16", "steps": 50}, 60),
    "preact1001_b128": ("depth", {"depth": 1001, "mode": "scan", "batch_size": 128}, 90),
    "preact1001_b128_remat": ("depth", {"depth": 1001, "mode": "scan-remat",
                                         "batch_size": 128}, 90),
}
# Toy sizes for --dry-run: every case, small enough for seconds on a CPU.
DRY = {
    "resnet50_b256": {"batch_size": 2, "size": 32, "steps": 1},
    "resnet50_b512": {"batch_size": 2, "size": 32, "steps": 1},
    "resnet56_b128": {"model": "depth:20", "batch_size": 4, "size": 8, "steps": 1},
    "preact1001_b128": {"depth": 29, "batch_size": 2, "image_size": 8, "steps": 1},
    "preact1001_b128_remat": {"depth": 29, "batch_size": 2, "image_size": 8, "steps": 1},
}
PAPER_ITERATIONS = 64000    # He et al. 2015, CIFAR-10: 64k iterations of batch 128


# -- the cases (run in a child process) -----------------------------------------------
def throughput(model, batch_size, size, precision, steps, calls=3):
    """Training-step throughput of a zoo model on one batch kept on the device."""
    import time as clock

    import jax

    from keras_resnet.bench.cases import engine_case, model_kwargs

    def model_fn():
        import keras_resnet

        classes = 10 if ("cifar" in model or model.startswith("depth:")) else 1000
        return keras_resnet.ResNet(**model_kwargs(model, size, classes))

    t0 = clock.perf_counter()
    case = engine_case(model, model_fn, batch_size=batch_size, precision=precision, xla=True,
                       steps_per_execution=steps)
    case.run(1)                    # compiles
    first = clock.perf_counter() - t0
    case.reset()
    case.run(calls)
    r = case.result()
    seconds_per_step = r["seconds_per_call_median"] / steps
    out = {"images_per_sec": r["images_per_sec"], "steps_per_sec": 1 / seconds_per_step,
           "seconds_per_step": seconds_per_step, "batch_size": batch_size,
           "precision": precision, "build_and_first_call_seconds": first,
           "steps_per_call": steps, "calls": calls, "device": str(jax.devices()[0].device_kind)}
    from keras_resnet.bench.machine import peak_memory

    out.update(peak_memory())
    if model.endswith("cifar") or model.startswith("depth:"):
        out["paper_schedule_seconds"] = PAPER_ITERATIONS * seconds_per_step
    return out


def depth(depth, mode, batch_size, image_size=32, steps=2):
    """Compile time, step time and peak memory of a pre-activation CIFAR ResNet."""
    from keras_resnet.bench.compile_memory import measure

    return measure(depth, mode=mode, batch_size=batch_size, image_size=image_size, steps=steps)


KINDS = {"throughput": throughput, "depth": depth}


# -- the driver ----------------------------------------------------------------------
def _install(wheels, site):
    """``pip install --no-index --no-deps --target site wheels/*.whl``; returns seconds."""
    files = sorted(os.path.join(wheels, f) for f in os.listdir(wheels) if f.endswith(".whl"))
    if not files:
        raise SystemExit(f"error: --wheels {wheels}: no .whl files there (make wheels)")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--no-compile", "--no-cache-dir", "--upgrade", "--target", site, *files],
                   check=True)
    return time.perf_counter() - t0


def _keras_importable(env):
    probe = "import keras, jax"
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True)
    return proc.returncode == 0


def _run_case(name, kind, kwargs, limit, env):
    import importlib

    from keras_resnet.runs.isolation import IsolatedError, run_isolated

    # Named through the module (not __main__, which this file is when run as a script),
    # so the fresh process can find the function.
    case = importlib.import_module("keras_resnet.bench.gpu_check").KINDS[kind]
    t0 = time.perf_counter()
    try:
        value = run_isolated(case, kwargs=kwargs, timeout=limit, env=env,
                             output=os.devnull).value
    except IsolatedError as e:
        error = (f"stopped at its limit of {limit:.0f} s" if "did not finish" in str(e)
                 else str(e))
        return {"case": name, "error": error, "wall_seconds": time.perf_counter() - t0}
    return {"case": name, **value, "wall_seconds": time.perf_counter() - t0}


def table(results):
    """The short table: one line per case."""
    lines = [f"{'case':<23} {'result':<44} {'peak GiB':>8} {'wall s':>7}"]
    for r in results:
        if "error" in r:
            text = "error: " + r["error"]
        elif "images_per_sec" in r:
            text = f"{r['images_per_sec']:,.0f} img/s, {r['seconds_per_step'] * 1e3:.1f} ms/step"
            if "paper_schedule_seconds" in r:
                text += f", 64k its {r['paper_schedule_seconds']:.0f} s"
        else:
            step = r["second_step_seconds"] or r["first_step_seconds"]
            text = (f"compile {r['compile_seconds']:.1f} s, step {step:.3f} s"
                    f", XLA temp {(r['xla_temp_bytes'] or 0) / 2**30:.2f} GiB")
        peak = f"{r['peak_bytes'] / 2**30:.2f}" if "peak_bytes" in r else "-"
        lines.append(f"{r['case']:<23} {text[:60]:<44} {peak:>8} {r.get('wall_seconds', 0):>7.0f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m keras_resnet.bench.gpu_check",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--wheels", default="wheels", help="folder of make wheels (default: wheels)")
    p.add_argument("--site", default="/tmp/keras_resnet_site",
                   help="where the wheels are installed (default: /tmp/keras_resnet_site)")
    p.add_argument("--out", default="gpu_check.json",
                   help="the JSON file (default: gpu_check.json)")
    p.add_argument("--budget", type=float, default=None,
                   help="total seconds for the cases (default: 480; --dry-run: 3600)")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    p.add_argument("--dry-run", action="store_true",
                   help="every case at toy size on any device (the CPU here), no installation")
    args = p.parse_args(argv)
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        print(f"error: --cases {unknown[0]!r}: expected some of {', '.join(CASES)}",
              file=sys.stderr)
        return 2
    # A dry run's time limits are generous: it runs on a shared CPU, not a GPU.
    budget = args.budget or (3600 if args.dry_run else 480)
    start = time.perf_counter()
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    report = {"dry_run": args.dry_run, "budget_seconds": budget, "results": []}
    if not _keras_importable(env):
        if args.dry_run:
            print("error: --dry-run needs keras and jax importable", file=sys.stderr)
            return 2
        report["install_seconds"] = _install(args.wheels, args.site)
        env["PYTHONPATH"] = os.pathsep.join([repo, args.site] + (
            [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
        if not _keras_importable(env):
            print(f"error: keras or jax still not importable after installing {args.wheels}",
                  file=sys.stderr)
            return 1
    if args.dry_run:
        env.setdefault("JAX_PLATFORMS", "cpu")
    for name in names:
        kind, kwargs, limit = CASES[name]
        if args.dry_run:
            kwargs, limit = {**kwargs, **DRY[name]}, 600
        left = budget - (time.perf_counter() - start)
        if left < 10:
            report["results"].append({"case": name, "error": "no time left in the budget"})
            continue
        result = _run_case(name, kind, kwargs, min(limit, left), env)
        report["results"].append(result)
        print(table([result]).splitlines()[1], flush=True)
    report["total_seconds"] = time.perf_counter() - start
    try:
        info = subprocess.run([sys.executable, "-c", "import json; from keras_resnet.bench."
                               "machine import machine; print(json.dumps(machine()))"],
                              env=env, capture_output=True, text=True, timeout=60)
        report["machine"] = json.loads(info.stdout.strip().splitlines()[-1])
    except Exception as e:  # noqa: BLE001 - the measurements matter more than this line
        report["machine"] = {"error": str(e)}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    text = table(report["results"])
    with open(os.path.splitext(args.out)[0] + ".txt", "w") as f:
        f.write(text + "\n")
    print("\n" + text)
    print(f"\nWrote {args.out} ({report['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
