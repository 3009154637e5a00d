"""tleg-dist: distributed training for TLEG (Transformer as Linear Expansion of Learngene).

    lg = tleg_dist.load_learngene("local-dir:FOLDER")   # a learngene folder, or its .safetensors file
    model = timm.create_model("local-dir:RUN/model", pretrained=True)   # a trained Des-Net

The folders import downwards only, from utils (bottom) through models, artifacts, config, data,
training and convert to plans (top), with no cycle; tests/test_imports.py holds the full order
and fails on an import against it.
"""

__version__ = "0.1.0"


def load_learngene(path):
    """A `LearngeneFile` (arch, aux_depth, tensors) from a learngene file, its folder or "local-dir:FOLDER"."""
    from tleg_dist.artifacts.learngene import load  # imported here: `import tleg_dist` stays free of torch

    return load(path)
