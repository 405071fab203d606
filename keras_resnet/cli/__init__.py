"""The command lines: one ``keras-resnet`` command with subcommands, and the recipes' parsers.

* ``fields``: argparse flags generated from the configuration dataclasses' fields
  (help, choices and parser are declared once, beside each field), the one
  help formatter and the one-line-error parser;
* ``groups``: the argument groups the commands compose;
* one module per subcommand: ``train``, ``finetune``, ``tune``, ``experiment``,
  ``analyze``, ``data``, ``zoo``, ``serve`` (export and predict), ``bench``;
* ``main``: the ``keras-resnet`` dispatcher (also ``python -m keras_resnet``).

Every module here parses and checks its flags before Keras or TensorFlow is
imported, so ``--help`` and bad input answer at once.
"""
