"""`python -m keras_resnet` (the zoo table and summaries)."""

import subprocess
import sys

import pytest

from keras_resnet import __main__ as cli
from keras_resnet import specs, zoo
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


def test_summary_subprocess():
    out = subprocess.run([sys.executable, "-m", "keras_resnet", "summary", "resnet20_cifar"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "stage3_block3" in out.stdout and "multiply-adds per example: 40,551,040" in out.stdout


def test_zoo_names_are_generated_from_table():
    assert all(specs.ZOO[n].name == n for n in specs.ZOO)
