"""torchvision models adapted to small images, and the image transforms of the CIFAR recipe.

Used by ``scripts/train_proxy.py`` and ``scripts/train_on_coreset.py`` (the authors' CIFAR
recipe): ResNet-18 with a 3x3 stride-1 stem and no max-pool, and the other target architectures
of the paper's Table 6 (ResNet-34/50, VGG-19-BN, DenseNet-121) adapted the same way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "TorchvisionClassifier",
    "find_image_column",
    "image_collator",
    "image_transforms",
    "make_small_image_model",
    "sgd_recipe",
    "top1_accuracy",
]

IMAGE_CANDIDATES = ("image", "img", "pixel_values")

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "vgg19_bn", "densenet121")


class TorchvisionClassifier(nn.Module):
    """Wrap a torchvision classifier so ``forward(pixel_values, labels=None)`` returns a dict
    with ``logits`` (and ``loss`` when labels are given), as ``LossRecorder`` and ``Trainer``
    expect.

    Examples
    --------
    >>> lin = nn.Linear(4, 3)
    >>> _ = nn.init.zeros_(lin.weight), nn.init.zeros_(lin.bias)
    >>> net = TorchvisionClassifier(nn.Sequential(nn.Flatten(), lin))
    >>> out = net(torch.zeros(2, 1, 2, 2), labels=torch.tensor([0, 2]))
    >>> tuple(out["logits"].shape), round(out["loss"].item(), 4)  # equal logits: ln 3
    ((2, 3), 1.0986)
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def make_small_image_model(arch: str, num_classes: int, *, in_channels: int = 3,
                           seed: int | None = None) -> TorchvisionClassifier:
    """A torchvision ``arch`` adapted to 32x32 inputs, randomly initialised (no download).

    ResNets and DenseNet get a 3x3 stride-1 stem without max-pool (as the authors' CIFAR
    ResNet-18); VGG-19-BN pools its features to 1x1 and classifies with one linear layer.

    Parameters
    ----------
    arch : {"resnet18", "resnet34", "resnet50", "vgg19_bn", "densenet121"}
    num_classes : int
    in_channels : int, default 3
    seed : int, optional

    Examples
    --------
    >>> model = make_small_image_model("resnet18", 10, in_channels=1, seed=0)
    >>> tuple(model(torch.zeros(2, 1, 32, 32))["logits"].shape)
    (2, 10)
    """
    import torchvision

    if arch not in ARCHITECTURES:
        raise ValueError(f"arch == {arch!r}, must be one of {list(ARCHITECTURES)}.")
    if seed is not None:
        torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if arch.startswith("resnet"):
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif arch == "densenet121":
        width = net.features.conv0.out_channels
        net.features.conv0 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1,
                                       bias=False)
        net.features.pool0 = nn.Identity()
    else:  # vgg19_bn
        first = net.features[0]
        net.features[0] = nn.Conv2d(in_channels, first.out_channels, kernel_size=3, padding=1)
        net.avgpool = nn.AdaptiveAvgPool2d(1)
        net.classifier = nn.Linear(512, num_classes)
    return TorchvisionClassifier(net)


def find_image_column(column_names, image_column: str | None = None) -> str:
    """The image column: ``image_column`` if given, else ``image``, ``img``, ``pixel_values``.

    Examples
    --------
    >>> find_image_column(["img", "label"])
    'img'
    """
    names = list(column_names)
    if image_column is not None:
        if image_column not in names:
            raise ValueError(f"image_column {image_column!r} not in the dataset; columns: {names}.")
        return image_column
    for name in IMAGE_CANDIDATES:
        if name in names:
            return name
    raise ValueError(
        f"No image column found: looked for {list(IMAGE_CANDIDATES)} in {names}. "
        f"Pass --image_column <name>."
    )


def _as_tensor(image) -> torch.Tensor:
    """CHW float tensor in [0, 1] from a PIL image, an array or a tensor."""
    if isinstance(image, torch.Tensor):
        t = image.float()
    elif hasattr(image, "mode"):  # PIL
        arr = np.asarray(image, dtype=np.float32) / 255.0
        t = torch.from_numpy(arr[:, :, None] if arr.ndim == 2 else arr).permute(2, 0, 1)
    else:
        t = torch.as_tensor(np.asarray(image, dtype=np.float32))
    if t.ndim == 2:
        t = t[None]
    return t.contiguous()


def image_transforms(*, image_column: str, size: int = 32, train: bool, crop_padding: int = 4,
                     hflip: bool = True, mean=0.5, std=0.5):
    """A ``datasets`` batch transform giving ``pixel_values`` (float, CHW, normalised).

    ``train=True`` adds the CIFAR augmentation: random crop with ``crop_padding`` and a random
    horizontal flip (``hflip``). ``train=False`` is the recording / evaluation transform.

    Examples
    --------
    >>> tf = image_transforms(image_column="pixel_values", size=4, train=False)
    >>> out = tf({"pixel_values": [np.ones((1, 2, 2), dtype=np.float32)]})
    >>> tuple(out["pixel_values"][0].shape), float(out["pixel_values"][0].max())
    ((1, 4, 4), 1.0)
    """
    from torchvision.transforms import v2

    steps = [v2.Resize((size, size), antialias=True)]
    if train:
        steps.append(v2.RandomCrop(size, padding=crop_padding))
        if hflip:
            steps.append(v2.RandomHorizontalFlip())
    pipeline = v2.Compose(steps)

    def transform(batch):
        images = [(pipeline(_as_tensor(img)) - mean) / std for img in batch[image_column]]
        batch = dict(batch)
        if image_column != "pixel_values":
            del batch[image_column]
        batch["pixel_values"] = images
        return batch

    return transform


def image_collator(label_column: str):
    """Collate rows holding ``pixel_values`` tensors and ``label_column`` into a batch with
    ``pixel_values`` and ``labels``; the recorder's row index (``cld_hf_index``) is kept when
    present (training batches of ``train_pass``).

    Examples
    --------
    >>> batch = image_collator("label")([{"pixel_values": torch.zeros(1, 2, 2), "label": 3}] * 2)
    >>> tuple(batch["pixel_values"].shape), batch["labels"].tolist()
    ((2, 1, 2, 2), [3, 3])
    """
    from ..recording.indexing import INDEX_KEY

    def collate(rows):
        batch = {"pixel_values": torch.stack([r["pixel_values"] for r in rows]),
                 "labels": torch.tensor([r[label_column] for r in rows])}
        if INDEX_KEY in rows[0]:
            batch[INDEX_KEY] = torch.tensor([r[INDEX_KEY] for r in rows])
        return batch

    return collate


def sgd_recipe(parameters, *, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4,
               nesterov: bool = True, milestones=(81, 121), gamma: float = 0.1):
    """The authors' CIFAR optimiser: SGD with Nesterov momentum and a step schedule (per epoch).

    Returns ``(optimizer, scheduler)``; call ``scheduler.step()`` once per epoch.

    Examples
    --------
    >>> opt, sched = sgd_recipe(torch.nn.Linear(2, 2).parameters(), milestones=[1])
    >>> opt.step(); sched.step(); round(opt.param_groups[0]["lr"], 6)
    0.01
    """
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                nesterov=nesterov)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones),
                                                     gamma=gamma)
    return optimizer, scheduler


def top1_accuracy(model, loader, accelerator) -> float:
    """Top-1 accuracy of ``model`` on a prepared ``loader``, gathered over processes without the
    padding duplicates (``gather_for_metrics``).

    Examples
    --------
    >>> from accelerate import Accelerator
    >>> net = TorchvisionClassifier(nn.Flatten())          # "logits" = the two pixels
    >>> rows = [{"pixel_values": torch.tensor([[[1.0, 0.0]]]), "label": 0},
    ...         {"pixel_values": torch.tensor([[[1.0, 0.0]]]), "label": 1}]
    >>> loader = torch.utils.data.DataLoader(rows, batch_size=2, collate_fn=image_collator("label"))
    >>> top1_accuracy(net, loader, Accelerator(cpu=True))
    0.5
    """
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            pred = model(pixel_values=batch["pixel_values"])["logits"].argmax(-1)
            pred, labels = accelerator.gather_for_metrics((pred, batch["labels"]))
            correct += int((pred == labels).sum())
            total += len(labels)
    return correct / max(total, 1)
