"""Tests for eva_utils.models.msdnet against checkpoints made by the original MSDNet-GCN code."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from eva_utils.core.errors import CheckpointError
from eva_utils.models.msdnet import (
    MSDNet,
    MSDNetConfig,
    download_msdnet_gcn_checkpoint,
    infer_msdnet_config,
    load_msdnet_gcn_checkpoint,
    msdnet,
    verify_msdnet_gcn_download,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
SMALL_CKPT = FIXTURES / "msdnet_cifar10_3blocks_random.pth.tar"
SMALL_EXPECTED = FIXTURES / "msdnet_cifar10_3blocks_random_expected.pt"
FULL_CKPT = SHARED / "msdnet_cifar10_random.pth.tar"
FULL_EXPECTED = SHARED / "msdnet_cifar10_random_expected.pt"
KEY_LIST = SHARED / "msdnet_cifar10_state_dict_keys.txt"

ATOL = 1e-4


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def small_model() -> MSDNet:
    return load_msdnet_gcn_checkpoint(SMALL_CKPT)


@pytest.fixture(scope="module")
def small_expected() -> dict[str, torch.Tensor]:
    return torch.load(SMALL_EXPECTED, weights_only=True)


# ------------------------------------------------------------------ reference outputs


def test_3block_checkpoint_reproduces_original_logits(small_model: MSDNet, small_expected: dict) -> None:
    assert small_model.num_exits == 3
    assert n_params(small_model) == 1_206_562
    assert not small_model.training
    assert small_model.expects_normalized_input is False
    with torch.no_grad():
        logits = small_model(small_expected["input"])
    assert len(logits) == 3 and all(t.shape == (4, 10) for t in logits)
    torch.testing.assert_close(torch.stack(logits), small_expected["logits"], atol=ATOL, rtol=0)


@pytest.mark.skipif(not FULL_CKPT.exists(), reason="10-block fixture not available")
def test_10block_checkpoint_reproduces_original_logits() -> None:
    model = load_msdnet_gcn_checkpoint(FULL_CKPT)
    expected = torch.load(FULL_EXPECTED, weights_only=True)
    assert model.num_exits == 10
    assert n_params(model) == 5_440_864
    with torch.no_grad():
        logits = torch.stack(model(expected["input"]))
    torch.testing.assert_close(logits, expected["logits"], atol=ATOL, rtol=0)


@pytest.mark.skipif(not KEY_LIST.exists(), reason="key list fixture not available")
def test_fresh_model_state_dict_matches_published_layout() -> None:
    model = msdnet()
    assert n_params(model) == 5_440_864
    ours = [f"module.{k} {tuple(v.shape)}" for k, v in model.state_dict().items()]
    reference = KEY_LIST.read_text().splitlines()
    assert ours == reference


def test_infer_config_from_keys() -> None:
    state_dict = torch.load(SMALL_CKPT, weights_only=True)["state_dict"]
    stripped = {k.removeprefix("module."): v for k, v in state_dict.items()}
    assert infer_msdnet_config(stripped) == MSDNetConfig.cifar10(blocks=3)


def test_bare_state_dict_without_prefix_loads(tmp_path: Path, small_model: MSDNet, small_expected: dict) -> None:
    path = tmp_path / "bare.pt"
    torch.save(small_model.state_dict(), path)
    model = load_msdnet_gcn_checkpoint(path)
    with torch.no_grad():
        logits = torch.stack(model(small_expected["input"]))
    torch.testing.assert_close(logits, small_expected["logits"], atol=ATOL, rtol=0)


# ------------------------------------------------------------------------- exits


def test_num_exits_runs_a_prefix(small_model: MSDNet, small_expected: dict) -> None:
    x = small_expected["input"]
    with torch.no_grad():
        full = small_model(x)
        for k in range(1, small_model.num_exits + 1):
            part = small_model(x, num_exits=k)
            assert len(part) == k
            for a, b in zip(part, full[:k], strict=False):
                torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("k", [0, 4, -1, 1.5])
def test_num_exits_out_of_range(small_model: MSDNet, k: object) -> None:
    with pytest.raises(ValueError, match="num_exits"):
        small_model(torch.zeros(1, 3, 32, 32), num_exits=k)


def test_exit_feature_modules_output_classifier_inputs(small_model: MSDNet, small_expected: dict) -> None:
    taps = small_model.exit_feature_modules()
    assert len(taps) == small_model.num_exits
    assert all(not list(t.parameters()) for t in taps)
    seen: dict[int, torch.Tensor] = {}
    handles = [t.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o)) for k, t in enumerate(taps)]
    try:
        with torch.no_grad():
            logits = small_model(small_expected["input"])
    finally:
        for h in handles:
            h.remove()
    for k, head in enumerate(small_model.classifiers):
        feature = seen[k]
        assert feature.shape == (4, head.features[0].in_channels, 8, 8)
        with torch.no_grad():
            torch.testing.assert_close(head(feature), logits[k])


def test_exit_flops_increase() -> None:
    model = msdnet(blocks=3)
    flops = model.exit_flops()
    assert len(flops) == 3
    assert all(0 < a < b for a, b in zip(flops, flops[1:], strict=False))
    assert model.training  # mode restored


def test_gradients_flow_through_all_exits() -> None:
    torch.manual_seed(0)
    model = msdnet(blocks=2).train()
    x = torch.rand(2, 3, 32, 32)
    y = torch.tensor([3, 7])
    loss = torch.stack([F.cross_entropy(out, y) for out in model(x)]).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.subnets[0].parameters())


def test_other_step_modes_build_and_run() -> None:
    model = msdnet(blocks=3, step=1, step_mode="lin_grow", reduction=0.0).eval()
    assert model.config.layers_per_block == (4, 1, 2)
    with torch.no_grad():
        assert [t.shape for t in model(torch.rand(1, 3, 32, 32))] == [(1, 10)] * 3


# -------------------------------------------------------------------- bad inputs


def test_checkpoint_of_other_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="checkpoint has 3 classifiers, model config has 10"):
        load_msdnet_gcn_checkpoint(SMALL_CKPT, config=MSDNetConfig.cifar10(blocks=10))


def test_checkpoint_with_other_widths_lists_shape_differences() -> None:
    with pytest.raises(ValueError, match="tensors of another shape") as info:
        load_msdnet_gcn_checkpoint(SMALL_CKPT, config=MSDNetConfig.cifar10(blocks=3, growth=8))
    assert len(str(info.value)) < 2000  # a summary, not a state-dict dump


class _Payload:
    """Stands in for an arbitrary pickled object."""


def test_pickled_objects_are_refused(tmp_path: Path, small_model: MSDNet) -> None:
    path = tmp_path / "unsafe.pth.tar"
    torch.save({"state_dict": small_model.state_dict(), "extra": _Payload()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_msdnet_gcn_checkpoint(path)


def test_truncated_and_foreign_files_are_refused(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(SMALL_CKPT.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_msdnet_gcn_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"linear.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(ValueError, match="not an MSDNet-GCN state dict"):
        load_msdnet_gcn_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        load_msdnet_gcn_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"blocks": 0}, "blocks"),
        ({"step_mode": "odd"}, "step_mode"),
        ({"prune": "min"}, "prune"),
        ({"reduction": 1.5}, "reduction"),
        ({"growth": [6, 12, 24]}, "growth"),
        ({"growth": 5, "growth_factor": (1, 3, 4, 4)}, "even"),
        ({"growth_factor": (1, 2)}, "growth_factor"),
        ({"blocks": 1, "base": 7}, "transitions"),
    ],
)
def test_invalid_config_raises(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MSDNetConfig.cifar10(**overrides)


# ------------------------------------------------------------------ download


def test_download_fetches_a_checkpoint_that_loads(tmp_path: Path, small_expected: dict) -> None:
    target = tmp_path / "models" / "anytime_cifar_10.pth.tar"
    got = download_msdnet_gcn_checkpoint(target, url=SMALL_CKPT.resolve().as_uri(), progress=False)
    assert got == target and target.read_bytes() == SMALL_CKPT.read_bytes()
    with torch.no_grad():
        logits = load_msdnet_gcn_checkpoint(target)(small_expected["input"])
    torch.testing.assert_close(torch.stack(logits), small_expected["logits"], atol=ATOL, rtol=0)


def test_download_records_its_hash_and_later_uses_check_it(tmp_path: Path) -> None:
    target = tmp_path / "anytime_cifar_10.pth.tar"
    download_msdnet_gcn_checkpoint(target, url=SMALL_CKPT.resolve().as_uri(), progress=False)
    digest = hashlib.sha256(SMALL_CKPT.read_bytes()).hexdigest()
    assert (tmp_path / "anytime_cifar_10.pth.tar.sha256").read_text() == f"{digest}  anytime_cifar_10.pth.tar\n"
    assert verify_msdnet_gcn_download(target) == digest
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF  # damaged or replaced since the download
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="the file changed since; delete it"):
        download_msdnet_gcn_checkpoint(target, url=SMALL_CKPT.resolve().as_uri(), progress=False)


def test_download_with_a_pinned_hash_refuses_a_mismatch_and_keeps_nothing(tmp_path: Path) -> None:
    target = tmp_path / "anytime_cifar_10.pth.tar"
    with pytest.raises(CheckpointError, match="does not have the sha256 asked for"):
        download_msdnet_gcn_checkpoint(target, url=SMALL_CKPT.resolve().as_uri(), progress=False, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []
    digest = hashlib.sha256(SMALL_CKPT.read_bytes()).hexdigest()
    assert download_msdnet_gcn_checkpoint(target, url=SMALL_CKPT.resolve().as_uri(), progress=False, sha256=digest) == target


def test_download_keeps_a_file_already_there(tmp_path: Path) -> None:
    target = tmp_path / "anytime_cifar_10.pth.tar"
    target.write_bytes(b"the user's own file")
    download_msdnet_gcn_checkpoint(target, url=SMALL_CKPT.resolve().as_uri(), progress=False)
    assert target.read_bytes() == b"the user's own file"


def test_download_that_fails_says_where_to_get_it_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "anytime_cifar_10.pth.tar"
    missing = (tmp_path / "gone.pth.tar").as_uri()
    with pytest.raises(CheckpointError, match=f"could not download .*{missing}.*save it as {target}"):
        download_msdnet_gcn_checkpoint(target, url=missing, progress=False)
    assert not target.exists()


def test_download_of_a_web_page_is_refused_and_removed(tmp_path: Path) -> None:
    page = tmp_path / "moved.html"
    page.write_text("<!DOCTYPE html><html>this link has moved</html>")
    target = tmp_path / "anytime_cifar_10.pth.tar"
    with pytest.raises(CheckpointError, match="not an MSDNet-GCN checkpoint.*not a checkpoint at all"):
        download_msdnet_gcn_checkpoint(target, url=page.as_uri(), progress=False)
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["moved.html"]


def test_loaded_model_goes_to_the_requested_device() -> None:
    # "meta" stands in for a GPU: a loader that forgets to move the model leaves it on the CPU.
    model = load_msdnet_gcn_checkpoint(SMALL_CKPT, map_location="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert {b.device.type for b in model.buffers()} == {"meta"}
    assert not model.training
