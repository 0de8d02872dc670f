"""tools/arm64_check.py's pieces; the check itself (an arm64 rootfs under QEMU, 10-30 min)
is a documented command (docs/arm64.md), not part of the suite."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import arm64_check  # noqa: E402
import arm64_rootfs  # noqa: E402


def test_missing_host_tools_name_their_debian_packages():
    have = {"chroot", "unshare", "debootstrap"}
    assert arm64_rootfs.missing_packages(lambda t: f"/usr/bin/{t}" if t in have else None) == [
        "binfmt-support", "qemu-user-static"]
    assert arm64_rootfs.missing_packages(lambda t: "/usr/bin/x") == []


def test_binfmt_entry_is_read_for_enabled_and_flags():
    text = ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\n"
            "magic 7f454c460201010000000000000000000200b700\n")
    assert arm64_rootfs.binfmt_state(text) == (True, "PF")
    assert arm64_rootfs.binfmt_state(text.replace("enabled", "disabled", 1)) == (False, "PF")
    assert arm64_rootfs.binfmt_state("") == (False, "")


def test_the_fake_cpuinfo_is_one_cortex_a76_block_per_core():
    text = arm64_rootfs.aarch64_cpuinfo(3)
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert len(blocks) == 3
    for i, block in enumerate(blocks):
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in block.splitlines())}
        assert fields["processor"] == str(i)
        assert (fields["CPU implementer"], fields["CPU part"]) == ("0x41", "0xd0b")  # Arm Cortex-A76
        assert "asimd" in fields["Features"].split()
    assert arm64_rootfs.QEMU_CPU == "cortex-a76"


def test_the_chroot_gets_pip_and_proxy_settings_but_no_host_paths():
    env = arm64_rootfs.chroot_env({"PIP_INDEX_URL": "https://mirror/simple", "https_proxy": "http://p:3128",
                                   "PIP_FIND_LINKS": "/opt/wheels", "VIRTUAL_ENV": "/work/.venv",
                                   "PATH": "/work/.venv/bin:/usr/bin"})
    assert env["PIP_INDEX_URL"] == "https://mirror/simple" and env["https_proxy"] == "http://p:3128"
    assert "PIP_FIND_LINKS" not in env and "VIRTUAL_ENV" not in env
    assert "/work" not in env["PATH"]
    assert env["QEMU_CPU"] == "cortex-a76" and env["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"


def test_a_rootfs_is_built_once_and_an_interrupted_build_is_started_over(tmp_path, monkeypatch):
    calls = []

    def fake_check(cmd, what, log=None):  # debootstrap: fills the folder it is given
        calls.append(cmd)
        target = Path(cmd[-2])
        (target / "etc").mkdir(parents=True)
        (target / "etc/debian_version").write_text("12.9\n")

    monkeypatch.setattr(arm64_rootfs, "_check", fake_check)
    root = tmp_path / "arm64-rootfs"
    (tmp_path / "arm64-rootfs.partial/leftover").mkdir(parents=True)  # a build that was killed
    assert arm64_rootfs.build_rootfs(root) is True
    assert calls[0][:3] == ["debootstrap", "--arch=arm64", "--variant=minbase"] and "bookworm" in calls[0]
    assert not (tmp_path / "arm64-rootfs.partial").exists() and not (root / "leftover").exists()
    assert (root / "etc/debian_version").is_file() and (root / arm64_rootfs.MARKER).is_file()
    assert arm64_rootfs.build_rootfs(root) is False and len(calls) == 1  # cached
    (root / arm64_rootfs.MARKER).write_text(json.dumps({"suite": "bullseye", "packages": []}))
    assert arm64_rootfs.build_rootfs(root) is True and len(calls) == 2  # another recipe: rebuilt


def test_logits_compare_top1_per_window_and_the_largest_difference():
    host = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]], np.float32)
    same = arm64_check.compare_logits(host, host.copy())
    assert same["top1_equal"] == 2 and same["bit_identical"] and same["max_abs_logit_diff"] == 0.0
    near = arm64_check.compare_logits(host, host + np.float32(0.25))
    assert near["top1_equal"] == 2 and not near["bit_identical"] and near["max_abs_logit_diff"] == pytest.approx(0.25)
    flipped = host.copy()
    flipped[1] = [0.0, 1.0, 3.0]
    out = arm64_check.compare_logits(host, flipped)
    assert out["top1_equal"] == 1 and out["top1_differs_at"] == [1]
    assert not arm64_check.compare_logits(host, host[:1])["same_shape"]


def test_the_fidelity_report_names_the_model_file_and_scores_both_sides(tmp_path):
    np.savez(tmp_path / "w.npz", labels=np.array([0, 1, 1]))
    host = {"logits": [[2.0, 1.0], [0.0, 3.0], [0.0, 1.0]], "model_sha256": "ab"}
    arm = {"logits": [[2.0, 1.0], [0.0, 3.0], [1.5, 1.0]], "model_sha256": "ab"}
    out = arm64_check.fidelity_report(host, arm, tmp_path / "w.npz", seed=7)
    assert out["bundle"].endswith("/litert-int8") and out["seed"] == 7 and out["model_sha256_equal"]
    assert out["accuracy_host"] == 1.0 and out["accuracy_arm64"] == pytest.approx(2 / 3, abs=1e-4)
    assert out["top1_differs_at"] == [2] and out["max_abs_logit_diff"] == 1.5
    assert not arm64_check.fidelity_report(host, dict(arm, model_sha256="cd"), tmp_path / "w.npz", 7)["model_sha256_equal"]


def _demo_line(label, truth, degraded=False):
    return json.dumps({"t": 1.0, "label": label, "confidence": 0.9, "degraded": degraded, "truth": truth})


def test_a_demo_log_is_summarised_and_judged():
    labels = ("hammer", "screwdriver")
    log = "\n".join([_demo_line("hammer", "hammer"), _demo_line("hammer", "screwdriver", True),
                     _demo_line("screwdriver", "screwdriver")]) + "\n"
    demo = {"exit": 0, **arm64_check.summarise_demo(log, labels)}
    assert demo["predictions"] == 3 and demo["labels"] == {"hammer": 2, "screwdriver": 1}
    assert demo["agreement"] == pytest.approx(2 / 3, abs=1e-4) and demo["degraded"] == 1
    assert demo["agreement_complete"] == 1.0  # the degraded one was the wrong one
    fidelity = {"windows": 4, "top1_equal": 4, "same_shape": True, "model_sha256_equal": True}
    assert arm64_check.verdict(demo, fidelity) == []
    assert arm64_check.verdict({"exit": 0, **arm64_check.summarise_demo("", labels)}, fidelity) == [
        "the demo made no prediction"]
    bad = {"exit": 0, **arm64_check.summarise_demo(_demo_line("saw", None), labels)}
    assert bad["agreement"] is None and "saw" in arm64_check.verdict(bad, fidelity)[0]
    assert arm64_check.verdict(demo, dict(fidelity, top1_equal=3)) == ["top-1 differs on 1 of 4 windows"]
    assert arm64_check.verdict(dict(demo, exit=1), fidelity) == ["the demo exited 1"]
    assert arm64_check.verdict(dict(demo, degraded=3), fidelity) == ["no demo prediction had every stream"]


def test_fixed_windows_are_what_the_shipped_bundle_takes(tmp_path):
    from edgehar.contract.bundle import read_manifest

    manifest = read_manifest(arm64_check.shipped_litert())
    n = arm64_check.write_windows(tmp_path / "w.npz", seed=3, subjects=1)
    with np.load(tmp_path / "w.npz") as npz:
        assert n >= len(manifest.labels) and npz["labels"].shape == (n,)
        assert set(npz["labels"].tolist()) <= set(range(len(manifest.labels)))
        for i, shape in enumerate(manifest.input_shapes()):
            assert npz[f"input_{i}"].shape == (n, *shape) and npz[f"input_{i}"].dtype == np.float32


def test_the_shipped_bundle_runs_saved_windows_one_at_a_time(tmp_path):
    """The part that runs on both sides: same file in, logits out, with the model's hash."""
    from edgehar.app.backends import load_bundle
    from edgehar.contract.bundle import model_path

    manifest, backend = load_bundle(arm64_check.shipped_litert())
    rng = np.random.default_rng(1)
    arrays = [rng.random((3, *shape), dtype=np.float32) for shape in manifest.input_shapes()]
    np.savez(tmp_path / "w.npz", labels=np.zeros(3), **{f"input_{i}": a for i, a in enumerate(arrays)})
    out = arm64_check.bundle_logits(tmp_path / "w.npz", arm64_check.shipped_litert())
    logits = np.asarray(out["logits"], np.float32)
    assert logits.shape == (3, len(manifest.labels))
    np.testing.assert_array_equal(logits[2], backend.run(tuple(a[2:3] for a in arrays))[0])
    import hashlib

    assert out["model_sha256"] == hashlib.sha256(model_path(arm64_check.shipped_litert(), manifest).read_bytes()).hexdigest()
    assert out["packages"]["ai-edge-litert"] and out["machine"]


def test_the_committed_doc_shows_the_committed_result():
    """docs/arm64.md's generated block is what the tool renders from docs/arm64.json, so
    neither can be edited alone."""
    report = json.loads((ROOT / "docs/arm64.json").read_text())
    doc = (ROOT / "docs/arm64.md").read_text()
    assert arm64_check.replace_block(doc, arm64_check.render_markdown(report)) == doc
    assert report["passed"], report["failures"]
    with pytest.raises(ValueError):
        arm64_check.replace_block("no markers", "x")


def test_without_root_it_says_so_in_one_line_and_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(arm64_check.os, "geteuid", lambda: 1000)
    assert arm64_check.main(["--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs root" in err
    assert not (tmp_path / "r.json").exists()
