"""Class vocabularies: synonyms and display names, parsed without torch."""

from __future__ import annotations

import pytest

from xmask3d.errors import ConfigError
from xmask3d.vocabulary import display_names, parse_class_names


def test_display_name_is_the_first_synonym():
    assert display_names(["chair", " sofa | couch ", ["bath tub", "bathtub"]]) == \
        ["chair", "sofa", "bath tub"]
    assert parse_class_names(["sofa|couch"]) == (("sofa", "couch"),)
    with pytest.raises(ConfigError, match="empty class name or synonym"):
        display_names(["sofa|"])
