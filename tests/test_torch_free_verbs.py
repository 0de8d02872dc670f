"""Issue 14: on a torch-free install every verb works or exits 2 with one line naming the
extra to install; none dies with a ModuleNotFoundError traceback.

Each verb runs in its own interpreter where torch (and what is built on it) cannot be
imported, as on a board that ran `pip install 'edgehar[litert]'`.
"""

import subprocess
import sys
import textwrap

import pytest

from export_helpers import tiny_bundle, tiny_export

# Installed as sitecustomize on PYTHONPATH: every interpreter the verb starts (bench
# measures each bundle in a child process) is as torch-free as the first.
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("torch", "torchvision", "torchao", "executorch", "litert_torch", "jax", "tensorflow")

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:  # what a missing package raises
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)

NEEDS_TORCH = "this needs torch, which is not installed here: pip install 'edgehar[train]'"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    sessions, eager = tiny_bundle(tmp_path_factory)
    litert = tiny_export(tmp_path_factory, "litert", "int8").out_dir
    onnx = tiny_export(tmp_path_factory, "onnx", "int8").out_dir
    session = sorted(p for p in sessions.iterdir() if (p / "meta.json").is_file())[0]
    return {"sessions": sessions, "eager": eager, "litert": litert, "onnx": onnx, "session": session}


def _verbs(i, tmp):
    replay = [f"--glove=replay://{i['session']}?stream=glove", f"--imu=replay://{i['session']}?stream=imu"]
    return [  # (argv, None: works, else the one line it must end with)
        (["models"], NEEDS_TORCH),
        (["train", "--data", str(i["sessions"]), "--epochs", "1", "--out", str(tmp / "run")], NEEDS_TORCH),
        (["evaluate", "--data", str(i["sessions"]), "--out", str(tmp / "eval")], NEEDS_TORCH),
        (["export", str(i["eager"]), "--format", "litert", "--out", str(tmp / "exp")],
         "the litert exporter cannot be imported (No module named 'torch'); install it with: pip install 'edgehar[export]'"),
        (["demo", "--seconds", "4", "--headless"], None),  # the shipped LiteRT bundle: nothing to train
        (["demo", "--model", str(i["litert"]), "--seconds", "4", "--headless"], None),
        (["live", "--model", str(i["litert"]), *replay, "--camera", str(i["session"] / "camera.mp4"),
          "--seconds", "4", "--headless"], None),
        (["live", "--model", str(i["onnx"]), "--providers", "cpu", *replay, "--camera", str(i["session"] / "camera.mp4"),
          "--seconds", "4", "--headless"], None),  # ONNX Runtime on the CPU provider, asked for by name
        (["record", "--out", str(tmp / "rec"), "--simulate", "--seconds", "2", "--headless"], None),
        (["bench", str(i["litert"]), "--runs", "5", "--warmup", "1", "--no-dense", "--gaf-reps", "1",
          "--data", str(i["sessions"]), "--out", str(tmp / "bench")], None),
        (["simulate", "dataset", "--out", str(tmp / "ds"), "--subjects", "1", "--repeats", "1"], None),
        (["simulate", "glove", "--serial", "--seconds", "1"], None),
        (["info", str(i["eager"])], None),  # any format's bundle: info reads JSON and hashes a file
        (["devices", "--seconds", "0.5"], None),  # with no Bluetooth stack, BLE is one warning line: exit 0 still
    ]


@pytest.mark.parametrize("k", range(14), ids=["models", "train", "evaluate", "export", "demo-shipped", "demo-litert",
                                              "live-litert", "live-onnx", "record", "bench-litert", "simulate-dataset",
                                              "simulate-glove", "info-eager", "devices"])
def test_every_verb_works_or_names_the_extra_without_torch(inputs, tmp_path, k):
    argv, needs = _verbs(inputs, tmp_path)[k]
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "EDGEHAR_HOME": str(tmp_path / "cache"), "DISPLAY": "",
           "PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr  # the blocker is in place
    result = subprocess.run([sys.executable, "-m", "edgehar", *argv], capture_output=True, text=True, timeout=300, env=env)
    if needs is None:
        assert result.returncode == 0, result.stderr[-2000:]
    else:
        assert result.returncode == 2 and result.stderr.strip() == f"edgehar {argv[0]}: error: {needs}", result.stderr[-2000:]
