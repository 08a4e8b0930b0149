"""``tlbench explain``: intermediate feature maps (and Grad-CAM) of one cell's model on one stored test image.

Which weights: a cell run with ``TLBENCH_SAVE_WEIGHTS=1`` keeps its tested (best-epoch) weights in
``cells/<cell_id>/weights.pth`` (a torch state dict, loaded with ``weights_only=True``; never a pickle, so
opening a shared results folder cannot execute code); explain builds the same architecture and loads exactly
those weights through ``Backend.load_weights``, so the maps and the Grad-CAM are those of the trained model.
Without saved weights nothing is retrained: the model is built from the cell's recorded pretrained weights,
which for ``linear_probe`` *is* the trained backbone (it was frozen) and for fine-tuned cells is the backbone
before fine-tuning; the figure says which. Grad-CAM needs the trained head, so it is drawn only with saved
weights; a ``scratch`` cell without saved weights is refused (its random init explains nothing).

The image is one of the test images stored in ``predictions.npz`` (already at the model's input size), so no
dataset is loaded. Feature maps use the torch backends' stage structure (``stage_parameter_names``) and forward
hooks, reached through the backend object: this module imports no framework itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.strategies import get_strategy
from ..running.artifacts import Predictions, cell_dir, find_weights, load_predictions
from ..running.backend_options import backend_options
from ..running.config import RunOptions
from ..running.results import cell_id, latest_by_cell, load_results

#: stage maps shown by default
DEFAULT_STAGES = 4


class ExplainError(ValueError):
    """A bad ``tlbench explain`` request (unknown cell, image index, unsupported backend...), one line."""


@dataclass
class Explanation:
    """What ``explain_cell`` computed.

    Attributes:
        cell: the cell id.
        image: the input image, uint8 ``(H, W, C)``.
        true_label: its true class index; ``predicted``: the model's class index (``None`` without trained
            weights: a fresh head predicts nothing); ``class_names``: names.
        stage_names: module names of the hooked stages, input side first.
        stage_maps: mean activation over channels per stage, float ``(h, w)``, same order.
        gradcam: Grad-CAM map of the last stage for the predicted class, ``(h, w)`` in 0..1, or ``None``.
        weights_source: ``"trained"`` (loaded from the cell's saved weights) or the pretrained source used.
    """

    cell: str
    image: np.ndarray
    true_label: int
    predicted: int | None
    class_names: list[str]
    stage_names: list[str]
    stage_maps: list[np.ndarray]
    gradcam: np.ndarray | None
    weights_source: str
    probs: np.ndarray = field(default_factory=lambda: np.zeros(0))


# ---- choosing the cell and the image --------------------------------------------------------------------
def _cell_ids(records: list[dict[str, Any]]) -> list[str]:
    return [
        cell_id(
            r["backend"], r["model"], r["strategy"], r["dataset"], int(r["seed"]), r.get("train_size"), r.get("draw")
        )
        for r in records
    ]


def select_record(suite_dir: Path, cell: str | None) -> dict[str, Any]:
    """The latest record of ``cell`` (a cell id, the name of its ``cells/`` directory), or the best ok cell.

    Raises:
        ExplainError: no results, unknown cell id (the message lists some valid ones) or a failed cell.
    """
    records = latest_by_cell(load_results(suite_dir / "results.jsonl"))
    if not records:
        raise ExplainError(
            f"{suite_dir} holds no results.jsonl records; expected a suite directory made by `tlbench run`"
        )
    ids = _cell_ids(records)
    if cell is None:
        ok = [r for r in records if r.get("status") == "ok" and r.get("accuracy") is not None]
        if not ok:
            raise ExplainError(f"{suite_dir} has no finished cell to explain")
        return max(ok, key=lambda r: r["accuracy"])
    if cell not in ids:
        shown = ", ".join(ids[:6]) + (", ..." if len(ids) > 6 else "")
        raise ExplainError(f"unknown cell {cell!r} in {suite_dir}; expected one of: {shown}")
    record = records[ids.index(cell)]
    if record.get("status") != "ok":
        raise ExplainError(f"cell {cell!r} failed ({record.get('error')}); expected a finished cell")
    return record


def stored_image(preds: Predictions, index: int, cell: str) -> tuple[np.ndarray, int]:
    """Stored test image number ``index`` of a cell and its true label.

    Raises:
        ExplainError: ``index`` is outside the stored images.
    """
    count = len(preds.sample_indices)
    if not 0 <= index < count:
        raise ExplainError(
            f"--image {index} is out of range for cell {cell!r}; expected 0..{count - 1} (stored test images)"
        )
    return np.asarray(preds.sample_images[index]), int(preds.labels[int(preds.sample_indices[index])])


# ---- building the model ---------------------------------------------------------------------------------------
def suite_options(suite_dir: Path) -> RunOptions:
    """The suite's run options from ``suite.json`` (defaults when absent)."""
    path = suite_dir / "suite.json"
    data = json.loads(path.read_text()).get("options", {}) if path.is_file() else {}
    return RunOptions.from_dict(data)


def build_backend(
    record: dict[str, Any], options: RunOptions, weights_path: Path | None, device: str
) -> tuple[Any, str]:
    """Build the cell's model through the backend registry; restore trained weights when saved.

    Returns:
        The backend and the weights source (``"trained"`` or the pretrained source string).

    Raises:
        ExplainError: unsupported backend, a scratch cell without saved weights, unreadable weights.
    """
    from ...backends import BackendError, ModelSpec, get_backend_class

    strategy = get_strategy(record["strategy"])
    if weights_path is None and not strategy.pretrained:
        raise ExplainError(
            f"cell {record['backend']}/{record['strategy']} trained from scratch and saved no weights; "
            "re-run it with TLBENCH_SAVE_WEIGHTS=1 to explain it"
        )
    try:
        backend = get_backend_class(record["backend"])(device)
    except (KeyError, BackendError) as exc:
        raise ExplainError(str(exc).strip("'\"")) from None
    if not all(hasattr(backend, name) for name in ("to_input", "stage_parameter_names")):
        raise ExplainError(
            "tlbench explain supports the torch backends (timm, torchvision); "
            f"backend {record['backend']!r} has no stage hooks"
        )
    trained = weights_path is not None
    spec = ModelSpec(
        name=record["model"],
        num_classes=int(record["num_classes"]),
        image_size=int(record.get("image_size") or options.image_size),
        weights="none" if trained else options.weights_for(record["backend"]),
        pretrained=strategy.pretrained and not trained,
        allow_random_init=options.allow_random_init,
        in_chans=options.in_chans,
        seed=int(record["seed"]),
        options=backend_options(options, record["backend"]),
    )
    try:
        info = backend.build(spec)
    except BackendError as exc:
        raise ExplainError(str(exc)) from None
    if trained:
        if not str(weights_path).endswith(backend.weights_suffix):
            raise ExplainError(
                f"weights file {str(weights_path)!r} is not a {record['backend']} weights file "
                f"(*{backend.weights_suffix})"
            )
        try:
            backend.load_weights(str(weights_path))
        except BackendError as exc:
            raise ExplainError(str(exc)) from None
        return backend, "trained"
    return backend, info.pretrained


# ---- feature maps and Grad-CAM (torch modules reached through the backend) -----------------------------------
def stage_modules(backend: Any, count: int) -> list[tuple[str, Any]]:
    """Up to ``count`` backbone stages as (module name, module), evenly spaced, the last stage always included.

    A stage's module is the longest common dotted prefix of its parameter names (``blocks.3``, ``layer2``), or
    the module owning its last parameter when the stage has no single parent (a stem of loose layers).
    """
    model = backend.model
    modules = dict(model.named_modules())
    found: list[tuple[str, Any]] = []
    for names in backend.stage_parameter_names(model):
        parts = [n.split(".")[:-1] for n in names]
        common = []
        for items in zip(*parts, strict=False):
            if len(set(items)) != 1:
                break
            common.append(items[0])
        name = ".".join(common) if common else ".".join(parts[-1])
        if name in modules and name not in {n for n, _ in found}:
            found.append((name, modules[name]))
    if not found:
        raise ExplainError(f"model {type(model).__name__} exposes no backbone stages to hook")
    if len(found) <= count:
        return found
    picks = np.unique(np.round(np.linspace(0, len(found) - 1, count)).astype(int))
    return [found[i] for i in picks]


def feature_maps(backend: Any, image: np.ndarray, count: int = DEFAULT_STAGES, gradcam: bool = True) -> dict[str, Any]:
    """Run one image through the model with forward hooks on ``count`` stages.

    Returns:
        ``names``, ``maps`` (channel-mean activation per 4-D stage output, ``(h, w)``), ``probs`` ``(C,)``,
        ``predicted`` and, when asked, ``gradcam``: ReLU of the gradient-weighted sum of the last stage's
        channels for the predicted class, scaled to 0..1 (Selvaraju et al. 2017).
    """
    model = backend.model
    model.eval()
    stages = stage_modules(backend, count)
    outputs: dict[str, Any] = {}

    def hook(name: str):
        def keep(_module, _inputs, output):
            if gradcam and getattr(output, "requires_grad", False):
                output.retain_grad()
            outputs[name] = output

        return keep

    handles = [module.register_forward_hook(hook(name)) for name, module in stages]
    try:
        x = backend.to_input(np.asarray(image)[None])
        for param in model.parameters():
            param.requires_grad_(True)
        logits = model(x)
        probs = logits.detach().float().softmax(dim=1)[0].cpu().numpy()
        predicted = int(probs.argmax())
        cam = None
        names = [n for n, _ in stages if n in outputs and outputs[n].dim() == 4]
        if gradcam and names:
            logits[0, predicted].backward()
            last = outputs[names[-1]]
            if last.grad is not None:
                activation = last.detach().float()[0].cpu().numpy()
                weights = last.grad.detach().float()[0].cpu().numpy().mean(axis=(1, 2))
                cam = np.maximum((weights[:, None, None] * activation).sum(axis=0), 0)
                cam = cam / cam.max() if cam.max() > 0 else cam
        maps = [outputs[n].detach().float()[0].mean(dim=0).cpu().numpy() for n in names]
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
    return {"names": names, "maps": maps, "probs": probs, "predicted": predicted, "gradcam": cam}


def explain_cell(
    suite_dir: Path, cell: str | None = None, image_index: int = 0, stages: int = DEFAULT_STAGES, device: str = "cpu"
) -> Explanation:
    """Compute the feature maps (and Grad-CAM with trained weights) of one cell on one stored test image.

    Raises:
        ExplainError: see ``select_record``, ``stored_image`` and ``build_backend``.
    """
    if not 1 <= stages <= 8:
        raise ExplainError(f"--stages {stages} is out of range; expected 1..8")
    record = select_record(suite_dir, cell)
    name = cell_id(
        record["backend"],
        record["model"],
        record["strategy"],
        record["dataset"],
        int(record["seed"]),
        record.get("train_size"),
        record.get("draw"),
    )
    preds = load_predictions(suite_dir, record)
    if preds is None:
        raise ExplainError(f"cell {name!r} stored no predictions.npz; expected a cell finished by `tlbench run`")
    image, true_label = stored_image(preds, image_index, name)
    weights = find_weights(cell_dir(suite_dir, record))
    backend, source = build_backend(record, suite_options(suite_dir), weights, device)
    result = feature_maps(backend, image, stages, gradcam=source == "trained")
    return Explanation(
        cell=name,
        image=image,
        true_label=true_label,
        predicted=result["predicted"] if source == "trained" else None,
        class_names=preds.class_names,
        stage_names=result["names"],
        stage_maps=result["maps"],
        gradcam=result["gradcam"],
        weights_source=source,
        probs=result["probs"],
    )


# ---- drawing ----------------------------------------------------------------------------------------------------
def draw_explanation(explanation: Explanation, path: Path) -> Path:
    """One row: the input, one mean-activation map per stage, and the Grad-CAM overlay when computed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ex = explanation
    panels = 1 + len(ex.stage_maps) + (ex.gradcam is not None)
    fig, axes = plt.subplots(1, panels, figsize=(2.9 * panels, 3.5), squeeze=False, layout="constrained")
    axes = axes[0]
    image = ex.image[..., 0] if ex.image.shape[-1] == 1 else ex.image
    gray = image.ndim == 2
    name = lambda i: ex.class_names[i] if i < len(ex.class_names) else str(i)  # noqa: E731
    axes[0].imshow(image, cmap="gray" if gray else None)
    predicted = "" if ex.predicted is None else f", pred {name(ex.predicted)}"
    wrong = ex.predicted is not None and ex.predicted != ex.true_label
    axes[0].set_title(
        f"input\ntrue {name(ex.true_label)}{predicted}", fontsize=9, color="#c00000" if wrong else "black"
    )
    for ax, stage, fmap in zip(axes[1:], ex.stage_names, ex.stage_maps, strict=False):
        shown = ax.imshow(fmap, cmap="viridis")
        ax.set_title(f"{stage}\nmean activation {fmap.shape[0]}×{fmap.shape[1]}", fontsize=9)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    if ex.gradcam is not None:
        ax = axes[-1]
        ax.imshow(image, cmap="gray" if gray else None)
        h, w = ex.image.shape[:2]
        ax.imshow(
            ex.gradcam,
            cmap="jet",
            alpha=0.45,
            extent=(-0.5, w - 0.5, h - 0.5, -0.5),
            interpolation="bilinear",
            vmin=0,
            vmax=1,
        )
        ax.set_title(
            f"Grad-CAM ({ex.stage_names[-1]})\nclass {name(ex.predicted)} p={ex.probs[ex.predicted]:.2f}", fontsize=9
        )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    weights = (
        "trained weights"
        if ex.weights_source == "trained"
        else f"pretrained backbone {ex.weights_source}, trained weights not saved"
    )
    fig.suptitle(f"{ex.cell} — {weights}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def default_output(suite_dir: Path, explanation: Explanation, image_index: int) -> Path:
    """``<suite>/explain/<cell_id>__img<N>.png``."""
    return suite_dir / "explain" / f"{explanation.cell}__img{image_index}.png"
