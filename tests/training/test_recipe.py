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
