"""The networks shipped inside the package: verified, loadable, and as good as their cards say."""

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from lungseg_core.models import zoo
from lungseg_core.tests.conftest import shared_file
from lungseg_core.training.config import parse_override

SHIPPED_INFECTION = "lungsegai-infection"
SHIPPED_LUNGS = "lungsegai-lungs"
REPO = Path(__file__).resolve().parents[3]
LUNG_TRAINING_SCRIPT = REPO / "scripts" / "train_lung_model.sh"


@pytest.fixture(scope="module")
def ctchest4(ctchest4_path, ctchest4_reference):
    """slicerio's real chest CT (never used for training) and its expert right/left lung labels."""
    from lungseg_core.io import read_volume

    return read_volume(ctchest4_path), ctchest4_reference.array


def _assert_started_from_imagenet(card, sha256_start):
    """Started from an ImageNet encoder: the card names that checkpoint, and loading the model does not need it."""
    assert card["training"]["encoder_weights"]["sha256"].startswith(sha256_start)
    assert "encoder_weights" not in card["architecture_kwargs"]


def _per_lung_dice(pred, ref):
    from lungseg_core.metrics.overlap import dice

    return [dice(pred == value, ref == value) for value in (1, 2)]


def test_shipped_lung_model_keeps_the_classical_accuracy_on_a_ct_it_never_trained_on(ctchest4):
    from lungseg_core.inference.segmenter import Segmenter

    card = zoo.resolve_card(SHIPPED_LUNGS, "lungs")
    assert card["combine_with_classical"] and zoo.sha256_file(zoo.weights_path(card)) == card["sha256"]
    assert not any("CTChest4" in case for case in card["training"]["train_cases"] + card["training"]["val_cases"])
    _assert_started_from_imagenet(card, "579344248a93")
    ct, ref = ctchest4
    scores = _per_lung_dice(Segmenter(SHIPPED_LUNGS, "lungs", device="cpu").predict(ct), ref)
    assert min(scores) >= 0.98, scores  # the goal; the classical method alone scores 0.983 / 0.989


def _script_overrides(arguments: str) -> tuple[dict, int | None]:
    """The ``--set`` overrides and ``--epochs`` among the arguments of a line of the lung training script."""
    words = shlex.split(arguments)
    values = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--set"]
    epochs = int(words[words.index("--epochs") + 1]) if "--epochs" in words else None
    return dict(parse_override(value) for value in values), epochs


def test_shipped_lung_model_is_the_last_stage_of_the_committed_training_script():
    """The card's command is the script, and the script's last stage, run on the committed config, is the config
    the card records: a change to either that would no longer make the shipped weights shows here."""
    from lungseg_core.training.config import config_json, load_config

    card = zoo.resolve_card(SHIPPED_LUNGS, "lungs")
    assert card["training"]["command"] == "bash scripts/train_lung_model.sh"
    lines = LUNG_TRAINING_SCRIPT.read_text().splitlines()
    finetune_line = next(line for line in lines if line.startswith("finetune=("))
    finetune, epochs = _script_overrides(finetune_line.removeprefix("finetune=(").removesuffix(")"))
    last_stage, _ = _script_overrides(next(line.split("3) echo", 1)[1] for line in lines if "3) echo" in line))
    expected = config_json(load_config(REPO / "configs" / "lungsegai_lungs.json", {**finetune, **last_stage}))
    trained = card["training"]["config"]
    assert trained["epochs"] == epochs and trained["seed"] == last_stage["seed"]
    for key in ("architecture", "architecture_kwargs", "slice_spec", "loss", "optimizer", "lr", "scheduler",
                "scheduler_kwargs", "batch_size", "augmentation", "synthetic_lesions", "thick_slices",
                "max_slices_per_case", "keep_empty_fraction", "drop_noninformative", "monitor"):
        assert trained[key] == expected[key], key
    assert trained["init_weights"].endswith("lungsegai-lungs-ft2/model/lungsegai-lungs.json")


def test_shipped_lung_card_metrics_are_the_committed_benchmark_results():
    """The card quotes what benchmarks/results holds for these weights, not an earlier model's numbers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lung_card_metrics", REPO / "benchmarks" / "lung_card_metrics.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    card = zoo.resolve_card(SHIPPED_LUNGS, "lungs")
    four, twelve = (json.loads((tool.RESULTS / f"accuracy_lungs{end}.json").read_text()) for end in ("", "_12_seeds"))
    measured = tool.card_metrics(card, four, twelve)
    assert len(measured) >= 10
    for name, entry in measured.items():
        assert (card["metrics"][name]["value"], card["metrics"][name].get("min")) == (entry["value"], entry.get("min"))


def test_shipped_lung_model_recovers_consolidation_at_the_chest_wall(ctchest4):
    from lungseg_core.inference.segmenter import Segmenter
    from lungseg_core.synthetic.lesions import LesionSpec, insert_lesions

    ct, ref = ctchest4
    spec = LesionSpec(count=(4, 8), kinds=("consolidation",), diameter_mm=(50.0, 90.0), placement="costal")
    lesioned, _ = insert_lesions(ct, ref, spec, seed=1000)  # the lung labels stay: consolidated lung is lung
    classical = _per_lung_dice(Segmenter("threshold", "lungs").predict(lesioned), ref)
    fused = _per_lung_dice(Segmenter(SHIPPED_LUNGS, "lungs", device="cpu").predict(lesioned), ref)
    # measured on this seed: 0.939 / 0.951 classical, 0.968 / 0.972 with the network (the stage-2 weights of the same
    # network: 0.969 / 0.975; the resunet before it: 0.967 / 0.978)
    assert all(f > c + 0.01 for f, c in zip(fused, classical)), (classical, fused)


def test_consolidation_against_the_mediastinum_comes_back_where_the_network_is_sure_and_is_noted(ctchest4):
    """Large consolidations on the lung surfaces: the chest-wall gate leaves those against the mediastinum out,
    since lung lies beyond them. So much left out is more than a healthy CT gives, so the regions the network is
    sure of go back into the lungs, and the case's notes say how much was left out and how much added; the healthy
    CT gets no such note and is not changed by the rule."""
    from lungseg_core.inference import segment_volume
    from lungseg_core.postprocessing import lungs as lung_rules
    from lungseg_core.synthetic.lesions import LesionSpec, insert_lesions

    ct, ref = ctchest4
    spec = LesionSpec(count=(4, 8), kinds=("consolidation",), diameter_mm=(50.0, 90.0), placement="subpleural")
    lesioned, _ = insert_lesions(ct, ref, spec, seed=1000)  # 812 mL left out, 781 mL of it sure; healthy 24 mL
    healthy, ill = (segment_volume(volume, task="lungs", device="cpu") for volume in (ct, lesioned))
    assert not any("looked like lung" in note for note in healthy.measurements["notes"])
    (note,) = ill.lung_notes
    left_out_ml = int(note.split()[0])
    added_ml, still_out_ml = (int(note.split(before)[1].split()[0]) for before in ("The ", "the other "))
    assert left_out_ml > 400 and 0.5 * left_out_ml < added_ml < left_out_ml, note
    assert abs(added_ml + still_out_ml - left_out_ml) <= 1, note
    assert note in ill.measurements["notes"]
    # measured on this seed: 0.921 / 0.932 with the gate alone, 0.977 / 0.987 with the sure regions added
    gate_only = _per_lung_dice(_lungs_with_the_gate_alone(lesioned), ref)
    kept = _per_lung_dice(ill.lungs, ref)
    assert kept[0] > gate_only[0] + 0.03 and kept[1] >= gate_only[1], (gate_only, kept)
    assert lung_rules.MUCH_DENSE_LUNG_LEFT_OUT_ML > 96  # healthy CTChest4 (24 mL; 96 with the resunet) stays under


def _lungs_with_the_gate_alone(ct):
    """The shipped lung model's result without the confident-region rule (its probability not given)."""
    from lungseg_core.inference.segmenter import Segmenter
    from lungseg_core.postprocessing import add_dense_lung

    fusion = Segmenter(SHIPPED_LUNGS, "lungs", device="cpu").fusion_inputs(ct)
    return add_dense_lung(fusion.classical, fusion.network > 0, fusion.hu, ct)


def test_shipped_infection_model_is_not_a_default_it_has_not_earned():
    card = zoo.resolve_card(SHIPPED_INFECTION, "infection")
    defaults = json.loads((zoo.MODELS_DIR / "defaults.json").read_text())
    # its card records that it misses consolidation inserted into HU CT, which the classical method finds
    # (0.920 on that seed; the network: 0.429): the classical method stays the default for HU CT
    assert min(card["metrics"]["lidc0002_inserted_lesions_dice_any"]["value"]) < 0.5
    assert defaults["infection"] != SHIPPED_INFECTION
    assert card["metrics"]["cv5_dice_any"]["value"] >= 0.75  # the goal of issue 3
    _assert_started_from_imagenet(card, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")


def test_shipped_infection_model_still_segments_a_slice_of_its_training_data():
    from PIL import Image

    from lungseg_core.inference.network import predict_labels
    from lungseg_core.io import read_volume
    from lungseg_core.metrics.overlap import dice

    root = shared_file("covid_semiseg/train")
    card = zoo.resolve_card(SHIPPED_INFECTION, "infection")
    # it trained on all 50 slices (its held-out score is the card's cross-validation): this checks that the
    # shipped weights and today's preprocessing still reproduce what training saw
    case = "32"
    assert case in card["training"]["train_cases"]
    loaded = zoo.load_card(card, "infection", "cpu")
    volume = read_volume(root / "images" / f"{case}.jpg")
    pred = predict_labels(loaded.network, volume, card["slice_spec"], loaded.device)
    truth = np.array(Image.open(root / "ggo_consolidation" / f"{case}.png"))
    assert pred.shape[-2:] == truth.shape
    assert dice(pred[0] > 0, truth > 0) == pytest.approx(0.952, abs=0.02)  # measured on this training slice
