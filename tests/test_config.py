"""Config files for `edgehar live`: everything the flags hold; bad keys fail with the key path."""

from __future__ import annotations

import pytest

from edgehar.app.config import ConfigError, device_urls, load_config, validate


def test_toml_config_is_read_and_normalised(tmp_path):
    path = tmp_path / "live.toml"
    path.write_text('model = "b"\nglove = "ble://name=Glove"\nimu = "serial:///dev/ttyACM0"\ncamera = 0\n'
                    'seconds = 30\nview = "headless"\n[smoothing]\nmode = "ema"\nk = 3\n[devices]\nankle = "ble://name=Ankle"\n')
    cfg = load_config(path)
    assert cfg["camera"] == "0" and cfg["seconds"] == 30.0 and cfg["imu"] == ["serial:///dev/ttyACM0"]
    assert cfg["smoothing"] == {"mode": "ema", "k": 3} and cfg["devices"] == {"ankle": "ble://name=Ankle"}


def test_yaml_config(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "live.yaml"
    path.write_text("model: b\nimu:\n  - ble://name=A\n  - ble://name=B\nsmoothing:\n  mode: none\n")
    cfg = load_config(path)
    assert cfg["imu"] == ["ble://name=A", "ble://name=B"] and cfg["smoothing"]["mode"] == "none"


@pytest.mark.parametrize("data, message", [
    ({"camra": 0}, "camra: unknown key; did you mean 'camera'?"),
    ({"smoothing": {"k": 0}}, "smoothing.k: expected an integer >= 1, got 0"),
    ({"smoothing": {"mode": "median"}}, "smoothing.mode: expected one of majority, ema, none, got 'median'"),
    ({"smoothing": {"window": 3}}, "smoothing.window: unknown key"),
    ({"smoothing": 5}, "smoothing: expected a table of keys, got 5"),
    ({"seconds": -1}, "seconds: expected a finite number > 0, got -1"),
    ({"seconds": True}, "seconds: expected a finite number > 0, got True"),
    ({"seconds": 1e400}, "seconds: expected a finite number > 0, got inf"),
    ({"glove": "/dev/ttyACM0"}, "glove: expected a device URL"),
    ({"imu": ["ble://name=A", 3]}, "imu: expected a non-empty string, got 3"),
    ({"devices": {"ankle": "nope"}}, "devices.ankle: expected a device URL"),
    ({"camera": -2}, "camera: a camera index must be >= 0, got -2"),
    ({"view": "fullscreen"}, "view: expected one of auto, window, headless"),
    ({"thumbnails": "yes"}, "thumbnails: expected true or false, got 'yes'"),
])
def test_bad_keys_and_values_name_the_key_path(data, message):
    with pytest.raises(ConfigError) as err:
        validate(data, "live.toml")
    assert str(err.value) == f"live.toml: {message}" or str(err.value).startswith(f"live.toml: {message}")
    assert "\n" not in str(err.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "a.toml").write_text("model = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(ConfigError, match="use .toml, .yaml or .yml"):
        load_config(tmp_path / "a.json")


def test_device_urls_name_the_streams():
    assert device_urls("ble://g", ["ble://a", "ble://b"], {"ankle": "ble://c"}) == {
        "glove": "ble://g", "imu": "ble://a", "imu2": "ble://b", "ankle": "ble://c"}
    with pytest.raises(ConfigError, match="two URLs"):
        device_urls("ble://g", [], {"glove": "ble://other"})
