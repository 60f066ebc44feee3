"""The networks shipped inside the package: verified, loadable, and as good as their cards say."""

import json

import numpy as np
import pytest

from lungseg_core.models import zoo
from lungseg_core.tests.conftest import shared_file

SHIPPED_INFECTION = "lungsegai-infection"


def test_shipped_infection_model_is_not_a_default_it_has_not_earned():
    card = zoo.resolve_card(SHIPPED_INFECTION, "infection")
    defaults = json.loads((zoo.MODELS_DIR / "defaults.json").read_text())
    # its card records infection called in healthy HU CTs: the classical method stays the default there
    assert card["metrics"]["healthy_ctchest4_false_positive_ml"]["value"] > 100
    assert defaults["infection"] != SHIPPED_INFECTION
    assert card["metrics"]["cv5_dice_any"]["value"] > 0.6


def test_shipped_infection_model_segments_a_slice_it_never_trained_on():
    from PIL import Image

    from lungseg_core.inference.network import predict_labels
    from lungseg_core.io import read_volume
    from lungseg_core.metrics.overlap import dice

    root = shared_file("covid_semiseg/train")
    card = zoo.resolve_card(SHIPPED_INFECTION, "infection")
    case = "32"
    assert case in card["training"]["val_cases"] and case not in card["training"]["train_cases"]
    loaded = zoo.load_card(card, "infection", "cpu")
    volume = read_volume(root / "images" / f"{case}.jpg")
    pred = predict_labels(loaded.network, volume, card["slice_spec"], loaded.device)
    truth = np.array(Image.open(root / "ggo_consolidation" / f"{case}.png"))
    assert pred.shape[-2:] == truth.shape
    assert dice(pred[0] > 0, truth > 0) == pytest.approx(0.783, abs=0.02)  # measured on this validation slice
