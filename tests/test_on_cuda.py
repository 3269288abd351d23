"""What runs only on a CUDA GPU: the branches the CPU tests reach through stand-ins.

AMP with a real GradScaler, channels_last and cuDNN's autotuning (training.precision, training.engine), pinned
memory and non-blocking copies (data.loaders), running out of GPU memory (engine, the command line), CAMs under
CUDA autocast against pytorch-grad-cam (explain.cam), MSD-Net's published outputs, a run's checkpoint moving to
the CPU (training.recipe, models.loading), the LR finder, the app, and NCCL under torchrun (training.distributed).

Skipped without a GPU: ``benchmarks/gpu_check.py`` runs the suite on the lent GPU machine. To check the tests
themselves where there is none, ``EVA_CUDA_TESTS_DEVICE=cpu python -m pytest tests/test_on_cuda.py`` runs those
that make sense on the CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from eva_utils import data, training
from eva_utils.data import presets
from eva_utils.explain.cam import layer_cams, resnet_layers
from eva_utils.models import resnet18
from eva_utils.models.loading import load_trained_model
from eva_utils.models.msdnet import load_msdnet_gcn_checkpoint
from eva_utils.training.precision import is_channels_last, mixed_precision, place, to_device
from eva_utils.training.recipe import TrainConfig, setup_run, train_run

DEVICE = torch.device(os.environ.get("EVA_CUDA_TESTS_DEVICE", "cuda"))
ON_CUDA = DEVICE.type == "cuda"
pytestmark = pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="needs a CUDA GPU")
cuda_only = pytest.mark.skipif(not ON_CUDA, reason="a CUDA kernel or CUDA memory: nothing to stand in for it")
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def exact_float32():
    """No TF32 in matmuls and convolutions while the test runs (outputs compared to float32 references)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _loaders(n_train: int = 256, batch_size: int = 32, num_workers: int = 0):
    keep = np.random.default_rng(0).permutation(2000)[:n_train]
    train = data.load_sample(True, presets.test_transforms())
    train = data.ArrayDataset(train.images[keep], train.labels[keep], train.transform)
    test = data.load_sample(False, presets.test_transforms())
    test = data.ArrayDataset(test.images[:200], test.labels[:200], test.transform)
    return (data.make_loader(train, batch_size, shuffle=True, num_workers=num_workers, device=DEVICE),
            data.make_loader(test, 100, num_workers=num_workers, device=DEVICE))


def _images(n: int = 8) -> torch.Tensor:
    test = data.load_sample(False, presets.test_transforms())
    return torch.stack([test[i][0] for i in range(n)]).to(DEVICE)  # (N, 3, 32, 32)


# ----------------------------------------------------------------------------- training.precision, engine


@pytest.mark.parametrize("amp", [True, torch.float16])
def test_fit_learns_under_autocast_with_the_precision_the_gpu_runs(amp, tmp_path):
    training.set_seed(0)
    train_loader, test_loader = _loaders()
    model = resnet18(width=8)
    opt = training.make_optimizer(model, "adam", lr=2e-3, weight_decay=0)
    history = training.fit(model, train_loader, test_loader, 3, opt, device=DEVICE, amp=amp, progress=False,
                           checkpoint_path=tmp_path / "ck.pt")
    precision = mixed_precision(DEVICE, amp)
    if ON_CUDA and amp is True:  # bf16 where the GPU runs it natively (Ampere and later), fp16 before
        assert precision.dtype == (torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else torch.float16)
        assert is_channels_last(model) and torch.backends.cudnn.benchmark  # fit's CUDA defaults
    assert next(model.parameters()).device.type == DEVICE.type
    assert history.train_loss[-1] < 0.8 * history.train_loss[0]
    scaler = torch.load(tmp_path / "ck.pt", weights_only=True)["scaler"]
    assert bool(scaler) == precision.needs_scaler  # a real GradScaler's state is saved for float16
    if scaler:
        assert 0 < scaler["scale"] < float("inf")


def test_a_real_grad_scaler_skips_an_overflowing_step_and_halves_its_scale():
    training.set_seed(0)
    train_loader, _ = _loaders(n_train=32)
    model = resnet18(width=4).to(DEVICE)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("weight")}
    scaler = torch.amp.GradScaler(DEVICE.type, init_scale=2.0**100)  # float16 gradients overflow at this scale
    opt = training.make_optimizer(model, "sgd", lr=0.1)
    stats = training.train_one_epoch(model, train_loader, torch.nn.CrossEntropyLoss(), opt, device=DEVICE,
                                     scaler=scaler, amp=torch.float16, max_batches=1, progress=False)
    assert np.isfinite(stats.loss)
    assert scaler.get_scale() == 2.0**99
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)  # the step was skipped


@cuda_only
def test_channels_last_and_cudnn_autotuning_change_speed_not_outputs(exact_float32):
    torch.manual_seed(0)
    nchw = resnet18(width=8).eval()
    nhwc = resnet18(width=8).eval()
    nhwc.load_state_dict(nchw.state_dict())
    place(nchw, DEVICE, channels_last=False)
    place(nhwc, DEVICE, channels_last=True)
    assert torch.backends.cudnn.benchmark and is_channels_last(nhwc) and not is_channels_last(nchw)
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x.contiguous(memory_format=torch.channels_last)), nchw(x), atol=1e-4, rtol=0)


@cuda_only
def test_the_loader_pins_memory_for_the_gpu_and_copies_without_blocking():
    train_loader, _ = _loaders(num_workers=2)
    assert train_loader.pin_memory
    images, labels = next(iter(train_loader))
    assert images.is_pinned() and labels.is_pinned()
    on_gpu, gpu_labels = to_device(images, labels, DEVICE, channels_last=True)
    torch.cuda.synchronize()
    assert on_gpu.is_cuda and on_gpu.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(on_gpu.cpu(), images) and torch.equal(gpu_labels.cpu(), labels)


@cuda_only
def test_out_of_gpu_memory_in_train_is_one_line_saying_lower_the_batch_size(tmp_path):
    # the process may use 0.2% of the GPU (about 280 MB of an H200): ResNet18's activations at batch 1024 do not fit
    script = ("import sys, torch; torch.cuda.set_per_process_memory_fraction(0.002); "
              "from eva_utils.apps.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", script, "train", "--data", "sample", "--batch-size", "1024",
                           "--epochs", "1", "--workers", "0", "--quiet", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "ran out of memory in epoch 1 at batch size 1024" in done.stderr and "--batch-size" in done.stderr
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- explain.cam


def test_layer_cams_under_autocast_equal_pytorch_grad_cam_in_float32(exact_float32):
    model = resnet18(width=16).eval().to(DEVICE)
    torch.manual_seed(0)
    x = _images()
    layers = resnet_layers(model)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        maps = layer_cams(model, x, layers)  # computed in float32 whatever the caller's autocast
    with torch.no_grad():
        targets = [ClassifierOutputTarget(c) for c in model(x).argmax(1).tolist()]
    for name, layer in layers.items():
        with GradCAM(model=model, target_layers=[layer]) as cam:
            np.testing.assert_allclose(maps[name], cam(input_tensor=x, targets=targets), atol=1e-5)


# ----------------------------------------------------------------------------- models


def test_msdnet_reproduces_the_published_model_on_the_device(exact_float32):
    model = load_msdnet_gcn_checkpoint(FIXTURES / "msdnet_cifar10_3blocks_random.pth.tar").to(DEVICE)
    expected = torch.load(FIXTURES / "msdnet_cifar10_3blocks_random_expected.pt", weights_only=True)
    with torch.no_grad():
        logits = model(expected["input"].to(DEVICE))
    torch.testing.assert_close(torch.stack(logits).cpu(), expected["logits"], atol=1e-4, rtol=0)


def test_a_run_on_the_gpu_checkpoints_a_model_that_loads_on_the_cpu(tmp_path, exact_float32):
    config = TrainConfig(data="sample", width=8, epochs=1, max_batches=4, batch_size=64, device=str(DEVICE),
                         num_workers=2, out=str(tmp_path / "run"), progress=False, augment_on="cpu")
    setup = setup_run(config)
    assert setup.device.type == DEVICE.type and setup.train_loader.pin_memory == ON_CUDA
    result = train_run(setup)
    on_cpu = load_trained_model(tmp_path / "run" / "checkpoint.pt", map_location="cpu")
    assert all(p.device.type == "cpu" for p in on_cpu.parameters())
    x = _images()
    with torch.no_grad():
        trained = result.model.eval()(x.contiguous(memory_format=torch.channels_last)).float().cpu()
        torch.testing.assert_close(on_cpu(x.cpu()), trained, atol=1e-3, rtol=1e-3)


def test_the_lr_finder_runs_on_the_device_and_puts_the_weights_back():
    training.set_seed(0)
    train_loader, _ = _loaders(n_train=512, batch_size=64)
    model = resnet18(width=8).to(DEVICE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    found = training.find_lr(model, train_loader, device=DEVICE, num_iter=20, skip_start=2, skip_end=2)
    assert 1e-6 < found.suggested_lr < 10 and len(found.lrs) == len(found.losses)
    assert all(torch.equal(before[k].cpu(), v.cpu()) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- apps


def test_the_app_explains_on_the_device_as_on_the_cpu():
    from eva_utils.apps.app import Explorer

    gpu, cpu = Explorer.from_source(device=DEVICE), Explorer.from_source(device="cpu")
    image = gpu.example("cat")
    on_gpu, on_cpu = gpu.explain(image), cpu.explain(image)
    assert list(on_gpu.top5) == list(on_cpu.top5)
    np.testing.assert_allclose(list(on_gpu.top5.values()), list(on_cpu.top5.values()), atol=1e-3)
    assert [caption for _, caption in on_gpu.panels] == [caption for _, caption in on_cpu.panels]


# ----------------------------------------------------------------------------- training.distributed


@cuda_only
def test_train_under_torchrun_uses_nccl_and_sync_batchnorm_on_the_gpu(tmp_path):
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                           "-m", "eva_utils", "train", "--device", "cuda", "--sync-bn", "--data", "sample", "--width",
                           "8", "--epochs", "1", "--max-batches", "4", "--batch-size", "64", "--workers", "0", "--quiet",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert not any(key.startswith("module.") for key in state)  # the unwrapped model, loadable anywhere
    assert load_trained_model(tmp_path / "run" / "checkpoint.pt") is not None


def test_auto_augments_on_the_gpu_and_the_run_learns(tmp_path):
    from eva_utils.data import DeviceLoader

    config = TrainConfig(data="sample", width=8, epochs=3, batch_size=64, device=str(DEVICE), optimizer="adam", lr=2e-3,
                         scheduler="none", label_smoothing=0.0, out=str(tmp_path / "run"), progress=False)
    setup = setup_run(config)
    assert isinstance(setup.train_loader, DeviceLoader) == ON_CUDA  # auto: the device pipeline on CUDA only
    assert isinstance(setup.test_loader, DeviceLoader) == ON_CUDA  # and the test images normalised there
    if ON_CUDA:
        assert setup.train_loader.images.is_cuda and setup.test_loader.images.is_cuda
    history = train_run(setup).history
    assert history.train_loss[-1] < 0.9 * history.train_loss[0]
