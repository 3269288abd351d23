"""Tests for eva_utils.training.recipe: the core of a run, without its figures (the whole run with them:
tests/apps; the default recipe runs through the CLI tests)."""

from dataclasses import replace

import pytest

from eva_utils.core.errors import UserError
from eva_utils.training import recipe


def _tiny(tmp_path, **overrides):
    config = replace(recipe.TrainConfig.demo(), width=4, epochs=1, max_batches=2, scheduler="step", progress=False, track_cams=0,
                     out=str(tmp_path / "run"))
    return replace(config, **overrides)


def test_the_core_of_a_run_writes_its_checkpoint_and_history_and_draws_nothing(tmp_path):
    setup = recipe.setup_run(_tiny(tmp_path))
    assert setup.config.num_classes == 10 and setup.steps_per_epoch == 2  # num_classes follows the data
    result = recipe.train_run(setup)
    assert set(result.files) == {"checkpoint", "history"} and all(p.is_file() for p in result.files.values())
    assert len(result.history) == 1 and not (tmp_path / "run" / "curves.png").exists()


def test_settings_are_refused_by_parameter_name(tmp_path):
    with pytest.raises(UserError, match="^track_cams follows the ResNets' stages") as caught:
        recipe.setup_run(_tiny(tmp_path, model="msdnet", track_cams=2))
    assert caught.value.param == "track_cams"


def test_page24_is_pages_recipe_and_overrides_win():
    config = recipe.TrainConfig.page24()
    assert (config.model, config.width, config.epochs, config.batch_size, config.scheduler) == \
        ("custom_resnet", 64, 24, 512, "onecycle")
    assert config.pct_start * config.epochs == pytest.approx(5)  # the peak at epoch 5
    assert config.augmentation == "page" and config.label_smoothing == 0.0
    assert recipe.RECIPES["page24"](width=16).width == 16
    config.validate()


def test_the_page_augmentation_is_the_train_preset_with_pages_settings():
    from eva_utils.data import presets

    assert presets.AUGMENTATIONS["page"] == {"affine": 0.0, "cutout": 1.0, "cutout_size": 8}
    names = [type(t).__name__ for t in presets.train_transforms(**presets.AUGMENTATIONS["page"]).transforms]
    assert "HorizontalFlip" in names and "RandomCrop" in names


def test_lr_find_takes_the_range_tests_suggestion_as_the_peak(tmp_path):
    setup = recipe.setup_run(_tiny(tmp_path, scheduler="onecycle", max_batches=4, lr_find=True))
    found = setup.lr_test
    assert found is not None and len(found.lrs) == 20  # 20 batches for a max_batches run
    assert setup.config.lr == found.suggested_lr
    assert setup.optimizer.param_groups[0]["max_lr"] == pytest.approx(found.suggested_lr)  # the one cycle peaks there


def test_lr_find_without_one_cycle_is_refused_by_name(tmp_path):
    with pytest.raises(UserError, match="lr_find picks the peak of a one-cycle schedule") as caught:
        recipe.setup_run(_tiny(tmp_path, lr_find=True))  # _tiny's scheduler is step
    assert caught.value.param == "lr_find"
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- augment_on:
# where the training images are augmented


def test_augment_on_is_validated_by_name(tmp_path):
    with pytest.raises(UserError, match="unknown augment_on 'gpu'.*valid augment_on names: auto, cpu, device") as caught:
        recipe.setup_run(_tiny(tmp_path, augment_on="gpu"))
    assert caught.value.param == "augment_on" and not (tmp_path / "run").exists()


def test_auto_augments_on_the_device_on_cuda_and_on_the_cpu_elsewhere(monkeypatch):
    import torch

    assert recipe.resolve_augment_on("auto", torch.device("cuda")) == "device"
    assert recipe.resolve_augment_on("auto", torch.device("cpu")) == "cpu"
    assert recipe.resolve_augment_on("device", torch.device("cpu")) == "device"
    assert recipe.resolve_augment_on("cpu", torch.device("cuda")) == "cpu"
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    assert recipe.resolve_augment_on("auto", torch.device("cuda")) == "device"  # torchrun too: each process its share


@pytest.mark.parametrize("augment, augmentation", [(True, "default"), (True, "page"), (False, "default")])
def test_build_loaders_gives_the_device_loader_the_runs_augmentation(augment, augmentation):
    import torch

    from eva_utils.data import DeviceLoader, SeededLoader
    from eva_utils.data.batch_transforms import NO_AUGMENTATION, BatchTransform
    from eva_utils.data.presets import AUGMENTATIONS

    config = recipe.TrainConfig.demo(augment=augment, augmentation=augmentation, augment_on="device", batch_size=64)
    train_loader, test_loader = recipe.build_loaders(config, torch.device("cpu"))
    assert isinstance(train_loader, DeviceLoader) and isinstance(test_loader, DeviceLoader)
    assert train_loader.transform == BatchTransform(**(AUGMENTATIONS[augmentation] if augment else NO_AUGMENTATION))
    assert train_loader.drop_last and len(train_loader) == 2000 // 64 and train_loader.dataset.classes[0] == "airplane"
    cpu_loader, cpu_test = recipe.build_loaders(replace(config, augment_on="cpu"), torch.device("cpu"))
    assert isinstance(cpu_loader, SeededLoader) and len(cpu_loader) == len(train_loader)
    # the test images, normalised on the device, in order: the albumentations test preset's tensors to float rounding
    assert len(test_loader) == len(cpu_test) and not test_loader.drop_last
    for (images, labels), (cpu_images, cpu_labels) in zip(test_loader, cpu_test, strict=True):
        assert torch.equal(labels, cpu_labels) and torch.allclose(images, cpu_images, atol=1e-5)


def test_a_run_augmented_on_the_device_resumes_exactly(tmp_path):
    import torch

    config = _tiny(tmp_path, augment_on="device", epochs=2, max_batches=2, batch_size=32)
    full = recipe.train_run(recipe.setup_run(config))
    recipe.train_run(recipe.setup_run(replace(config, epochs=1, out=str(tmp_path / "half"))))
    resumed = recipe.setup_run(replace(config, out=str(tmp_path / "half")), resume=tmp_path / "half" / "checkpoint.pt")
    again = recipe.train_run(resumed, resume=tmp_path / "half" / "checkpoint.pt")
    assert again.history.train_loss == full.history.train_loss and again.history.test_acc == full.history.test_acc
    for a, b in zip(full.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_both_pipelines_train_to_comparable_accuracy(tmp_path):
    """A short run of each (ResNet18 width 4, 4 epochs of 8 batches of 50 images, Adam; the 1,000 bundled test
    images): a weak check, what ~25 s of CPU allows. Measured on the project's 2-core CPU (seed 0, deterministic):
    albumentations 15.3%, the device pipeline 14.7%; chance is 10%. A loader whose labels do not follow their images,
    or whose normalisation differs from the test loader's, stays near chance; a small difference in the augmentation's
    distribution would not show here (tests/data/test_batch_transforms.py checks that)."""
    results = {}
    for where in ("cpu", "device"):
        config = _tiny(tmp_path, augment_on=where, epochs=4, max_batches=8, batch_size=50, optimizer="adam", lr=2e-3,
                       weight_decay=0.0, scheduler="none", out=str(tmp_path / where))
        results[where] = recipe.train_run(recipe.setup_run(config)).history.test_acc[-1]
    assert min(results.values()) > 0.13, results
    assert abs(results["device"] - results["cpu"]) < 0.06, results
