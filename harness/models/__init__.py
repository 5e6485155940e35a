"""Sequential-recommender backbones, item representations and ``build_model``.

See docs/MODELS.md for the models and how the MMSR paper maps to code.
"""

from harness.models import builders as _builders  # noqa: F401  (registers the backbones)
from harness.models.build import (
    SequentialRecommender,
    build_model,
    get_builder,
    list_backbones,
    register_backbone,
)
from harness.models.gru4rec import GRU4Rec
from harness.models.items import MODES, ItemRepresentation
from harness.models.mmsr import MMSR
from harness.models.sasrec import SASRec

__all__ = [
    "MMSR",
    "MODES",
    "GRU4Rec",
    "ItemRepresentation",
    "SASRec",
    "SequentialRecommender",
    "build_model",
    "get_builder",
    "list_backbones",
    "register_backbone",
]
