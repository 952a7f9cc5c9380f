"""The built-in model table for Text Completions through Messages (spec section 6). CORE: data.

Three tables and the small functions that read them:

    LEGACY_NAMES      every published Text Completions model name -> its tier (fast | balanced)
    DEFAULT_TIERS     tier -> ordered targets (the first is used, the next on a 404 retirement)
    DEFAULT_PROFILES  target -> what it accepts (max output, sampling, prefill, thinking)

Every legacy name is retired (claude-1.x and claude-instant-1.x on 2024-11-06, claude-2.0 and
claude-2.1 on 2025-07-21), so a legacy request is answered by a current model of the same kind:
the instant line by the fast tier, the rest by the balanced tier. The tables are data because the
settings override them (per name, per tier, per profile) without any code change.

The label sets at the end are Final tuples because the shell uses them as Prometheus label values,
which must come from a small fixed set (design.md: "labels only from small fixed sets").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

Tier = Literal["fast", "balanced"]
TIERS: Final[tuple[Tier, ...]] = ("fast", "balanced")

# Every model name the Text Completions API published, from the API's model pages and the SDKs of
# 2023 (the old docs listed the -v1 spellings; the 2023-07 docs the claude-1/claude-instant-1
# spellings; the 100k variants were separate names). Names nobody published still work: they go
# to the balanced tier (``targets_for``), they just do not get a metric label of their own.
_BALANCED: Final = (
    "claude-v1", "claude-v1-100k",
    "claude-v1.0", "claude-v1.1", "claude-v1.2", "claude-v1.3", "claude-v1.3-100k",
    "claude-1", "claude-1-100k",
    "claude-1.0", "claude-1.1", "claude-1.2", "claude-1.3", "claude-1.3-100k",
    "claude-2", "claude-2.0", "claude-2.1",
)  # fmt: skip
_FAST: Final = (
    "claude-instant-v1", "claude-instant-v1-100k",
    "claude-instant-v1.0", "claude-instant-v1.1", "claude-instant-v1.1-100k", "claude-instant-v1.2",
    "claude-instant-1", "claude-instant-1-100k",
    "claude-instant-1.0", "claude-instant-1.1", "claude-instant-1.1-100k", "claude-instant-1.2",
)  # fmt: skip
LEGACY_NAMES: Final[dict[str, Tier]] = {
    **dict.fromkeys(_BALANCED, "balanced"),
    **dict.fromkeys(_FAST, "fast"),
}

# Source: https://platform.claude.com/docs/en/about-claude/models/overview (2026-12-01).
# Sonnet 4.5 retired on 2026-11-30; Haiku 5.5 and Sonnet 5.5 are the current models. The second
# entry of each tier is the retirement fallback (spec section 6: tried only on a 404 before any
# byte of the answer).
DEFAULT_TIERS: Final[dict[Tier, tuple[str, ...]]] = {
    "fast": ("claude-haiku-5-5", "claude-haiku-4-5"),
    "balanced": ("claude-sonnet-5-5", "claude-sonnet-4-6"),
}


@dataclass(frozen=True, slots=True)
class Profile:
    """What a target model accepts (spec section 6, "Target profiles").

    max_output  the most ``max_tokens`` it takes (over it: a 400)
    sampling    all: temperature, top_p, top_k; one: not temperature together with top_p;
                none: no sampling parameter at all
    prefill     whether a final assistant message is accepted
    thinking    off; default_on (send thinking.disabled); always_on (cannot be disabled: add the
                thinking allowance to max_tokens)
    """

    max_output: int
    sampling: Literal["all", "one", "none"]
    prefill: Literal["accepted", "refused"]
    thinking: Literal["off", "default_on", "always_on"]


# For a target without a profile: whatever the model turns out to be, this request is accepted.
# always_on rather than default_on: it never sends thinking.disabled, which some models refuse,
# and the allowance only raises max_tokens (still under the smallest current max_output).
RESTRICTIVE: Final = Profile(32000, "none", "refused", "always_on")

# Sources, as of 2026-12-01: the models overview above and each model's page under
# https://platform.claude.com/docs/en/about-claude/models/ (max output tokens; "sampling
# parameters", "prefill" and "extended thinking" sections), and the 400 messages quoted in spec
# section 6 for what the pages leave out.
DEFAULT_PROFILES: Final[dict[str, Profile]] = {
    "claude-haiku-4-5": Profile(64000, "one", "accepted", "off"),
    "claude-sonnet-4-5": Profile(64000, "one", "accepted", "off"),
    "claude-opus-4-5": Profile(64000, "one", "accepted", "off"),
    "claude-opus-4-1": Profile(32000, "one", "accepted", "off"),
    "claude-sonnet-4-6": Profile(128000, "one", "refused", "off"),
    "claude-opus-4-6": Profile(128000, "one", "refused", "off"),
    "claude-opus-4-7": Profile(128000, "none", "refused", "off"),
    "claude-opus-4-8": Profile(128000, "none", "refused", "off"),
    "claude-sonnet-5": Profile(128000, "none", "refused", "default_on"),
    "claude-sonnet-5-5": Profile(128000, "none", "refused", "default_on"),
    "claude-haiku-5-5": Profile(128000, "none", "refused", "default_on"),
    "claude-opus-5-5": Profile(128000, "none", "refused", "always_on"),
    "claude-fable-5-1": Profile(128000, "none", "refused", "always_on"),
}

_DATED: Final = re.compile(r"-\d{8}$")
# claude-<family>-<n>[-<n>...] (claude-haiku-4-5, claude-sonnet-5, claude-opus-4-1-20250805) and
# the 3.x form claude-<n>[-<n>]-<family>[-<date>|-latest] (claude-3-5-sonnet-20241022). The legacy
# spellings never match: they use dots (claude-2.1), "v" (claude-v1) or the instant line, which is
# excluded so that an unpublished claude-instant-* name is not sent upstream as it is.
_MESSAGES_MODEL: Final = re.compile(
    r"claude-(?!instant-)[a-z]+(?:-\d+)+(?:-latest)?"
    r"|claude-\d+(?:-\d+)*-[a-z]+(?:-\d+)*(?:-latest)?"
)


def profile_for(model: str, profiles: Mapping[str, Profile]) -> Profile:
    """The exact name's profile, else its alias's (a dated snapshot such as
    claude-haiku-4-5-20251001 behaves as claude-haiku-4-5), else RESTRICTIVE."""
    found = profiles.get(model)
    if found is None:
        found = profiles.get(_DATED.sub("", model))
    return found if found is not None else RESTRICTIVE


def looks_like_messages_model(name: str) -> bool:
    """Whether ``name`` has the form of a Messages model ID (spec section 6: sent as it is)."""
    return _MESSAGES_MODEL.fullmatch(name) is not None


def targets_for(
    name: object,
    *,
    tiers: Mapping[str, Sequence[str]],
    overrides: Mapping[str, str],
    default: str,
) -> tuple[str, ...]:
    """The targets to try, in order, for the model name a client asked for (spec section 6).

    An override for the name wins; a table name gets its tier's list; a Messages-looking name is
    sent as it is; anything else (an unknown name, a missing or non-string model) goes to
    ``default`` when one is set, else to the balanced tier."""
    if isinstance(name, str):
        override = overrides.get(name)
        if override is not None:
            return (override,)
        tier = LEGACY_NAMES.get(name)
        if tier is not None:
            return tuple(tiers.get(tier) or DEFAULT_TIERS[tier])
        if looks_like_messages_model(name):
            return (name,)
    if default:
        return (default,)
    return tuple(tiers.get("balanced") or DEFAULT_TIERS["balanced"])


def name_label(name: object) -> str:
    """The legacy model name as a metric label: a table name, or "other" (a bounded set)."""
    return name if isinstance(name, str) and name in LEGACY_NAMES else "other"


# Every value name_label returns, for declaring the metric's label set up front.
NAME_LABELS: Final[tuple[str, ...]] = (*LEGACY_NAMES, "other")

# What a request translation may leave out (translate.messages.Attempt.dropped): the sampling
# parameters the target refuses or the client set to -1, stop sequences the Messages API refuses
# (empty or whitespace only), max_tokens when capped at the target's max_output, and "other" for
# any field the Messages API does not take (the npm SDK 0.4.x's ``tags``, for one).
DROPPED_FIELDS: Final[tuple[str, ...]] = (
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "max_tokens",
    "other",
)

# How a prefill was handled (translate.messages.Attempt.prefill).
PREFILL_MODES: Final[tuple[str, ...]] = ("none", "sent", "emulated")
