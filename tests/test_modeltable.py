"""The built-in model table (spec section 6): tiers, overrides, Messages-looking names, profiles."""

from __future__ import annotations

import pytest

from proxy.modeltable import (
    DEFAULT_PROFILES,
    DEFAULT_TIERS,
    DROPPED_FIELDS,
    LEGACY_NAMES,
    NAME_LABELS,
    RESTRICTIVE,
    Profile,
    looks_like_messages_model,
    name_label,
    profile_for,
    targets_for,
)

# Spec section 6's list, typed in from the spec (not from the module), with the tier it names.
SPEC_FAST = [
    "claude-instant-v1", "claude-instant-v1-100k", "claude-instant-v1.0", "claude-instant-v1.1",
    "claude-instant-v1.2", "claude-instant-1", "claude-instant-1.0", "claude-instant-1.1",
    "claude-instant-1.2",
]  # fmt: skip
SPEC_BALANCED = [
    "claude-v1", "claude-v1-100k", "claude-v1.0", "claude-v1.1", "claude-v1.2", "claude-v1.3",
    "claude-v1.3-100k", "claude-1", "claude-1-100k", "claude-1.0", "claude-1.1", "claude-1.2",
    "claude-1.3", "claude-2", "claude-2.0", "claude-2.1",
]  # fmt: skip
# the brief's extra spellings that were published too
EXTRA_FAST = ["claude-instant-1-100k", "claude-instant-v1.1-100k", "claude-instant-1.1-100k"]
EXTRA_BALANCED = ["claude-1.3-100k"]

TIERS = {"fast": ("f1", "f2"), "balanced": ("b1", "b2")}


def targets(name: object, overrides: dict[str, str] | None = None, default: str = "") -> tuple:
    return targets_for(name, tiers=TIERS, overrides=overrides or {}, default=default)


@pytest.mark.parametrize("name", SPEC_FAST + EXTRA_FAST)
def test_the_instant_line_goes_to_the_fast_tier(name: str) -> None:
    assert LEGACY_NAMES[name] == "fast"
    assert targets(name) == ("f1", "f2")
    assert name_label(name) == name
    assert not looks_like_messages_model(name)


@pytest.mark.parametrize("name", SPEC_BALANCED + EXTRA_BALANCED)
def test_the_rest_goes_to_the_balanced_tier(name: str) -> None:
    assert LEGACY_NAMES[name] == "balanced"
    assert targets(name) == ("b1", "b2")
    assert name_label(name) == name
    assert not looks_like_messages_model(name)


def test_default_tiers_are_the_current_models_with_a_fallback() -> None:
    assert DEFAULT_TIERS == {
        "fast": ("claude-haiku-5-5", "claude-haiku-4-5"),
        "balanced": ("claude-sonnet-5-5", "claude-sonnet-4-6"),
    }
    # a tier the settings leave empty falls back to the built-in list
    got = targets_for("claude-2.1", tiers={}, overrides={}, default="")
    assert got == DEFAULT_TIERS["balanced"]
    for tier in DEFAULT_TIERS.values():
        for target in tier:
            assert target in DEFAULT_PROFILES, target


def test_an_override_wins_for_any_name() -> None:
    assert targets("claude-2.1", {"claude-2.1": "claude-opus-4-1"}) == ("claude-opus-4-1",)
    assert targets("my-model", {"my-model": "claude-haiku-4-5"}) == ("claude-haiku-4-5",)
    assert targets("claude-2.0", {"claude-2.1": "x"}) == ("b1", "b2")


@pytest.mark.parametrize(
    "name",
    [
        "claude-haiku-4-5", "claude-sonnet-4-6", "claude-sonnet-5", "claude-opus-4-1-20250805",
        "claude-fable-5-1", "claude-haiku-4-5-20251001", "claude-3-5-sonnet-20241022",
        "claude-3-opus-20240229", "claude-3-haiku-20240307", "claude-3-5-haiku-latest",
        "claude-3-7-sonnet-20250219",
    ],
)  # fmt: skip
def test_messages_looking_names_are_sent_as_they_are(name: str) -> None:
    assert looks_like_messages_model(name)
    assert targets(name) == (name,)
    assert targets(name, default="d") == (name,)
    assert name_label(name) == "other"


@pytest.mark.parametrize(
    "name",
    [
        "claude-3", "claude-2.2", "claude-instant-2", "claude-v2", "gpt-4", "", "claude",
        "claude-sonnet", "Claude-Sonnet-4-5", "claude-sonnet-4-5 ", "claude-sonnet-4.5",
        "anthropic.claude-v2",
    ],
)  # fmt: skip
def test_anything_else_goes_to_the_default_or_the_balanced_tier(name: str) -> None:
    assert not looks_like_messages_model(name)
    assert targets(name) == ("b1", "b2")
    assert targets(name, default="claude-opus-4-1") == ("claude-opus-4-1",)
    assert name_label(name) == "other"


@pytest.mark.parametrize("name", [None, 3, ["claude-2.1"], {"a": 1}, True])
def test_a_missing_or_non_string_model_goes_to_the_default(name: object) -> None:
    assert targets(name) == ("b1", "b2")
    assert targets(name, default="d") == ("d",)
    assert name_label(name) == "other"


def test_labels_are_a_fixed_set() -> None:
    assert set(NAME_LABELS) == {*LEGACY_NAMES, "other"}
    assert len(NAME_LABELS) == len(set(NAME_LABELS))
    assert DROPPED_FIELDS == (
        "temperature", "top_p", "top_k", "stop_sequences", "max_tokens", "other",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-haiku-4-5", Profile(64000, "one", "accepted", "off")),
        ("claude-haiku-4-5-20251001", Profile(64000, "one", "accepted", "off")),
        ("claude-sonnet-4-5-20250929", Profile(64000, "one", "accepted", "off")),
        ("claude-opus-4-1-20250805", Profile(32000, "one", "accepted", "off")),
        ("claude-sonnet-4-6", Profile(128000, "one", "refused", "off")),
        ("claude-opus-4-7", Profile(128000, "none", "refused", "off")),
        ("claude-sonnet-5", Profile(128000, "none", "refused", "default_on")),
        ("claude-sonnet-5-5", Profile(128000, "none", "refused", "default_on")),
        ("claude-haiku-5-5", Profile(128000, "none", "refused", "default_on")),
        ("claude-opus-5-5", Profile(128000, "none", "refused", "always_on")),
        ("claude-fable-5-1", Profile(128000, "none", "refused", "always_on")),
        ("claude-unknown-9", RESTRICTIVE),
        ("claude-haiku-4-5-2025100", RESTRICTIVE),  # not a date: 7 digits
        ("claude-haiku-4-5-20251001-20251001", RESTRICTIVE),  # only one date is removed
    ],
)
def test_profile_for_tries_the_name_then_its_alias_then_restrictive(
    model: str, expected: Profile
) -> None:
    assert profile_for(model, DEFAULT_PROFILES) == expected


def test_restrictive_is_the_safe_profile() -> None:
    assert Profile(32000, "none", "refused", "always_on") == RESTRICTIVE
    custom = {"claude-haiku-4-5-20251001": Profile(1, "all", "accepted", "off")}
    # an exact entry wins over the alias; an empty table gives RESTRICTIVE
    assert profile_for("claude-haiku-4-5-20251001", custom).max_output == 1
    assert profile_for("claude-haiku-4-5", {}) is RESTRICTIVE


def test_profiles_are_frozen() -> None:
    with pytest.raises(AttributeError):
        RESTRICTIVE.max_output = 1  # type: ignore[misc]
