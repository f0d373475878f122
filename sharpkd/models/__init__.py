"""Model registry: named presets of :class:`Teacher` and :class:`Student`.

Example:
    >>> from sharpkd.models import build_model, list_models
    >>> model = build_model("rt", width=8)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

import torch.nn as nn

from sharpkd.models.student import Student, StudentConfig
from sharpkd.models.teacher import Teacher, TeacherConfig

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_KINDS: dict[str, str] = {}


def register(kind: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a preset function under its own name, as a ``"teacher"`` or ``"student"``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[fn.__name__] = fn
        _KINDS[fn.__name__] = kind
        return fn

    return deco


def _teacher(defaults: dict[str, Any], kw: dict[str, Any]) -> Teacher:
    return Teacher(TeacherConfig(**{**defaults, **kw}))


def _student(defaults: dict[str, Any], kw: dict[str, Any]) -> Student:
    return Student(StudentConfig(**{**defaults, **kw}))


@register("teacher")
def nafnet(**kw) -> Teacher:
    """NAFNet (Chen et al. 2022): LayerNorm, SimpleGate, simplified channel attention, additive-skip U-Net."""
    return _teacher(dict(block="naf", width=16, enc_blocks=(1, 1, 2), middle_blocks=4, dec_blocks=(1, 1, 1)), kw)


@register("teacher")
def unet(**kw) -> Teacher:
    """Encoder-decoder U-Net: two conv+ReLU per block, concatenated skip connections."""
    cfg = dict(block="res", residual=False, width=24, enc_blocks=(1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1))
    return _teacher({**cfg, "skip": "concat"}, kw)


@register("teacher")
def rescnn(**kw) -> Teacher:
    """Residual CNN: conv, 8 residual blocks at full resolution, reconstruction conv."""
    return _teacher(dict(block="res", width=32, enc_blocks=(), middle_blocks=8, dec_blocks=()), kw)


@register("student")
def conv4(**kw) -> Student:
    """Four 3x3 convs with ReLU at full resolution, RGB residual out."""
    return _student(dict(block="conv", width=16, num_blocks=2), kw)


@register("student")
def resattn(**kw) -> Student:
    """Six residual blocks (LeakyReLU, InstanceNorm, channel + spatial attention) and a refinement conv."""
    cfg = dict(block="res", width=12, num_blocks=6, act="leakyrelu", norm="instance", attention="cbam", refine=True)
    return _student(cfg, kw)


@register("student")
def sepunet(**kw) -> Student:
    """About 20K parameters: depthwise-separable U-Net, additive skips, dilated bottleneck, sigmoid output."""
    cfg = dict(block="res", width=10, enc_blocks=(1, 1), dec_blocks=(1, 1), num_blocks=2, middle_dilations=(2, 4))
    return _student({**cfg, "separable": True, "output": "sigmoid"}, kw)


@register("student")
def rt(**kw) -> Student:
    """Real-time student: luma residual from 4 convs at 1/4 resolution (pixel-unshuffle x4), ~576 MAC/pixel."""
    # LeakyReLU: with ReLU most units of this 4-conv net died early in training (measured), leaving it near identity
    return _student(dict(block="conv", width=16, num_blocks=2, unshuffle=4, luma=True, act="leakyrelu"), kw)


@register("student")
def rtrep(**kw) -> Student:
    """The ``rt`` layout (luma, 1/4 resolution, four 3x3 convs of 16 channels, 576 MAC/pixel at inference) trained as
    re-parameterizable convs (:class:`~sharpkd.models.blocks.RepConv`), merged into plain convs at export."""
    return _student(dict(block="conv", width=16, num_blocks=2, unshuffle=4, luma=True, act="leakyrelu", rep=True), kw)


@register("student")
def rtrep4(**kw) -> Student:
    """:func:`rtrep` with four body convs instead of two (six 3x3 convs of 16 channels at 1/4 resolution, 864
    MAC/pixel): more gain on downup2, gauss1.5 and vc than rtrep at about 1.2x the 1080p latency (docs/reproduce.sh,
    2a); shipped as ``rtrep4``. Its motion9 gain comes from the fine-tune on pools that draw camera shake more often
    (step 2). The default student is this preset with ``num_blocks=6``, grown from the trained rtrep4 by
    docs/deepen_student.py (step 2c)."""
    return rtrep(**{"num_blocks": 4, **kw})


def list_models(kind: str | None = None) -> list[str]:
    """Registered preset names, optionally only ``"teacher"`` or ``"student"`` ones."""
    return sorted(n for n in _REGISTRY if kind is None or _KINDS[n] == kind)


def build_model(name: str, **overrides) -> nn.Module:
    """Build a registered preset, with config fields overridden by ``overrides``.

    Raises:
        ValueError: unknown name (the message lists the known ones) or an unknown config field.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    try:
        return _REGISTRY[name](**overrides)
    except TypeError as err:
        raise ValueError(f"bad overrides for {name!r}: {err}") from err


def model_config(model: nn.Module) -> dict[str, Any]:
    """``{"kind": ..., "config": {...}}`` that :func:`model_from_config` turns back into the same architecture."""
    return {"kind": model.kind, "config": asdict(model.cfg)}


def model_from_config(kind: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from a stored config. Unknown kinds or fields raise ``ValueError``."""
    classes = {"teacher": (Teacher, TeacherConfig), "student": (Student, StudentConfig)}
    if kind not in classes:
        raise ValueError(f"unknown model kind {kind!r}; expected 'teacher' or 'student'")
    cls, cfg_cls = classes[kind]
    known = {f.name for f in fields(cfg_cls)}
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"unknown {kind} config fields {sorted(unknown)}")
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return cls(cfg_cls(**cfg))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "Student",
    "StudentConfig",
    "Teacher",
    "TeacherConfig",
    "build_model",
    "count_parameters",
    "list_models",
    "model_config",
    "model_from_config",
    "register",
]
