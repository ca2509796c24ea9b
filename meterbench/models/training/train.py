"""Train the digit-wheel or pointer-dial model from scratch on CPU and export it to ONNX.

    python -m meterbench.models.training.train --kind digit --out meterbench/models/
    python -m meterbench.models.training.train --kind dial --out meterbench/models/

Needs the [train] extra (torch, onnx). The model classifies a crop into 100
circular tenths; the loss is cross-entropy against a circular Gaussian soft
label (σ = 1 tenth, wrapping 99 ↔ 0). Whole split units (digits) or dials
(pointers) are held out as the dev set; figures are reported on it only.
`--all-data` then retrains the shipped model on everything (dev figures of the
held-out run must be kept from that earlier run).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from meterbench.models._calibrate import ABSTAIN_SHARE, HIT_TOLERANCE, fit_abstention
from meterbench.models._metrics import wheel_metrics
from meterbench.models._runtime import (
    DEFAULT_INPUT,
    MODEL_FILE,
    N_CLASSES,
    PLANES,
    Abstention,
    InputSpec,
    decode_logits,
    decode_probs,
    input_spec,
    preprocess_crop,
    preprocess_crops,
)
from meterbench.models.training.negatives import NegativeSource
from meterbench.models.training.synthetic import digit_strips, font_inventory, render_wheel
from meterbench.models.training.synthetic_dials import render_dial

DATA_ROOT = Path(__file__).resolve().parents[4] / "shared" / "data"
DATA_DIR = {"digit": DATA_ROOT / "meterdigits", "dial": DATA_ROOT / "pointers"}
# Dev split units, chosen before any training: water (black on white, red
# wheels), power (white on red, dim grey). Gas wheels only exist in the big
# iotson split unit, which cannot be held out.
DEV_UNITS = {
    "digit": (
        "collected/watermeter/Wasser_Geraete_GmbH",
        "collected/watermeter/integra/NiLi",
        "collected/powermeter/Landis_Gyr_-_MM2600JH",
        "collected/powermeter/unknown/timm",
    ),
    "dial": ("zeiger4",),
}
LABEL_SIGMA_TENTHS = 1.0
REJECT_LABEL = -1.0  # label of a "not a wheel" training image (class 100 of a model with a reject class)
# Negative kinds drawn in training; "gradient" and "stripes" are left out so that the
# report shows how the reject class does on kinds it never saw.
TRAIN_NEGATIVE_KINDS = ("noise", "flat", "text", "photo")
_GREY = "grey (BGR weights .114 .587 .299), per crop (x-mean)/max(std,4)"
NORMALISATION = {
    "grey": _GREY,
    "grey+redness": _GREY + "; plane 2: redness R-max(G,B) / max(max, 20)",
    "bgr": "B, G, R planes, per crop (x-mean)/max(std,4) over all three",
}


@dataclass
class CropSet:
    """Crops loaded at 2× model size (BGR uint8), labels in tenths, their group and split unit."""

    paths: list[str]
    images: list[np.ndarray]
    tenths: np.ndarray
    groups: list[str]
    units: list[str]

    def subset(self, keep: np.ndarray) -> CropSet:
        idx = np.flatnonzero(keep)
        return CropSet(
            [self.paths[i] for i in idx],
            [self.images[i] for i in idx],
            self.tenths[idx],
            [self.groups[i] for i in idx],
            [self.units[i] for i in idx],
        )


def _split_units(data_dir: Path) -> dict[str, str]:
    groups_csv = data_dir / "groups.csv"
    if not groups_csv.is_file():
        return {}
    with groups_csv.open(newline="") as f:
        return {row["group"]: row["split_unit"] for row in csv.DictReader(f)}


def load_crops(spec: InputSpec, data_dir: Path, limit: int | None = None) -> CropSet:
    """Read labels.csv and its images (resized to 2× the model input `spec`) from `data_dir`."""
    labels_csv = data_dir / "labels.csv"
    if not labels_csv.is_file():
        raise FileNotFoundError(f"{labels_csv}: labels file not found")
    unit_of = _split_units(data_dir)
    _, height, width = spec.shape
    with labels_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if limit:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    crops = CropSet([], [], np.zeros(0), [], [])
    tenths = []
    for line, row in enumerate(rows, start=2):
        image = cv2.imread(str(data_dir / row["path"]), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{labels_csv}:{line}: path {row['path']!r}: unreadable image")
        value = int(row["value_tenths"])
        if not 0 <= value < N_CLASSES:
            raise ValueError(f"{labels_csv}:{line}: value_tenths {value}: expected 0..99")
        crops.paths.append(row["path"])
        crops.images.append(cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_AREA))
        tenths.append(value)
        crops.groups.append(row["group"])
        crops.units.append(unit_of.get(row["group"], row["group"]))
    crops.tenths = np.array(tenths, np.float64)
    return crops


# ---------------------------------------------------------------- augmentation


def _colour_jitter(image: np.ndarray, rng: np.random.Generator, mix: bool) -> np.ndarray:
    """Per-channel gains; with `mix`, also channel mixing/permutation (red wheels, tints)."""
    out = image.astype(np.float32)
    if mix and rng.random() < 0.5:
        matrix = np.eye(3, dtype=np.float32) + rng.normal(0, 0.25, (3, 3)).astype(np.float32)
        if rng.random() < 0.3:
            matrix = matrix[rng.permutation(3)]
        out = out @ np.abs(matrix).T / np.abs(matrix).sum(1)
    out *= rng.uniform(0.8, 1.2, 3).astype(np.float32)
    return out


def _photometric(image: np.ndarray, rng: np.random.Generator, invert_p: float) -> np.ndarray:
    """Contrast, glare, blur, noise, JPEG and inversion on a float BGR image -> uint8."""
    h, w = image.shape[:2]
    out = image * rng.uniform(0.45, 1.3) + rng.uniform(-50, 50)
    if rng.random() < 0.3:
        out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.2:
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        sigma = rng.uniform(0.15, 0.5) * max(h, w)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        out = out + rng.uniform(40, 160) * blob[:, :, None]
    out = np.clip(out, 0, 255)
    if rng.random() < 0.35:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.6))
    elif rng.random() < 0.1:
        k = int(rng.choice([3, 5]))
        out = cv2.filter2D(out, -1, np.full((k, 1), 1.0 / k, np.float32))  # rolling smear
    if rng.random() < 0.5:
        out = out + rng.normal(0, rng.uniform(2, 12), out.shape)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 70))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else out
    if rng.random() < invert_p:
        out = 255 - out
    return out


def _heavy_digit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distortions of a digit crop that keep its label: another stroke weight (erode/dilate:
    a bolder or lighter font), a slight perspective (a camera off the register's axis), a
    band over the top or bottom edge (the window frame's shadow, a neighbouring wheel's
    rim), local contrast equalisation (CLAHE). Each with probability 1/2."""
    h, w = image.shape[:2]
    out = image
    if rng.random() < 0.5:
        size = int(rng.choice([2, 3]))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        out = cv2.erode(out, kernel) if rng.random() < 0.5 else cv2.dilate(out, kernel)
    if rng.random() < 0.5:
        corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        moved = corners + rng.uniform(-0.06, 0.06, (4, 2)).astype(np.float32) * np.float32([w, h])
        matrix = cv2.getPerspectiveTransform(corners, moved)
        out = cv2.warpPerspective(out, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        out = out.copy()
        band = int(rng.uniform(0.04, 0.18) * h)
        shade = rng.uniform(0, 255, 3) if rng.random() < 0.5 else out.reshape(-1, 3).mean(0) * rng.uniform(0.2, 0.6)
        rows = slice(0, band) if rng.random() < 0.5 else slice(h - band, h)
        out[rows] = (0.3 * out[rows] + 0.7 * shade).astype(np.uint8)
    if rng.random() < 0.5:
        clahe = cv2.createCLAHE(clipLimit=float(rng.uniform(1.5, 4.0)), tileGridSize=(2, 2))
        lab = cv2.cvtColor(out, cv2.COLOR_BGR2LAB)
        lab[:, :, 0] = clahe.apply(lab[:, :, 0])
        out = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    return out


def augment(
    image: np.ndarray,
    tenths: float,
    kind: str,
    rng: np.random.Generator,
    zoom: float = 0.1,
    heavy: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Random bench-camera distortion of one crop; returns (image, label in tenths).

    Digits: small rotation/shift/scale (label kept: the vertical shift stays
    ≤ 1.5 % of the height, < 0.05 step; scaling about the crop centre keeps the
    digit at the centre line). `zoom`: scale range ±zoom; above 0.1 (digits) the
    width is also stretched by ±zoom on its own (narrow and wide digit styles). Dials: any rotation about the centre,
    the label turning with it (a counter-clockwise θ° lowers it by θ/3.6 tenths).
    `heavy`: share of digit crops that also get _heavy_digit's distortions.
    """
    h, w = image.shape[:2]
    if kind == "dial":
        angle = rng.uniform(-180, 180) if rng.random() < 0.7 else rng.uniform(-3, 3)
        tenths = (tenths - angle / 3.6) % N_CLASSES
        shift = (rng.uniform(-0.03, 0.03) * w, rng.uniform(-0.03, 0.03) * h)
    else:
        angle = rng.uniform(-4, 4)
        shift = (rng.uniform(-0.07, 0.07) * w, rng.uniform(-0.015, 0.015) * h)
    matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), angle, rng.uniform(1 - zoom, 1 + zoom))
    matrix[:, 2] += shift
    if kind == "digit" and zoom > 0.1:
        stretch = rng.uniform(1 - zoom, 1 + zoom)
        matrix[0] = stretch * matrix[0] + [0, 0, (1 - stretch) * (w / 2 - 0.5)]
    warped = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if kind == "digit" and heavy > 0 and rng.random() < heavy:
        warped = _heavy_digit(warped, rng)
    out = _photometric(_colour_jitter(warped, rng, mix=kind == "digit"), rng, invert_p=0.2 if kind == "digit" else 0.0)
    return out, float(tenths)


def soft_labels(tenths: np.ndarray, sigma: float = LABEL_SIGMA_TENTHS, reject_class: bool = False) -> np.ndarray:
    """(N,) labels in tenths -> (N, 100) circular Gaussian target distributions.

    With `reject_class`, (N, 101): a label REJECT_LABEL (< 0) puts all its mass on class 100.
    """
    tenths = np.asarray(tenths, np.float64)
    classes = np.arange(N_CLASSES)[None, :]
    d = np.abs(classes - tenths[:, None]) % N_CLASSES
    d = np.minimum(d, N_CLASSES - d)
    target = np.exp(-0.5 * (d / sigma) ** 2)
    target /= target.sum(1, keepdims=True)
    if reject_class:
        is_reject = tenths < 0
        target = np.hstack([np.where(is_reject[:, None], 0.0, target), is_reject[:, None].astype(np.float64)])
    return target.astype(np.float32)


# ---------------------------------------------------------------- model

ARCHS = ("plain", "res", "wide")


def build_model(spec: InputSpec | str, arch: str = "plain", reject_class: bool = False):
    """Small CNN, 100 logits (101 with a "not a wheel" `reject_class`).

    plain: 3 conv stages (16, 32+32, 64 channels) then a 128-unit head.
    res: stages (16, 32 + residual 32, 64 + residual 64), same head; about 1.5×
    the multiply-adds of `plain` (kept within the 10,000 crops/s target).
    wide: `plain` with 1.5× the channels (24, 48+48, 96), about 2.2× its multiply-adds.
    """
    import torch.nn as nn

    if arch not in ARCHS:
        raise ValueError(f"arch: expected one of {ARCHS}, got {arch!r}")
    channels, height, width = input_spec(spec).shape

    def block(c_in: int, c_out: int) -> list:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    class Residual(nn.Module):
        """x + BN(conv3×3(x)), then ReLU."""

        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.norm = nn.BatchNorm2d(c)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(x + self.norm(self.conv(x)))

    if arch == "res":
        layers = (
            block(channels, 16)
            + [nn.MaxPool2d(2)]
            + block(16, 32)
            + [Residual(32)]
            + [nn.MaxPool2d(2)]
            + block(32, 64)
            + [Residual(64)]
        )
        c3 = 64
    else:
        c1, c2, c3 = (24, 48, 96) if arch == "wide" else (16, 32, 64)
        layers = (
            block(channels, c1) + [nn.MaxPool2d(2)] + block(c1, c2) + block(c2, c2) + [nn.MaxPool2d(2)] + block(c2, c3)
        )
    features = c3 * (height // 8) * (width // 8)
    layers += [
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(features, 128),
        nn.ReLU(inplace=True),
        nn.Dropout(0.1),
        nn.Linear(128, N_CLASSES + int(reject_class)),
    ]
    return nn.Sequential(*layers)


def _augmented_batch(
    crops: CropSet,
    idx: np.ndarray,
    kind: str,
    spec: InputSpec,
    rng: np.random.Generator,
    render,
    synthetic_share: float,
    sigma: float = LABEL_SIGMA_TENTHS,
    frame_p: float = 0.0,
    negatives: NegativeSource | None = None,
    reject_share: float = 0.0,
    zoom: float = 0.1,
    heavy: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented model inputs and soft labels; a `synthetic_share` of them drawn by `render`
    (rng, (h, w)) -> (BGR crop, tenths) when given, a `reject_share` images from `negatives`
    (labelled "not a wheel")."""
    images, labels = [], []
    base_hw = crops.images[0].shape[:2]
    for i in idx:
        if negatives is not None and rng.random() < reject_share:
            source, label = negatives.draw()[0], REJECT_LABEL
        elif render is not None and rng.random() < synthetic_share:
            source, label = render(rng, base_hw)
        else:
            source, label = crops.images[i], crops.tenths[i]
        image, turned = augment(source, max(label, 0.0), kind, rng, zoom, heavy)
        images.append(preprocess_crop(image, spec))
        labels.append(REJECT_LABEL if label < 0 else turned)
    return np.stack(images), soft_labels(np.array(labels), sigma, reject_class=negatives is not None)


def predict_logits(model, batch: np.ndarray) -> np.ndarray:
    """Torch model in eval mode -> (N, 100 or 101) logits (numpy; an ensemble's combined ones)."""
    import torch

    def call(x):
        out = model(torch.from_numpy(x))
        return (out[0] if isinstance(out, tuple) else out).numpy()

    model.eval()
    with torch.no_grad():
        out = [call(batch[i : i + 256]) for i in range(0, len(batch), 256)]
    return np.concatenate(out) if out else np.zeros((0, N_CLASSES), np.float32)


def predict(model, batch: np.ndarray) -> np.ndarray:
    """Torch model in eval mode -> (N, 100) wheel-position probabilities (numpy)."""
    return decode_logits(predict_logits(model, batch), Abstention())[2]


def evaluate(model, spec: InputSpec, data_dir: Path, dev: CropSet, probs_out: Path | None = None) -> dict[str, float]:
    """Held-out figures, reading the original image files exactly as the runtime does.

    With `probs_out`, the (N, 100) probabilities and labels are saved there (.npz)
    for decoding studies.
    """
    originals = [cv2.imread(str(data_dir / p), cv2.IMREAD_COLOR) for p in dev.paths]
    probs = predict(model, preprocess_crops(originals, spec))
    if probs_out is not None:
        np.savez_compressed(probs_out, probs=probs, tenths=dev.tenths, groups=np.array(dev.groups))
    value, confidence = decode_probs(probs)
    return wheel_metrics(value, confidence, dev.tenths.astype(int))


class _WeightAverage:
    """Exponential moving average of a model's parameters and BN buffers (eval copy)."""

    def __init__(self, model, decay: float) -> None:
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model).eval()

    def update(self, model) -> None:
        import torch

        with torch.no_grad():
            for avg, new in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
                if avg.dtype.is_floating_point:
                    avg.mul_(self.decay).add_(new, alpha=1 - self.decay)
                else:
                    avg.copy_(new)


def epoch_order(tenths: np.ndarray, balance: float, rng: np.random.Generator) -> np.ndarray:
    """Crop indices for one epoch: a permutation, or with `balance` > 0 a draw (with
    replacement) that flattens the labels' tenth digit towards uniform.

    Real registers rest on whole digits far more often than between them (upper
    wheels only move at a carry), so the labels pile up at x.0 and x.9; a model
    learning that prior pulls in-between positions towards the whole digit.
    """
    if balance <= 0:
        return rng.permutation(len(tenths))
    fraction = np.asarray(tenths).astype(int) % 10
    counts = np.bincount(fraction, minlength=10).astype(np.float64)
    weights = counts[fraction] ** -balance
    return rng.choice(len(tenths), size=len(tenths), p=weights / weights.sum())


def train_model(
    kind: str,
    spec: InputSpec,
    train: CropSet,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    synthetic_share: float = 0.0,
    log=print,
    arch: str = "plain",
    sigma: float = LABEL_SIGMA_TENTHS,
    ema: float = 0.0,
    balance: float = 0.0,
    frame_p: float = 0.0,
    reject_share: float = 0.0,
    negative_seed: int = 0,
    zoom: float = 0.1,
    heavy: float = 0.0,
):
    """Train from scratch with AdamW + one-cycle LR; returns the model (eval mode).

    `synthetic_share` of each batch is replaced by rendered wheels (synthetic.py) or dials
    (synthetic_dials.py);
    `sigma` is the soft-label width (tenths); `ema` > 0 returns the exponential
    moving average of the weights (decay per step) instead of the last weights;
    `frame_p` of the rendered wheels sit in a register window frame;
    `balance` > 0 draws crops with probability ∝ (share of their tenth digit)^-balance;
    `reject_share` > 0 adds a "not a wheel" class and puts that share of non-wheel
    images (TRAIN_NEGATIVE_KINDS, training half of the photos) in each batch;
    `zoom` is the augmentation's scale range, `heavy` the share of heavier digit distortions (see augment).
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(spec, arch, reject_class=reject_share > 0)
    negatives = (
        NegativeSource(kind, np.random.default_rng(10_000 + negative_seed), DATA_ROOT, TRAIN_NEGATIVE_KINDS, 0)
        if reject_share > 0
        else None
    )
    average = _WeightAverage(model, ema) if ema > 0 else None
    render = None
    if synthetic_share > 0 and kind == "digit":
        strips = digit_strips()
        render = lambda r, hw: render_wheel(strips, r, hw, frame_p)  # noqa: E731
    elif synthetic_share > 0:
        render = render_dial
    steps_per_epoch = math.ceil(len(train.tenths) / batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
    for epoch in range(epochs):
        model.train()
        order = epoch_order(train.tenths, balance, rng)
        started, total = time.time(), 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            x, y = _augmented_batch(
                train,
                idx,
                kind,
                spec,
                rng,
                render,
                synthetic_share,
                sigma,
                frame_p,
                negatives,
                reject_share,
                zoom,
                heavy,
            )
            logits = model(torch.from_numpy(x))
            loss = -(torch.from_numpy(y) * torch.log_softmax(logits, 1)).sum(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            if average is not None:
                average.update(model)
            total += float(loss.detach()) * len(idx)
        log(
            f"epoch {epoch + 1}/{epochs} loss {total / len(train.tenths):.4f} ({time.time() - started:.1f} s)",
            flush=True,
        )
    return average.model if average is not None else model.eval()


def ensemble_model(members: list):
    """One module of M models trained alike: forward(x) -> (combined logits (N, K): the mean of the
    members' log-probabilities, as models._runtime.combine_members; members' logits (N, M, K))."""
    import torch
    import torch.nn as nn

    class Ensemble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = nn.ModuleList(members)

        def forward(self, x):
            logits = torch.stack([m(x) for m in self.members], 1)
            return torch.log_softmax(logits, 2).mean(1), logits

    return Ensemble().eval()


def _train_state(threads: int, kwargs: dict) -> dict:
    """train_model in a worker process -> the trained weights as numpy arrays."""
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(1)
    return {k: v.numpy() for k, v in train_model(**kwargs).state_dict().items()}


def train_members(n_members: int, threads: int, **kwargs):
    """train_model `n_members` times with seeds seed, seed+1, ... (in parallel processes when
    `threads` allows) -> one model, or their ensemble_model when n_members > 1."""
    if n_members <= 1:
        return train_model(**kwargs)
    import concurrent.futures
    import multiprocessing

    import torch

    seeds = [kwargs["seed"] + i for i in range(n_members)]
    workers = max(1, min(n_members, threads))
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = [pool.submit(_train_state, max(1, threads // workers), {**kwargs, "seed": s}) for s in seeds]
        states = [job.result() for job in jobs]
    members = []
    for state in states:
        reject_class = kwargs.get("reject_share", 0) > 0
        member = build_model(kwargs["spec"], kwargs.get("arch", "plain"), reject_class=reject_class)
        member.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        members.append(member.eval())
    return ensemble_model(members)


def calibrate(model, spec: InputSpec, data_dir: Path, held_out: CropSet, kind: str) -> dict:
    """The sidecar's ``abstain`` section, fitted (models._calibrate) on crops the model was not trained
    on; the runtime's defaults when there are none. Those crops are then no longer a clean test set
    for the abstention figures (benchmarks/crossval.py measures the recipe on groups never used)."""
    if not len(held_out.tenths):
        return {**vars(Abstention()), "chosen_on": []}
    originals = [cv2.imread(str(data_dir / p), cv2.IMREAD_COLOR) for p in held_out.paths]
    logits = predict_logits(model, preprocess_crops(originals, spec))
    fitted = fit_abstention(logits, held_out.tenths.astype(int), ABSTAIN_SHARE[kind])
    return {
        **vars(fitted),
        "chosen_on": sorted(set(held_out.units)),
        "rule": f"temperature by ±{HIT_TOLERANCE} log-loss; min_confidence = {ABSTAIN_SHARE[kind]:.0%} quantile",
    }


def export_onnx(model, spec: InputSpec, path: Path) -> str:
    """Export fp32 ONNX (opset 17, dynamic batch; an ensemble also outputs member_logits) and return its sha256."""
    import onnx
    import torch

    dummy = torch.zeros(1, *spec.shape)
    ensemble = hasattr(model, "members")
    outputs = ["logits", "member_logits"] if ensemble else ["logits"]
    torch.onnx.export(
        model.eval(),
        dummy,
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["crops"],
        output_names=outputs,
        dynamic_axes={"crops": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
    )
    onnx.checker.check_model(onnx.load(str(path)))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_dev(crops: CropSet, dev_units: tuple[str, ...]) -> np.ndarray:
    return np.array([u in dev_units or g in dev_units for u, g in zip(crops.units, crops.groups, strict=True)])


def _json_safe(figures: dict) -> dict:
    """NaN -> None (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meterbench.models.training.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--kind", choices=["digit", "dial"], required=True)
    parser.add_argument("--out", required=True, help="folder for the .onnx and .json sidecar")
    parser.add_argument("--data", help="data folder with labels.csv (default: shared/data/...)")
    parser.add_argument("--dev", help="comma-separated dev split units / groups to hold out")
    parser.add_argument(
        "--all-data", action="store_true", help="train on dev units too (dev figures then are not held out)"
    )
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--synthetic", type=float, default=0.0, help="share of each batch replaced by rendered wheels or dials (0..1)"
    )
    parser.add_argument("--limit", type=int, help="use only this many crops (smoke tests)")
    parser.add_argument(
        "--val",
        help="comma-separated split units held out of training as a "
        "validation set for model selection (figures in the sidecar)",
    )
    parser.add_argument("--arch", choices=ARCHS, default="plain")
    parser.add_argument(
        "--frame", type=float, default=0.0, help="digits: share of rendered wheels drawn inside a window frame (0..1)"
    )
    parser.add_argument(
        "--balance",
        type=float,
        default=0.0,
        help="flatten the tenth-digit prior: draw ∝ frequency^-BALANCE (1: uniform)",
    )
    parser.add_argument("--planes", choices=PLANES, help="input planes (default: the kind's)")
    parser.add_argument("--size", help="input HxW in px, e.g. 32x20 (default: the kind's)")
    parser.add_argument("--sigma", type=float, default=LABEL_SIGMA_TENTHS, help="soft-label width in tenths")
    parser.add_argument(
        "--ema", type=float, default=0.0, help="per-step decay of a weight average to export (0: last weights)"
    )
    parser.add_argument(
        "--reject",
        type=float,
        default=0.0,
        help='share of each batch replaced by non-wheel images, with a 101st "not a wheel" class (0: none)',
    )
    parser.add_argument(
        "--zoom", type=float, default=0.1, help="augmentation scale range ±ZOOM (digits > 0.1: also width ±ZOOM)"
    )
    parser.add_argument(
        "--heavy", type=float, default=0.0, help="digits: share of crops with heavier distortions (stroke, perspective)"
    )
    parser.add_argument(
        "--members", type=int, default=1, help="ensemble of this many models (seeds seed, seed+1, ...; 1: one model)"
    )
    parser.add_argument("--abstain-json", help="crossval.py --json output: ship its pooled out-of-fold abstention")
    parser.add_argument("--abstain-rule", default="crossfit-risk", choices=["crossfit", "crossfit-risk"])
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    kind = args.kind
    data_dir = Path(args.data) if args.data else DATA_DIR[kind]
    dev_units = tuple(args.dev.split(",")) if args.dev else DEV_UNITS[kind]
    started = time.time()
    default = DEFAULT_INPUT[kind]
    height, width = (int(v) for v in args.size.split("x")) if args.size else (default.height_px, default.width_px)
    spec = InputSpec(args.planes or default.planes, height, width)
    crops = load_crops(spec, data_dir, limit=args.limit)
    is_dev = _is_dev(crops, dev_units)
    val_units = tuple(args.val.split(",")) if args.val else ()
    is_val = _is_dev(crops, val_units) & ~is_dev
    dev, val = crops.subset(is_dev), crops.subset(is_val)
    train = crops if args.all_data else crops.subset(~is_dev & ~is_val)
    print(
        f"{kind}: {len(train.tenths)} training crops, {len(val.tenths)} validation crops, "
        f"{len(dev.tenths)} dev crops ({', '.join(dev_units)}); "
        f"loaded in {time.time() - started:.0f} s"
    )
    model = train_members(
        args.members,
        args.threads,
        kind=kind,
        spec=spec,
        train=train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        synthetic_share=args.synthetic,
        arch=args.arch,
        sigma=args.sigma,
        ema=args.ema,
        balance=args.balance,
        frame_p=args.frame,
        reject_share=args.reject,
        zoom=args.zoom,
        heavy=args.heavy,
    )
    train_seconds = time.time() - started
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    val_figures = _json_safe(evaluate(model, spec, data_dir, val, out_dir / "val_probs.npz") if len(val.tenths) else {})
    figures = _json_safe(evaluate(model, spec, data_dir, dev, out_dir / "dev_probs.npz") if len(dev.tenths) else {})
    calibration = val if len(val.tenths) else (dev if not args.all_data else val)
    abstain = calibrate(model, spec, data_dir, calibration, kind)
    if args.abstain_json:  # the abstention the recipe's cross-validation fitted on meters its models never saw
        cv = json.loads(Path(args.abstain_json).read_text(encoding="utf-8"))
        abstain = {
            **cv["pooled_abstention"][args.abstain_rule],
            "chosen_on": sorted(cv["fold_of_group"]),
            "rule": f"{args.abstain_rule}: fitted on the out-of-fold readings of benchmarks/crossval.py "
            f"({json.dumps(cv['recipe'], sort_keys=True)})",
        }
    print("validation:", json.dumps(val_figures))
    print("dev:", json.dumps(figures))

    onnx_path = out_dir / MODEL_FILE[kind]
    sha256 = export_onnx(model, spec, onnx_path)
    channels, height, width = spec.shape
    sidecar = {
        "kind": kind,
        "file": onnx_path.name,
        "sha256": sha256,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "input": {
            "planes": spec.planes,
            "channels": channels,
            "height_px": height,
            "width_px": width,
            "layout": "NCHW float32",
            "resize": "cv2.INTER_AREA",
            "normalisation": NORMALISATION[spec.planes],
        },
        "classes": {
            "count": N_CLASSES + int(args.reject > 0),
            "meaning": "tenths 0..99, circular" + ('; class 100: "not a wheel"' if args.reject > 0 else ""),
            "label_sigma_tenths": args.sigma,
            "reject_class": N_CLASSES if args.reject > 0 else None,
        },
        "training": {
            "arch": args.arch,
            "ema_decay": args.ema,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "members": args.members,
            "member_seeds": [args.seed + i for i in range(args.members)],
            "synthetic_share": args.synthetic,
            "synthetic_framed": args.frame,
            "synthetic_fonts": font_inventory() if args.kind == "digit" and args.synthetic > 0 else {},
            "balance": args.balance,
            "reject_share": args.reject,
            "zoom": args.zoom,
            "heavy": args.heavy,
            "reject_negative_kinds": list(TRAIN_NEGATIVE_KINDS) if args.reject > 0 else [],
            "threads": args.threads,
            "all_data": args.all_data,
            "n_train": int(len(train.tenths)),
            "seconds": round(train_seconds),
            "groups": sorted(set(train.groups)),
        },
        "validation": {"units": list(val_units), "groups": sorted(set(val.groups)), "figures": val_figures},
        "dev": {
            "units": list(dev_units),
            "groups": sorted(set(dev.groups)),
            "held_out": not args.all_data,
            "figures": figures,
        },
        "abstain": abstain,
        "data_licences": "Apache-2.0 and MIT, see NOTICE-data.md",
    }
    onnx_path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes) in {train_seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
