"""What importing keras_resnet costs, and its import graph, which has no cycles.

Every module is parsed with ``ast``; every ``import`` and ``from ... import``
counts, at module level or inside a function (a deferred import is still a
cycle: the two modules cannot be understood, tested or split apart one
without the other), relative imports too, and ``importlib.import_module``
called with a literal name.
"""

import ast
import os
import subprocess
import sys

import pytest

PACKAGE = "keras_resnet"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)


def package_modules(root=ROOT, package=PACKAGE):
    """{module name: file path} of every module of the package, subpackages included."""
    modules = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if os.path.isfile(os.path.join(directory, d, "__init__.py")))
        rel = os.path.relpath(directory, os.path.dirname(root))
        prefix = rel.replace(os.sep, ".")
        for name in sorted(files):
            if name.endswith(".py"):
                stem = name[:-3]
                modules[prefix if stem == "__init__" else f"{prefix}.{stem}"] = os.path.join(directory, name)
    return modules


def imported_names(module, path, known):
    """The package modules ``module`` imports (anywhere in the file), sorted."""
    is_package = os.path.basename(path) == "__init__.py"
    with open(path, encoding="utf8") as f:
        tree = ast.parse(f.read(), path)
    targets = set()

    def resolve(name):
        # The longest known module that `name` starts with (a.b.c -> a.b when c is a class).
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(resolve(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            for alias in node.names:
                # `from pkg import sub` imports the submodule when there is one.
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in known else resolve(source))
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ast.unparse(node.func) in ("importlib.import_module", "import_module")):
            targets.add(resolve(node.args[0].value))
    targets.discard(None)
    targets.discard(module)
    return sorted(t for t in targets if t.split(".")[0] == PACKAGE)


def import_graph(modules):
    known = set(modules)
    return {m: imported_names(m, p, known) for m, p in modules.items()}


def find_cycle(graph):
    """One cycle as a list of modules [a, b, ..., a], or None (iterative DFS)."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if color[start] != WHITE:
            continue
        stack = [(start, iter(graph[start]))]
        path = [start]
        color[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                color[node] = BLACK
                stack.pop()
                path.pop()
            elif color.get(child, BLACK) == GREY:
                return path[path.index(child):] + [child]
            elif color.get(child) == WHITE:
                color[child] = GREY
                stack.append((child, iter(graph[child])))
                path.append(child)
    return None


def find_cycles(graph):
    """One cycle per group of mutually importing modules (strongly connected component)."""
    found, seen = [], set()
    while True:
        cycle = find_cycle({m: [c for c in graph[m] if c not in seen] for m in graph
                            if m not in seen})
        if cycle is None:
            return found
        found.append(cycle)
        # Leave out the whole group the cycle belongs to: what reaches its first
        # module and is reached from it.
        seen |= _reachable(graph, cycle[0]) & _reachable(_reverse(graph), cycle[0])


def _reachable(graph, start):
    todo, out = [start], {start}
    while todo:
        for child in graph.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _reverse(graph):
    out = {m: [] for m in graph}
    for m, children in graph.items():
        for c in children:
            out.setdefault(c, []).append(m)
    return out


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph(package_modules())
    assert len(graph) > 10 and f"{PACKAGE}.models" in graph
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


# The layers, top-down (docs/architecture.md): a module may import its own layer and
# the layers below it. Training exports through serving, so it sits just above it.
LAYERS = {"cli": 7, "tuning": 6, "experiments": 6, "analysis": 6, "bench": 6, "runs": 5,
          "training": 4.5, "serving": 4, "data": 3, "specs": 1}
CORE = 2   # every other top-level module: architecture, layers, models, weights, ...


def layer(module):
    """The layer of a module; ``__main__`` modules are entry points, on top."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return max(LAYERS.values())
    return LAYERS.get(parts[1], CORE) if len(parts) > 1 else None


def test_imports_flow_top_down():
    """recipes/cli -> tuning, experiments, analysis, bench -> runs -> training -> serving
    -> data -> the core -> specs: no import goes up (the package's lazy __init__ aside)."""
    graph = import_graph(package_modules())
    upward = [f"{a} -> {b}" for a, targets in sorted(graph.items()) for b in targets
              if None not in (layer(a), layer(b)) and layer(a) < layer(b)]
    assert not upward, "imports against the layering: " + "; ".join(upward)
    assert layer("keras_resnet.cli.train") > layer("keras_resnet.runs.sweep") > \
        layer("keras_resnet.training.trainer") > layer("keras_resnet.serving.directory") > \
        layer("keras_resnet.data.sources") > layer("keras_resnet.models") > \
        layer("keras_resnet.specs")


def _write(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path / "keras_resnet")


def test_the_checker_sees_deferred_relative_and_submodule_imports(tmp_path):
    root = _write(tmp_path, {
        "keras_resnet/__init__.py": "",
        "keras_resnet/a.py": "def f():\n    from keras_resnet import b\n",
        "keras_resnet/b.py": "from .sub import c\n",
        "keras_resnet/sub/__init__.py": "from . import c\n",
        "keras_resnet/sub/c.py": "import importlib\n"
                                 "def g():\n    return importlib.import_module('keras_resnet.a')\n",
        "keras_resnet/d.py": "import os\nfrom keras_resnet.sub.c import g\nimport keras\n",
    })
    graph = import_graph(package_modules(root))
    assert graph == {
        "keras_resnet": [], "keras_resnet.a": ["keras_resnet.b"],
        "keras_resnet.b": ["keras_resnet.sub.c"], "keras_resnet.sub": ["keras_resnet.sub.c"],
        "keras_resnet.sub.c": ["keras_resnet.a"], "keras_resnet.d": ["keras_resnet.sub.c"]}
    assert find_cycle(graph) == ["keras_resnet.a", "keras_resnet.b", "keras_resnet.sub.c",
                                 "keras_resnet.a"]
    assert find_cycles(graph) == [["keras_resnet.a", "keras_resnet.b", "keras_resnet.sub.c",
                                   "keras_resnet.a"]]
    graph["keras_resnet.d"].append("keras_resnet.e")
    graph["keras_resnet.e"] = ["keras_resnet.d"]
    assert len(find_cycles(graph)) == 2
    del graph["keras_resnet.sub.c"], graph["keras_resnet.e"]
    assert find_cycle(graph) is None and find_cycles(graph) == []


# -- what an import costs ------------------------------------------------------------------

REPO = os.path.dirname(ROOT)


def run_python(*args, backend="tensorflow"):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def imported_modules(proc):
    """Top-level modules a ``python -X importtime`` run imported."""
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("statement", [
    "import keras_resnet", "import keras_resnet.specs", "import keras_resnet.architecture",
    "import keras_resnet.counting", "from keras_resnet import zoo, __version__"])
def test_light_imports_import_neither_keras_nor_tensorflow(statement):
    code = f"import sys; {statement}; print(sorted({{'keras', 'tensorflow', 'jax'}} & set(sys.modules)))"
    assert run_python("-c", code).stdout.split()[-1] == "[]"


@pytest.mark.parametrize("argv", [["zoo"], ["zoo", "--markdown", "resnet50"], ["--help"]])
def test_the_zoo_command_runs_without_tensorflow(argv):
    proc = run_python("-X", "importtime", "-m", "keras_resnet", *argv)
    modules = imported_modules(proc)
    assert "keras_resnet" in modules and "argparse" in modules  # the log is read right
    assert not modules & {"tensorflow", "keras", "jax"}, sorted(modules & {"tensorflow", "keras"})
    if argv[0] == "zoo":
        assert "resnet50" in proc.stdout and "25,557,032" in proc.stdout


def test_lazy_names_work_and_layers_register():
    code = """
import sys
import keras_resnet
assert keras_resnet.__version__ == "0.1.0"
from keras_resnet import counting      # a submodule import must not hide `flops`
import keras_resnet.specs
print("keras" in sys.modules)
model = keras_resnet.ResNet(8, input_shape=(8, 8, 3))
print(keras_resnet.flops(model) == counting.count(8, input_shape=(8, 8, 3)).macs)
print(keras_resnet.WideResNet(10, 1).name, keras_resnet.layers.ResidualBlock.__name__,
      keras_resnet.specs.ZOO["resnet50"].family)
print(keras_resnet.from_keras_applications.__module__)
print(sorted(set(keras_resnet.__all__) - set(dir(keras_resnet))))
"""
    lines = run_python("-c", code).stdout.split("\n")
    assert lines[:5] == ["False", "True", "wrn_10_1 ResidualBlock imagenet",
                         "keras_resnet.convert", "[]"]


def test_keras_already_imported_registers_the_layers(tmp_path):
    """`import keras, keras_resnet` then load_model: the custom layers are registered.

    One fresh process: with Keras alone the file's blocks are unknown; once keras_resnet
    is imported (Keras already was), the same file loads. The file is saved here."""
    import keras

    from keras_resnet import layers as kl

    path = str(tmp_path / "m.keras")
    inputs = keras.Input((8, 8, 4))
    keras.Model(inputs, kl.ResidualBlock(4, name="b")(inputs)).save(path)
    load = f"""
import sys
import keras
try:
    keras.saving.load_model({path!r})
except Exception as e:
    print("without keras_resnet:", type(e).__name__, " ".join(str(e).split()))
else:
    print("without keras_resnet: loaded")
print("keras_resnet" in sys.modules)
import keras_resnet
print(type(keras.saving.load_model({path!r}).layers[1]).__name__)
"""
    lines = run_python("-c", load).stdout.splitlines()
    assert lines[-2:] == ["False", "ResidualBlock"], lines
    assert "Could not locate class 'ResidualBlock'" in lines[-3], lines
