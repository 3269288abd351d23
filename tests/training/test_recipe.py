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
