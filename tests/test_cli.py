"""`python -m keras_resnet` (the zoo table and summaries)."""

import pytest

from keras_resnet import __main__ as cli
from keras_resnet import architecture, models, specs, zoo
from tests.test_models import PINNED


def test_zoo_rows_match_pins_and_paper(capsys):
    assert cli.main(["zoo", "resnet20_cifar", "preact_resnet164_cifar", "resnet18"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["model", "depth", "family", "block"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"resnet20_cifar", "preact_resnet164_cifar", "resnet18"}
    assert "269,722" in rows["resnet20_cifar"] and "0.27M" in rows["resnet20_cifar"]
    assert "8.75" in rows["resnet20_cifar"]
    assert f"{PINNED['preact_resnet164_cifar'][0]:,}" in rows["preact_resnet164_cifar"]
    assert " yes " in rows["preact_resnet164_cifar"] and "bottleneck" in rows["preact_resnet164_cifar"]
    assert "1.81" in rows["resnet18"] and "11,689,512" in rows["resnet18"]


def test_zoo_markdown(capsys):
    assert cli.main(["zoo", "--markdown", "wrn_40_4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| model | depth |") and out[1].startswith("|---|")
    assert out[2].startswith("| wrn_40_4 | 40 | cifar | basic | yes | 8,949,210 |")


def test_unknown_model_exits_2(capsys):
    assert cli.main(["summary", "resnet7"]) == 2
    assert "unknown model 'resnet7'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`name`.*'resnet7'"):
        zoo.build("resnet7")


def test_summary_prints_the_keras_summary_and_the_multiply_adds(capsys):
    """In this process (``python -m keras_resnet`` itself runs as a command in
    tests/test_imports.py::test_the_zoo_command_runs_without_tensorflow)."""
    assert cli.main(["summary", "resnet20_cifar"]) == 0
    out = capsys.readouterr().out
    assert "stage3_block3" in out and "multiply-adds per example: 40,551,040" in out


def test_zoo_lists_every_model_under_the_name_its_architecture_gives(capsys):
    """The table lists specs.ZOO in order, and each name follows from what the entry
    resolves to: pre-activation or not, depth counted from the blocks, family, width."""
    assert cli.main(["zoo"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert [r[0] for r in rows] == list(specs.ZOO)
    for (name, depth, family, block, *_), entry in zip(rows, specs.ZOO.values()):
        arch = zoo.resolve(name)
        if entry.builder == "WideResNet":  # WRN-d-k: n = (d - 4) / 6 blocks per stage
            arch_depth = arch.num_blocks // 3 * 6 + 4
            expected = architecture.wide_name(arch_depth, arch.stage_filters[0] // 16)
        else:
            arch_depth = arch.depth
            expected = (("preact_" if arch.ordering == "full_preact" else "") + f"resnet{arch_depth}"
                        + ("_cifar" if arch.family == "cifar" else ""))
        assert (name, int(depth), family, block) == (expected, arch_depth, arch.family, arch.block)


def test_zoo_table_is_counted_without_building(monkeypatch, capsys):
    """Every row comes from the architecture: building a model would fail here."""
    def refuse(*args, **kwargs):
        raise AssertionError("the zoo table built a model")

    monkeypatch.setattr(models, "build", refuse)
    assert cli.main(["zoo", "resnet152", "wrn_28_10"]) == 0
    out = capsys.readouterr().out
    assert f"{PINNED['resnet152'][0]:,}" in out and f"{PINNED['wrn_28_10'][0]:,}" in out
    assert f"{PINNED['resnet152'][1] / 1e9:.2f}" in out
