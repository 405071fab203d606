"""Benchmarks: training throughput, export inference latency, build time and depth scaling.

* :mod:`~keras_resnet.bench.harness`: measured cases run interleaved, medians
  over repetitions (the clock is a parameter, tested on a fake one);
* :mod:`~keras_resnet.bench.cases`: the package's training step, ``model.fit``
  (its steps timed by a callback) and PyTorch eager;
* :mod:`~keras_resnet.bench.throughput`: the side-by-side training comparison;
* :mod:`~keras_resnet.bench.depths`, :mod:`~keras_resnet.bench.build`: one
  fresh process per measurement, through :func:`keras_resnet.runs.run_isolated`;
* :mod:`~keras_resnet.bench.inference`: batch-1 latency of every export format;
* :mod:`~keras_resnet.bench.machine`: what the numbers were measured on;
* the command line (``recipes/benchmark.py``, ``keras-resnet bench``) is
  :mod:`keras_resnet.cli.bench`.

Importing this package imports nothing heavy; each module imports Keras,
TensorFlow or PyTorch inside the functions that need them.
"""
