"""Text side of XMask3D: text encoders, prompt ensembles, class embeddings, CLIP mask head."""

from __future__ import annotations

from xmask3d.models.text.classifier import TextClassifier
from xmask3d.models.text.clip_mask_head import CLIPMaskTokenHead
from xmask3d.models.text.encoders import (
    CLIPTextEncoder,
    MiniLMTextEncoder,
    TextEncoder,
    build_text_encoder,
)
from xmask3d.models.text.prompts import DEFAULT_TEMPLATES, parse_class_names, resolve_templates

__all__ = [
    "DEFAULT_TEMPLATES",
    "CLIPMaskTokenHead",
    "CLIPTextEncoder",
    "MiniLMTextEncoder",
    "TextClassifier",
    "TextEncoder",
    "build_text_encoder",
    "parse_class_names",
    "resolve_templates",
]
