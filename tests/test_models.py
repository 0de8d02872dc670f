"""Registry-wide model tests: parametrised over `list_models()`, so a new model is tested
the moment it is registered. Family-specific behaviour lives in tests/test_<family>.py."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from edgehar.errors import EdgeharError
from edgehar.models import ModelConfigError, ModelNotFoundError, create_model, list_models, model_config_class
from edgehar.models.train import LossContext

MODELS = list_models()
TINY = list_models("*_tiny")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def training_loss(model: nn.Module, inputs: tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
    """The loss the trainer would use for this model (its own `training_loss`, else cross-entropy)."""
    if hasattr(model, "training_loss"):
        ctx = LossContext(nn.CrossEntropyLoss(), torch.ones(model.config.num_classes))
        return model.training_loss(inputs, target, ctx)
    return nn.functional.cross_entropy(model(*inputs), target)


# -- registry ------------------------------------------------------------------------


def test_registry_lists_every_family_with_a_tiny_preset() -> None:
    assert {"mmtsa", "mmtsa_tiny", "late_concat", "score_avg"} <= set(MODELS)
    assert TINY == sorted(f"{n}_tiny" for n in MODELS if not n.endswith("_tiny"))
    assert list_models("nope*") == []


def test_unknown_model_name_lists_known_and_suggests() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        create_model("mmtsa_tyni")
    msg = str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, EdgeharError)
    assert "\n" not in msg
    assert "did you mean 'mmtsa_tiny'" in msg
    assert all(name in msg for name in MODELS)
    with pytest.raises(ModelNotFoundError, match="known: "):
        model_config_class("resnet9000")
    assert ModelNotFoundError("resnet9000", MODELS).suggestion is None


@pytest.mark.parametrize("name", MODELS)
def test_config_dict_round_trip_through_json(name: str) -> None:
    model = create_model(name, num_classes=7)
    data = json.loads(json.dumps(model.config.to_dict()))  # what the manifest stores
    cfg = model_config_class(name).from_dict(data)
    assert cfg == model.config
    rebuilt = create_model(name, **data)
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())  # same architecture, key for key


@pytest.mark.parametrize("name", ["mmtsa", "late_concat"])
def test_unknown_config_key_is_rejected(name: str) -> None:
    with pytest.raises(ModelConfigError, match="unknown key.*'widht'") as info:
        create_model(name, widht=0.5)
    assert isinstance(info.value, EdgeharError) and info.value.unknown == ["widht"]


@pytest.mark.parametrize("name", TINY)
def test_config_rejects_mismatched_segment_counts(name: str) -> None:
    shapes = create_model(name).config.input_shapes
    bad = (shapes[0], (shapes[0][0] + 1, *shapes[-1][1:]))
    with pytest.raises(AssertionError, match="same number of segments"):
        create_model(name, input_shapes=bad)


# -- behaviour every model shares ------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_finite(name: str) -> None:
    model = create_model(name).eval()
    logits = model(*model.example_inputs(batch=3))
    assert logits.shape == (3, model.config.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name: str) -> None:
    """Over all training stages, with the trainer's loss, every parameter gets a gradient;
    within a stage, only the parameters that stage trains do."""
    model = create_model(name).train()
    stages = model.training_stages(2) if hasattr(model, "training_stages") else [("main", 2)]
    # an unbalanced batch (class 0 four times, every other class once): with balanced classes and
    # every margin active, a multi-class hinge loss (resatt) gives its bias exactly zero gradient
    target = torch.cat([torch.zeros(3, dtype=torch.long), torch.arange(model.config.num_classes)])
    inputs = model.example_inputs(batch=len(target))
    reached: set[str] = set()
    for stage, _ in stages:
        if hasattr(model, "set_training_stage"):
            model.set_training_stage(stage)
        model.zero_grad(set_to_none=True)
        training_loss(model, inputs, target).backward()
        got = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert got <= trainable, f"stage {stage}: gradients reached frozen {sorted(got - trainable)}"
        reached |= got
    dead = sorted(n for n, _ in model.named_parameters() if n not in reached)
    assert not dead, f"no gradient reached {dead}"


@pytest.mark.parametrize("name", TINY)
def test_any_number_of_modalities(name: str) -> None:
    """One modality (the single-modality baseline of the tables) up to three, camera and sensor
    inputs mixed; sensors as the family's recipe images them (GAF or raw series)."""
    shapes = create_model(name).config.input_shapes
    n = shapes[0][0]
    extra = (n, 2, 8) if model_config_class(name).input_recipe.sensor_type == "series" else (n, 2, 8, 8)
    for combo in ([shapes[0]], [shapes[-1]], [shapes[0], shapes[-1], extra]):
        model = create_model(name, input_shapes=tuple(combo)).eval()
        logits = model(*model.example_inputs(batch=2))
        assert logits.shape == (2, model.config.num_classes) and torch.isfinite(logits).all(), combo


@pytest.mark.parametrize("name", TINY)
def test_a_missing_modality_degrades_and_does_not_break(name: str) -> None:
    model = create_model(name).train()
    training_loss(model, model.example_inputs(batch=8), torch.arange(8) % model.config.num_classes)  # BN stats move
    model.eval()
    inputs = model.example_inputs(batch=4)
    full = model(*inputs)
    for j in range(len(inputs)):
        missing = model(*(torch.zeros_like(x) if i == j else x for i, x in enumerate(inputs)))
        assert torch.isfinite(missing).all(), f"modality {j} missing gave non-finite logits"
        assert not torch.allclose(missing, full), f"modality {j} has no influence on the output"
    torch.testing.assert_close(model(*inputs), full)  # eval is deterministic: no dropout of any kind


@pytest.mark.parametrize("name", MODELS)
def test_torch_export_matches_eager(name: str) -> None:
    model = create_model(name).eval()
    inputs = model.example_inputs(batch=1)
    program = torch.export.export(model, inputs)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(*inputs), model(*inputs), atol=1e-5, rtol=0)
        other = model.example_inputs(batch=1)  # the program is not specialised to its example
        torch.testing.assert_close(program.module()(*other), model(*other), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape, keep_dims", [((4, 3, 5, 5), 1), ((2, 3, 6, 8), 2), ((3, 1), 1)])
def test_presence_is_one_for_any_non_zero_value_and_zero_for_all_zero(shape, keep_dims) -> None:
    from edgehar.models.modality import presence

    x = torch.zeros(shape)
    lead = shape[:keep_dims]
    flat = x.reshape(*lead, -1)
    flat[(0,) * keep_dims + (-1,)] = -1e-30  # one tiny negative value in the first row, at its end
    flat[(-1,) * keep_dims + (0,)] = 7.0  # a large value in the last row
    got = presence(x, keep_dims)
    want = torch.zeros(lead)
    want[(0,) * keep_dims] = 1.0
    want[(-1,) * keep_dims] = 1.0
    assert got.shape == lead and torch.equal(got, want)
