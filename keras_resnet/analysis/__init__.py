"""Why residual networks work, measured on the user's own models.

* :mod:`~keras_resnet.analysis.lesion`: delete and reorder blocks of a trained
  network (Veit et al. 2016, Fig. 3-5);
* :mod:`~keras_resnet.analysis.paths`: paths by length and the gradient they
  carry (Veit et al. 2016, Fig. 6);
* :mod:`~keras_resnet.analysis.shattered`: the gradient of a 1-D input across
  a grid, feed-forward nets against ResNets (Balduzzi et al. 2017, Fig. 1-2);
* :mod:`~keras_resnet.analysis.plots`: one picture per analysis (matplotlib,
  PNG or SVG).

Every analysis returns plain JSON-serialisable data. The recipes
``recipes/lesion.py``, ``recipes/paths.py`` and ``recipes/shattered_gradients.py``
run them from the command line (:mod:`keras_resnet.cli.analyze`).
"""

from keras_resnet.analysis.inputs import load_arrays
from keras_resnet.analysis.lesion import accuracy, kendall_tau, lesion_study
from keras_resnet.analysis.network import (AnalysisError, load_model, lesioned_model,
                                           network_chain)
from keras_resnet.analysis.paths import (effective_paths, gradient_by_path_length,
                                         path_gradients, path_length_distribution)
from keras_resnet.analysis.plots import plot_lesion, plot_paths, plot_shattered
from keras_resnet.analysis.shattered import autocorrelation, gradient_net, shattered_gradients

__all__ = [
    "AnalysisError", "accuracy", "autocorrelation", "effective_paths", "gradient_by_path_length",
    "gradient_net", "kendall_tau", "lesion_study", "lesioned_model", "load_arrays", "load_model",
    "network_chain", "path_gradients", "path_length_distribution", "plot_lesion", "plot_paths",
    "plot_shattered", "shattered_gradients",
]
