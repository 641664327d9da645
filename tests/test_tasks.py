"""The task table (cml/tasks/): every task is one row of one family, a data set's facts sit beside its loader, and
the seams hold: a new image data set is one registration, a new task family one file (both tested on a copy of the
package, trained end to end through the CLI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cml.config import FIELD_CHOICES, Config, ConfigError, preset
from cml.data import DATASETS
from cml.data.graph import SBM_FEATURES
from cml.tasks import FAMILIES, TASK_TABLE, TASKS, get_task

ROOT = Path(__file__).resolve().parents[1]


def test_one_table_for_every_list_of_tasks():
    assert FIELD_CHOICES["task"] == TASKS == tuple(TASK_TABLE)
    assert set(FAMILIES) == {"sinusoid", "image", "graph"}
    # The image data sets are the image family's rows, each with its loader.
    assert DATASETS == tuple(n for n, e in TASK_TABLE.items() if e.family is FAMILIES["image"])
    with pytest.raises(KeyError, match="unknown task 'mnist'; choose one of: sinusoid"):
        get_task("mnist")


def test_a_data_sets_facts_reach_the_config():
    for name, entry in TASK_TABLE.items():
        data = "DATA" if entry.needs_data else None
        cfg = preset("paper", name, "cml", data=data)
        if entry.paper_image_size is not None:
            assert cfg.image_size == entry.paper_image_size, name
        assert entry.rgb == (entry.channels == 3), name
        if entry.needs_data:
            with pytest.raises(ConfigError, match="needs a data path"):
                preset("quick", name, "cml")
    assert get_task("graph").channels == SBM_FEATURES + 1  # the generated graph's input row
    assert preset("paper", "miniimagenet", "none", data="D").image_size == 84
    assert preset("paper", "cifar-fs", "none", data="D").image_size == 32


def test_families_refuse_what_they_cannot_run():
    with pytest.raises(ConfigError, match=r"co_learner 'conv' does not apply to task 'sinusoid' \(its models take "
                                          r"linear or mlp; conv needs images\)"):
        Config(task="sinusoid", co_learner="conv")
    with pytest.raises(ConfigError, match="rotations apply to image tasks, not the graph task"):
        Config(task="graph", rotations=True)
    with pytest.raises(ConfigError, match="ways must be at least 2 for classification"):
        Config(task="fonts", ways=1)
    with pytest.raises(ConfigError, match="per_step_bn needs BatchNorm layers, which the graph model has not"):
        Config(task="graph", base="maml++", per_step_bn=True)
    Config(task="sinusoid", ways=1)  # regression has no ways


def _copy_package(tmp_path: Path) -> Path:
    """A copy of the checkout's importable packages (cml, analysis, figures) to edit."""
    for pkg in ("cml", "analysis", "figures"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(cwd), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "cml", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_new_image_data_set_is_one_registration(tmp_path):
    root = _copy_package(tmp_path / "src")
    image = root / "cml" / "tasks" / "image.py"
    text = image.read_text()
    # One more row: a data set read by the generic folder loader, RGB, used at 20 px in "its paper".
    row = ('    TaskEntry("swatches", FAMILY, "coloured swatches", needs_data=True, channels=3, rgb=True,\n'
           '              paper_image_size=20, loader=_lazy(_DATA, "load_folder")),\n')
    assert text.rstrip().endswith(")")
    image.write_text(text.rstrip()[:-1] + row + ")\n")
    data = tmp_path / "swatches"
    rng = np.random.default_rng(0)
    for c in range(8):
        for k in range(4):
            (data / f"c{c}").mkdir(parents=True, exist_ok=True)
            colour = np.array([c * 30 % 256, c * 70 % 256, c * 110 % 256], dtype=np.uint8)
            pixels = np.clip(colour + rng.integers(-10, 10, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(data / f"c{c}" / f"{k}.png")
    out = _cli(root, "train", "--task", "swatches", "--method", "cml", "--data", str(data), "--preset", "paper",
               "--ways", "2", "--shots", "1", "--queries", "1", "--steps", "2", "--filters", "4", "--val-tasks", "2",
               "--test-tasks", "3", "--no-progress", "--out", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    config = (tmp_path / "runs" / "swatches-cml-s0" / "config.json").read_text()
    assert '"image_size": 20' in config  # the registration's paper image size reached the preset
    assert "CML: test accuracy" in out.stdout
    help_text = _cli(root, "train", "--help").stdout
    assert "swatches" in help_text


TOY_FAMILY = '''
"""A toy family, written for the test of the seam: linear regression y = a x + b, a in [-2, 2], b in [-1, 1]."""

from __future__ import annotations

from ..records import FITS
from . import TaskEntry, TaskFamily, no_image_options


class LineSampler:
    def __init__(self, shots, queries, gen):
        self.shots, self.queries, self.gen, self.last_function = shots, queries, gen, None

    def sample(self):
        import torch
        from ..data.base import Task

        a, b = (torch.rand(2, generator=self.gen) * torch.tensor([4.0, 2.0]) - torch.tensor([2.0, 1.0])).tolist()
        self.last_function = lambda x: a * x + b
        xs = torch.rand(self.shots, 1, generator=self.gen) * 10 - 5
        xq = torch.rand(self.queries, 1, generator=self.gen) * 10 - 5
        return Task((xs, a * xs + b), (xq, a * xq + b))


class Lines(TaskFamily):
    name = help_group = field_label = "lines"
    classification, metric, higher_is_better = False, "mse", False
    width_field, end_record = "hidden", FITS
    presets = {"quick": dict(shots=5, queries=5, hidden=8, inner_lr=0.01, steps=5, meta_batch=2, val_tasks=2,
                             test_tasks=4, log_interval=1, co_learner="linear"),
               "paper": dict(shots=5, queries=5, hidden=8, inner_lr=0.01, steps=5, co_learner="linear")}

    def loss(self, out, y):
        from torch.nn import functional as F
        return F.mse_loss(out, y)

    def results(self, res):
        return [("mse", res.meta_loss), ("mse_dagger", res.co_loss), ("mse_before", res.pre_loss)]

    def check(self, cfg):
        no_image_options(cfg, "lines")

    def load(self, cfg):
        return None

    def in_channels(self, data):
        return 1

    def sampler(self, cfg, data, split, gen, ways, shots, queries, device=None):
        return LineSampler(shots, queries, gen)

    def features(self, cfg, in_channels, width, norm_layer):
        from ..layers import MLP
        return MLP(width)

    def describe(self, cfg):
        return f"lines, {cfg.shots}-shot"

    def data_summary(self, entry, data, image_size, seed):
        raise ValueError("not used by this test")


FAMILY = Lines()
TASKS = (TaskEntry("lines", FAMILY, "linear regression", needs_data=False),)
'''


def test_a_new_task_family_is_one_file(tmp_path):
    root = _copy_package(tmp_path / "src")
    (root / "cml" / "tasks" / "lines.py").write_text(textwrap.dedent(TOY_FAMILY))
    out = _cli(root, "train", "--task", "lines", "--method", "cml", "--no-progress", "--out", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    assert "CML: test MSE" in out.stdout
    run = tmp_path / "runs" / "lines-cml-s0"
    assert (run / "test.json").is_file() and (run / "metrics.jsonl").read_text().count("\n") == 5
