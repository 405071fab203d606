"""Random torchvision ResNets, their state dicts and their outputs: the reference of
tests/test_weights_torch.py, run in a process of its own.

torchvision's C extension crashes a process that has already loaded TensorFlow
(segmentation fault at ``import torchvision``, torch 2.14 / torchvision 0.29), and
every test process has; so the tests run this file with ``python`` and read back
what it wrote. torch and torchvision are imported inside :func:`main` only, so
pytest's doctest collection can import this module safely.

Usage: ``python tests/torchvision_reference.py OUT_DIR NAME:SEED ...``. Reads
``OUT_DIR/inputs.npz`` (NHWC float32 image batches) and writes, per model,
``NAME.pth``, ``NAME.safetensors`` (the same state dict) and ``NAME_outputs.npz``
(``<input>_logits`` and ``<input>_features``: eval-mode logits and pooled features).
"""

import sys


def randomize(torch, model, generator, size=64):
    """Random BatchNorm affine parameters and running statistics, an O(1) classifier.

    The running statistics start as one random batch's statistics (so activations
    stay O(1)), then each is perturbed: mean + N(0, 0.2) std, variance x U(0.5, 1.5).
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=generator) * 0.2)
            bn.momentum = 1.0  # one training batch sets the running statistics
        model.train()
        model(torch.randn(4, 3, size, size, generator=generator))
        for bn in norms:
            std = bn.running_var.sqrt()
            bn.running_mean.add_(torch.randn(std.shape, generator=generator) * 0.2 * std)
            bn.running_var.mul_(torch.rand(std.shape, generator=generator) + 0.5)
            bn.momentum = 0.1
        model.eval()
        scale = features(torch, model)(torch.randn(2, 3, size, size, generator=generator)).std()
        fc = model.fc
        fc.weight.copy_(torch.randn(fc.weight.shape, generator=generator)
                        / (scale * fc.in_features ** 0.5))
        fc.bias.copy_(torch.randn(fc.bias.shape, generator=generator) * 0.1)
    return model


def features(torch, model):
    """Everything but the classifier: the pooled, flattened features."""
    return torch.nn.Sequential(*list(model.children())[:-1], torch.nn.Flatten(1))


def main(out_dir, specs):
    import numpy as np
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    inputs = dict(np.load(f"{out_dir}/inputs.npz"))
    for spec in specs:
        name, seed = spec.split(":")
        generator = torch.Generator().manual_seed(int(seed))
        torch.manual_seed(int(seed))  # torchvision's own initialisation of the kernels
        model = randomize(torch, getattr(torchvision.models, name)(weights=None), generator)
        torch.save(model.state_dict(), f"{out_dir}/{name}.pth")
        save_file(model.state_dict(), f"{out_dir}/{name}.safetensors")
        outputs = {}
        with torch.no_grad():
            for key, x in inputs.items():
                t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
                outputs[f"{key}_logits"] = model(t).numpy()
                outputs[f"{key}_features"] = features(torch, model)(t).numpy()
        np.savez(f"{out_dir}/{name}_outputs.npz", **outputs)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
