"""The input side imports one way: no cycles (counting imports inside functions), no TensorFlow.

The import graph is read from the source (every ``import`` statement, at any
depth); a cycle is a strongly connected set of two or more modules.
"""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_resnet")
OURS = ("keras_resnet.preprocessing", "keras_resnet.serving", "keras_resnet.data")


def modules():
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                found[".".join(rel)] = os.path.join(folder, name)
    return found


def import_graph():
    mods = modules()
    graph = {}
    for name, path in mods.items():
        edges = set()
        for node in ast.walk(ast.parse(open(path).read())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods
                           else node.module for a in node.names]
            edges |= {t for t in targets if t in mods and t != name}
        graph[name] = edges
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_reader_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "keras_resnet.preprocessing" in graph["keras_resnet.serving.calibration"]  # in a function
    assert "keras_resnet.data.plans" in graph["keras_resnet.data.tf_pipeline"]


def test_no_import_cycle_touches_the_input_side():
    bad = [c for c in cycles(import_graph()) if any(m.startswith(OURS) for m in c)]
    assert not bad, bad


def test_export_no_longer_imports_predict():
    graph = import_graph()
    assert "keras_resnet.serving.predict" not in graph["keras_resnet.serving.directory"]
    assert "keras_resnet.preprocessing" in graph["keras_resnet.serving.predict"]


@pytest.mark.multibackend
def test_data_package_is_light():
    """``import keras_resnet.data`` and ``--help`` import no TensorFlow (JAX backend)."""
    code = ("import sys, keras_resnet.data, keras_resnet.preprocessing\n"
            "print('tensorflow' in sys.modules)")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]
    out = subprocess.run([sys.executable, "-m", "keras_resnet.data", "--help"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and "--data-dir" in out.stdout and "--pipeline" in out.stdout
