"""Model cards (README.md) for model and learngene folders: Hub front matter and markdown, written here.

A card says what the weights are, where they came from (the learngene's file hash and aux
depth), the recipe and data they were trained with, and the final metrics of the run.
Every field is optional: `convert expand` knows no recipe, an old checkpoint no summary.
"""

from __future__ import annotations

import hashlib

import yaml

from tleg_dist.artifacts import learngene as learngene_file
from tleg_dist.models.arch import ViTArch

CITATION = """@inproceedings{xia2024tleg,
  title={Transformer as Linear Expansion of Learngene},
  author={Xia, Shiyu and Zhang, Miaosen and Yang, Xu and Chen, Ruiming and Chen, Haokun and Geng, Xin},
  booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
  year={2024},
  note={arXiv:2312.05614}
}"""
TAGS = ("image-classification", "timm", "tleg-dist", "learngene")
METRICS = ("val_top1", "val_top5", "val_loss", "best_top1", "status", "epoch", "global_step", "images_seen")
_RECIPE_KEYS = {"data": ("format", "root", "train_path", "classes", "train_limit", "mean", "std"),
                "optim": ("lr", "base_lr", "weight_decay", "warmup_epochs"),
                "train": ("epochs", "max_steps"), "distill": ("type",)}


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def learngene_source(path) -> dict | None:
    """What a card says about the learngene a Des-Net came from (None: not learngene-initialised)."""
    if path is None:
        return None
    path = learngene_file.weights_path(path)
    if not path.is_file():
        return {"file": str(path), "sha256": "unknown (file not found at export time)"}
    _, _, aux_depth = learngene_file.read_header(path)
    return {"file": path.name, "sha256": sha256(path), "aux_depth": aux_depth}


def _recipe(run_config: dict) -> dict:
    out = {"stage": run_config.get("stage"), "seed": run_config.get("seed")}
    for section, keys in _RECIPE_KEYS.items():
        sec = run_config.get(section) or {}
        out |= {f"{section}.{k}": sec[k] for k in keys if sec.get(k) is not None}
    return out


def _metrics(summary: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items() if k in METRICS}


def _details(details: dict) -> str:
    """"- **Name:** value" lines; a dict value as indented "key: value" lines."""
    lines = []
    for name, value in details.items():
        if value in (None, {}):
            continue
        if isinstance(value, dict):
            lines += [f"- **{name}:**"] + [f"  - {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"- **{name}:** {value}")
    return "\n".join(lines) + "\n"


def _render(title: str, description: str, details: dict, usage: str, run_config: dict | None,
            library: str = "timm") -> str:
    front = {"tags": list(TAGS), "pipeline_tag": "image-classification", "library_name": library,
             "license": "apache-2.0"}
    text = (f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n# Model card for {title}\n\n{description}\n\n"
            f"## Model Details\n{_details(details)}\n## Model Usage\n{usage}\n"
            f"## Citation\n```bibtex\n{CITATION}\n```\n")
    if run_config:  # the whole resolved recipe: the run can be repeated from the card alone
        text += ("\n## Training recipe\n\nThe resolved config of the run (`config.yaml` in its run folder):\n\n"
                 f"```yaml\n{yaml.safe_dump(run_config, sort_keys=False)}```\n")
    return text


def des_net_card(arch: ViTArch, depth: int, preprocessing: dict, *, run_config: dict | None = None,
                 summary: dict | None = None, learngene: dict | None = None, origin: str = "") -> str:
    init = (run_config or {}).get("model", {}).get("init")
    what = ("a learngene expanded to this depth, not trained after expansion" if run_config is None
            else f"fine-tuned by tleg-dist from a {init or 'scratch'} initialisation")
    description = (f"A TLEG Des-Net: a plain timm VisionTransformer of depth {depth} (width "
                   f"{arch.embed_dim}, no class token, average pooling), {what}. {origin}").strip()
    details = {"Model type": "Image classification / TLEG Des-Net",
               "Architecture": {**arch.to_dict(), "depth": depth},
               "Learngene": learngene, "Eval preprocessing": preprocessing,
               "Recipe": _recipe(run_config) if run_config else None,
               "Final metrics": _metrics(summary) if summary else None}
    usage = ("```python\nimport timm\nfrom PIL import Image\n"
             'model = timm.create_model("local-dir:PATH/TO/THIS/FOLDER", pretrained=True).eval()\n'
             "cfg = timm.data.resolve_data_config(model=model)\n"
             "x = timm.data.create_transform(**cfg)(Image.open(\"image.png\").convert(\"RGB\" if cfg[\"input_size\"][0] "
             "== 3 else \"L\")).unsqueeze(0)\nlogits = model(x)\n```\n")
    return _render(f"TLEG Des-Net, depth {depth}", description, details, usage, run_config)


def learngene_card(config: dict, *, run_config: dict | None = None, summary: dict | None = None) -> str:
    """`config`: the learngene folder's config.json (learngene_file.folder_config)."""
    description = ("A TLEG learngene: two tensors theta_A, theta_B per transformer-block tensor plus the shared "
                   "patch embedding, position embedding, final norm and head. Layer l of an L-layer Des-Net "
                   "gets theta_A + (l/L) * theta_B, for any L.")
    details = {"Model type": "TLEG learngene (not a timm model: load it with tleg_dist.load_learngene)",
               "Learngene": config, "Recipe": _recipe(run_config) if run_config else None,
               "Final metrics (of the Aux-Net)": _metrics(summary) if summary else None}
    usage = ("```python\nimport tleg_dist\n"
             'lg = tleg_dist.load_learngene("local-dir:PATH/TO/THIS/FOLDER")   # or the .safetensors file\n'
             "print(lg.arch, lg.aux_depth)\n```\n\nExpand it into timm model folders of any depth:\n\n"
             "```bash\npython -m tleg_dist.convert expand PATH/TO/THIS/FOLDER --depths 3 6 12 --out des/\n```\n")
    # Not loadable by timm itself: the hub metadata must not say library_name: timm.
    return _render("TLEG learngene", description, details, usage, run_config, library="tleg-dist")
