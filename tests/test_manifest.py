import json

import pytest

from edgehar.contract.formats import get_format
from edgehar.contract.manifest import Manifest, ManifestError, ModalitySpec, StreamSpec


def _manifest(**kw) -> Manifest:
    streams = (
        StreamSpec("camera", "camera", 30.0),
        StreamSpec("glove", "sensor", 100.0, ("flex_index", "acc_x", "acc_y")),
    )
    modalities = (ModalitySpec("rgb", "camera", "frames"), ModalitySpec("glove", "glove", "gaf", ("acc_x", "flex_index")))
    return Manifest(streams=streams, modalities=modalities, labels=("a", "b", "c"), **kw)


def _tensor(role: str, shape: list[int]) -> dict:
    return {"name": f"in_{role}", "role": role, "shape": shape, "dtype": "float32",
            "layout": ",".join("BNCHWXYZ"[: len(shape)])}


def test_round_trip_and_input_shapes(tmp_path):
    m = _manifest(num_segments=4, gaf_k=16, frame_crop=48, frame_resize=56)
    m.save(tmp_path)
    back = Manifest.load(tmp_path)
    assert back == m
    assert back.input_shapes() == ((4, 3, 48, 48), (4, 2, 16, 16))


@pytest.mark.parametrize(
    "edit, path",
    [
        (lambda d: d.update(gaf_kind="cubic"), "gaf_kind"),
        (lambda d: d.update(window_s=-1), "window_s"),
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["modalities"][1].update(channels=["nope"]), "modalities[1].channels"),
        (lambda d: d["modalities"][0].update(stream="glove"), "modalities[0].stream"),
        (lambda d: d["streams"][0].update(rate_hz=0), "streams[0].rate_hz"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d.update(gaf_scaling="range"), "modalities[1].ranges"),
        (lambda d: d.update(model_sha256="ABC"), "model_sha256"),
        (lambda d: d.update(inputs=[_tensor("rgb", [1, 3, 3, 64, 64])]), "inputs"),
        (lambda d: d.update(inputs=[_tensor("glove", [1, 3, 2, 32, 32]), _tensor("rgb", [1, 3, 3, 64, 64])]), "inputs"),
        (lambda d: d.update(inputs=[_tensor("rgb", [1, 3, 3, 64, 64]), _tensor("glove", [1, 3, 2, 16, 16])]),
         "inputs[1].shape"),
        (lambda d: d.update(outputs=[dict(_tensor("logits", [1, 3]), layout="B")]), "outputs[0].layout"),
    ],
)
def test_bad_values_name_the_key(tmp_path, edit, path):
    data = json.loads(json.dumps(_manifest().to_dict()))
    edit(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as err:
        Manifest.load(tmp_path)
    assert err.value.path == path
    assert "\n" not in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ManifestError, match="no bundle manifest"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.load(tmp_path)


def test_a_manifest_without_format_or_model_file_is_an_eager_bundle(tmp_path):
    """Both default from the formats table's eager row: the file `edgehar train` writes."""
    data = _manifest().to_dict()
    del data["format"], data["model_file"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    back = Manifest.load(tmp_path)
    assert (back.format, back.model_file) == ("eager", get_format("eager").model_file) == ("eager", "model.pt2")
