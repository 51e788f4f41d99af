"""Prompt templates for indoor class names, synonym parsing and template-averaged embeddings.

Follows decisions.md §5 item 22 (average several templates; the published code used bare names)
and the zero-shot classifier of open_clip (templates x names -> mean -> L2-normalise).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from xmask3d.errors import ConfigError
from xmask3d.models.text.encoders import TextEncoder
from xmask3d.vocabulary import SYNONYM_SEPARATOR, parse_class_names  # noqa: F401

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a {} in a scene.",
    "there is a {} in the scene.",
    "there is a {} in the room.",
    "a {} in an indoor scene.",
    "a photo of a {} in a room.",
    "a close-up photo of a {}.",
    "a 3D scan of a {}.",
    "a point cloud of a {}.",
    "this is a {} in a house.",
)


def resolve_templates(templates: bool | Sequence[str] | None) -> tuple[str, ...]:
    """Turn a templates argument into a checked tuple.

    Args:
        templates: ``True`` for :data:`DEFAULT_TEMPLATES`; ``False``/``None`` to use texts as
            they are (free-text queries such as "something to sit on"); or a list of templates,
            each with exactly one ``{}`` where the class name goes.

    Returns:
        The templates; empty when texts are used as they are.
    """
    if templates is True:
        return DEFAULT_TEMPLATES
    if templates is False or templates is None:
        return ()
    if isinstance(templates, str):
        raise ConfigError(f"templates: expected a list of templates, got one string {templates!r}")
    out = tuple(templates)
    if not out:
        raise ConfigError("templates: empty list; pass False to use the class names as they are")
    for i, template in enumerate(out):
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ConfigError(f"templates[{i}]={template!r} must be a string with one '{{}}'")
    return out


def expand_prompts(phrase: str, templates: Sequence[str]) -> list[str]:
    """Fill one phrase into every template.

    Args:
        phrase: a class name or synonym.
        templates: templates with one ``{}`` each; empty to return the phrase as it is.

    Returns:
        T prompts (or ``[phrase]`` when there are no templates).
    """
    if not templates:
        return [phrase]
    return [template.replace("{}", phrase) for template in templates]


def embed_phrases(
    encoder: TextEncoder, phrases: Sequence[str], *, templates: Sequence[str]
) -> torch.Tensor:
    """Template-averaged embeddings of phrases, in one encoder call.

    Args:
        encoder: the text encoder.
        phrases: P phrases.
        templates: T templates (possibly none).

    Returns:
        (P, dim) float32: the mean over templates of the normalised prompt embeddings,
        L2-normalised again.
    """
    count = max(len(templates), 1)
    prompts = [prompt for phrase in phrases for prompt in expand_prompts(phrase, templates)]
    embeds = encoder.encode(prompts).reshape(len(phrases), count, -1)  # (P, T, dim)
    return F.normalize(embeds.mean(dim=1), dim=-1)


def mean_over_groups(embeds: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Average rows that share a group id, then L2-normalise.

    Args:
        embeds: (S, dim) rows (e.g. one per synonym).
        group: (S,) long group id of each row, every id in [0, num_groups) used at least once.
        num_groups: G.

    Returns:
        (G, dim) normalised group means.
    """
    sums = torch.zeros(num_groups, embeds.shape[1], dtype=embeds.dtype)
    sums.index_add_(0, group, embeds)
    counts = torch.bincount(group, minlength=num_groups).clamp_min(1).to(embeds.dtype)
    return F.normalize(sums / counts[:, None], dim=-1)
