"""The search's picture says what its point labels are (issue 18: "8-1", "8-2" had no key)."""

import pytest

pytest.importorskip("matplotlib")


def test_pareto_labels_are_explained_in_the_legend(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from keras_resnet.tuning import results

    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (drawn.append(self),
                                                                 save(self, *a, **k)))
    rows = [{"trial": str(i), "status": "completed", "depth": d, "width": w, "preact": False,
             "macs": m, "val_accuracy": a}
            for i, (d, w, m, a) in enumerate([(8, 1, 1e6, 0.80), (8, 2, 4e6, 0.90),
                                              (14, 1, 2e6, 0.70)])]
    results.plot(str(tmp_path / "results.png"), rows)
    assert (tmp_path / "results.png").stat().st_size > 1000
    ax = drawn[0].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Pareto front (labels: depth-width)" in legend
    # the labelled points are the front's: (8, 1) and (8, 2); (14, 1) is beaten by (8, 1)
    assert sorted(t.get_text() for t in ax.texts) == ["8-1", "8-2"]
    assert sorted(tuple(t.xy) for t in ax.texts) == [(1e6, 0.80), (4e6, 0.90)]
