"""ResNet-12 (cml/resnet.py, ``--backbone resnet12``): its meta-gradients proven as Conv-4's are (the three engines
agree in float64 for every method x base x order, at tiny widths; finite differences on a 2-block version through
the inner loop), a block worked by hand, the parameter counts against their formula, More-MAML's widening, the
recorders' block names, the Table 9 preset, and the one-line refusals."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from cml.cli import _config_from_args, build_parser, main
from cml.config import Config, ConfigError, preset
from cml.engines import BatchedBackend, FuncBackend, HigherBackend
from cml.layers import LinearHead, MetaModel, StepNorm
from cml.meta import meta_gradient, outer_gradient, task_losses
from cml.methods import METHODS
from cml.models import build_model, count, init_parameters, parameter_counts
from cml.paper import matching
from cml.recording import gradient_record, representations
from cml.resnet import ResBlock, ResNet, ResNet12, ResNetConv, scaled_widths
from cml.roles import is_norm
from cml.tasks.image import RESNET12_WIDTHS

from test_bases import BASES, conv_cfg, image_tasks, model_for

TINY = dict(backbone="resnet12", resnet_widths=(2, 3, 4, 5))


# Every test here in float64 (the fixture in conftest.py): meta-gradients are compared to 1e-10.
pytestmark = pytest.mark.usefixtures("float64")


def resnet_cfg(base: str, method: str, **kw) -> Config:
    """:func:`test_bases.conv_cfg` (16 px, 3-way 2-shot, 2 inner steps, the conv co-learner, each base's machinery
    on: MAML++'s per-step BatchNorm rows among them) on a ResNet-12 of widths 2-3-4-5."""
    if method == "noisy":
        kw["noise_std"] = 0.1
    if method == "more":  # parameter-matched to CML with the co-learner's blocks as theta
        kw["more_capacity"] = "blocks"
    return conv_cfg(base, method, **{**TINY, **kw})


def relative_error(got: dict, want: dict) -> float:
    """Largest per-tensor error against the whole gradient's norm."""
    assert got.keys() == want.keys()
    whole = math.sqrt(sum(float(v.pow(2).sum()) for v in want.values()))
    assert whole > 0
    return max(float((got[n] - want[n]).norm()) for n in want) / whole


# -- 1. three engines, one meta-gradient ------------------------------------------------------------------

# Every base with maml's and cml's rows at both orders, and cml on every base, run in `make test-fast` (about 15 s
# of the file's time); the rest of the method x base x order grid is marked slow (about 50 s on a quiet core).
_FAST = {(b, m, fo) for b in ("maml", "maml++") for m in ("none", "cml") for fo in (False, True)} | {
    (b, "cml", False) for b in BASES}
_GRID = [pytest.param(b, m, fo, marks=() if (b, m, fo) in _FAST else pytest.mark.slow, id=f"{b}-{m}-{fo and 'fo'}")
         for b in BASES for m in METHODS for fo in (False, True)]


@pytest.mark.parametrize("base, method, first_order", _GRID)
def test_higher_func_and_batched_agree_on_resnet12(base, method, first_order):
    cfg = resnet_cfg(base, method, first_order=first_order)
    model = model_for(cfg)
    assert isinstance(model.features, ResNet12) and model.features.widths == (2, 3, 4, 5)
    tasks = image_tasks(cfg, 2)
    params = dict(model.named_parameters())
    split = cfg.spec.phi_in_outer_loss
    # outer step 3: MAML++'s multi-step loss still weighs every step.
    want = outer_gradient(HigherBackend(model), cfg, params, tasks, split=split, outer_step=3)
    for engine in (FuncBackend, BatchedBackend):
        got = outer_gradient(engine(model), cfg, params, tasks, split=split, outer_step=3)
        assert relative_error(got.total, want.total) <= 1e-10, engine.name
        if split:
            assert relative_error(got.meta_part, want.meta_part) <= 1e-10, engine.name
        assert got.meta_loss == pytest.approx(want.meta_loss, rel=1e-12)
    # every block of psi receives a meta-gradient (none is cut off by the wiring)
    for block in ("block1", "block2", "block3", "block4"):
        assert any(float(g.abs().sum()) > 0 for n, g in want.total.items() if n.startswith(f"features.{block}.")), block


def test_first_and_second_order_differ_on_resnet12():
    cfg = resnet_cfg("maml", "cml")
    model = model_for(cfg)
    tasks = image_tasks(cfg, 2)
    second = meta_gradient(FuncBackend(model), cfg, dict(model.named_parameters()), tasks).total
    first = meta_gradient(FuncBackend(model), cfg.replace(first_order=True), dict(model.named_parameters()),
                          tasks).total
    assert relative_error(first, second) > 1e-6


# -- 2. finite differences through the inner loop ---------------------------------------------------------

def test_gradcheck_through_the_inner_loop_on_a_two_block_resnet():
    """The whole CML objective (two inner steps on psi and theta, the query losses of theta' and phi) of a
    2-block ResNet (widths 2-3, 8 px, every conv, norm and shortcut of the block), against finite differences."""
    cfg = Config(method="cml", task="omniglot", data="unused", ways=2, shots=2, queries=1, image_size=8,
                 co_learner="linear", inner_steps=2, inner_lr=0.1, gamma=0.7)
    features = ResNet(1, (2, 3), 8)
    model = MetaModel(features, LinearHead(features.out_features, 2), LinearHead(features.out_features, 2))
    init_parameters(model, torch.Generator().manual_seed(3))
    model = model.double()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    tasks = image_tasks(cfg, 1)
    backend = FuncBackend(model)

    def outer_loss(flat):
        params = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        return task_losses(backend, cfg, params, tasks[0], "second").total(cfg.gamma)

    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).requires_grad_()
    assert torch.autograd.gradcheck(outer_loss, (flat,), eps=1e-6, atol=1e-6, rtol=1e-5)


# -- 3. a block worked by hand ----------------------------------------------------------------------------

def test_a_block_with_its_residual_branch_silenced_is_pool_of_leaky_relu_of_the_shortcut():
    """With the last norm of the residual branch at weight 0 and bias 0 the branch adds exactly 0, so the block is
    LeakyReLU(0.1)(BN(W x)) for the 1x1 shortcut W, and the network's block1 is its 2x2 max-pool."""
    g = torch.Generator().manual_seed(0)
    net = ResNet(3, (4,), 8)
    init_parameters(net, g)
    block: ResBlock = net.block1
    with torch.no_grad():
        block.layer3.norm.weight.zero_()
        block.layer3.norm.bias.zero_()
        block.shortcut.norm.weight.copy_(torch.randn(4, generator=g))
        block.shortcut.norm.bias.copy_(torch.randn(4, generator=g))
    x = torch.randn(5, 3, 8, 8, generator=g)
    s = torch.einsum("oc,nchw->nohw", block.shortcut.conv.weight[:, :, 0, 0], x)  # the 1x1 conv, no bias
    mean = s.mean(dim=(0, 2, 3), keepdim=True)
    var = ((s - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)  # biased, as batch statistics are
    bn = (s - mean) / torch.sqrt(var + 1e-5) * block.shortcut.norm.weight.view(1, -1, 1, 1) \
        + block.shortcut.norm.bias.view(1, -1, 1, 1)
    want = torch.where(bn > 0, bn, 0.1 * bn)
    with torch.no_grad():
        torch.testing.assert_close(block(x), want, rtol=1e-12, atol=1e-12)
        pooled = want.reshape(5, 4, 4, 2, 4, 2).amax(dim=(3, 5))  # (n, c, 4, 4)
        out = net(x)
        torch.testing.assert_close(out["block1"], pooled, rtol=1e-12, atol=1e-12)
        assert out["block1"].equal(F.max_pool2d(out["prepool"], 2))
        torch.testing.assert_close(out["prepool"], want, rtol=1e-12, atol=1e-12)
        assert out["flat"].shape == (5, 4 * 4 * 4)


def test_resnet_convs_are_initialised_kaiming_normal_fan_out():
    conv = ResNetConv(64, 64, 3, padding=1, bias=False)
    a, b = ResNetConv(64, 64, 3, padding=1, bias=False), ResNetConv(64, 64, 3, padding=1, bias=False)
    for module, seed in ((conv, 0), (a, 1), (b, 1)):
        init_parameters(module, torch.Generator().manual_seed(seed))
        module.requires_grad_(False)
    std = math.sqrt(2 / (64 * 9))  # the leaky-ReLU gain with slope 0 (MetaOptNet's call), fan_out = 64 * 3 * 3
    assert float(conv.weight.std()) == pytest.approx(std, rel=0.03)
    assert abs(float(conv.weight.mean())) < 0.05 * std
    assert torch.equal(a.weight, b.weight) and conv.bias is None


# -- 4. the model a run builds ----------------------------------------------------------------------------

def _resnet_psi(c_in: int, widths: tuple[int, ...]) -> int:
    """ResNet-12's parameters by formula: per block three 3x3 convs and a 1x1 shortcut (no biases), four norms."""
    total = 0
    for a, b in zip((c_in,) + widths[:-1], widths):
        total += 9 * a * b + 2 * 9 * b * b + a * b + 4 * 2 * b
    return total


def test_parameter_counts_at_the_papers_widths_match_the_formula(capsys):
    assert main(["params", "--task", "miniimagenet", "--preset", "paper", "--backbone", "resnet12"]) == 0
    rows = {line.split()[0]: (int(line.split()[1]), int(line.split()[2]))
            for line in capsys.readouterr().out.splitlines()[1:]}
    psi = _resnet_psi(3, RESNET12_WIDTHS)
    assert psi == 12_424_320  # the standard ResNet-12's ~12.4M
    theta = 640 * 5 * 5 * 5 + 5  # 84 px -> 5x5 after four poolings
    # the conv co-learner on block 4's 640-channel, 10x10 pre-pool map: two conv blocks (with biases) and a linear
    # layer on their pooled 5x5 map
    phi = 2 * (9 * 640 * 640 + 640 + 2 * 640) + 640 * 5 * 5 * 5 + 5
    assert rows["maml"] == (psi + theta, psi + theta)
    assert rows["cml"] == (psi + theta + phi, psi + theta)
    assert rows["cml†"] == (psi + theta + phi, psi + theta + phi)
    more_train, _ = rows["more-maml"]
    assert more_train > psi + theta and abs(more_train - (psi + theta + phi)) <= 0.05 * (psi + theta + phi)


def test_more_maml_widens_every_block_by_one_factor():
    kw = dict(task="omniglot", data="unused", image_size=16, backbone="resnet12", resnet_widths=(8, 16, 24, 32),
              co_learner="conv")
    more = build_model(Config(method="more", **kw))
    cml = build_model(Config(method="cml", **kw))
    widths = more.features.widths
    assert widths == scaled_widths((8, 16, 24, 32), widths[-1]) and widths[-1] > 32
    assert all(abs(w / base - widths[-1] / 32) <= 0.5 / base for w, base in zip(widths, (8, 16, 24, 32)))
    target = count(cml.parameters())
    assert abs(count(more.parameters()) - target) <= 0.05 * target
    blocks = build_model(Config(method="more", more_capacity="blocks", **kw))
    assert blocks.features.widths == (8, 16, 24, 32)
    assert blocks.head.block_a.conv.in_channels == 32  # the co-learner's blocks read block 4's 32 channels
    assert parameter_counts(Config(method="more", **kw))["train"] == count(more.parameters())


def test_maml_pp_per_step_rows_and_norm_names_on_resnet12():
    cfg = resnet_cfg("maml++", "cml", test_inner_steps=3)
    model = build_model(cfg)
    norms = [m for n, m in model.features.named_modules() if n.rsplit(".", 1)[-1] == "norm"]
    # One row per training inner step (test-time steps beyond them reuse the last row: cml.bases.maml_pp).
    assert cfg.inner_steps != cfg.test_inner_steps
    assert len(norms) == 16 and all(isinstance(m, StepNorm) and m.weight.shape[0] == cfg.inner_steps for m in norms)
    names = [n for n, _ in model.features.named_parameters()]
    assert sum(is_norm(n) for n in names) == 32 and len(names) == 48


def test_recorders_name_resnet12s_blocks():
    cfg = resnet_cfg("maml", "cml")
    model = model_for(cfg)
    tasks = image_tasks(cfg, 2)
    backend = FuncBackend(model)
    params = dict(model.named_parameters())
    mg = meta_gradient(backend, cfg, params, tasks, split=True)
    rec = gradient_record(mg.total, mg.meta_part)
    assert list(rec["grad_norm_blocks"]) == list(rec["cos_blocks"]) == ["block1", "block2", "block3", "block4"]
    before, after = representations(backend, cfg, params, tasks[0].support, tasks[0].query[0])
    # block4 is flat, reported once; then the head's output (the logits: Figure 3d's last layer).
    assert list(before) == list(after) == ["block1", "block2", "block3", "flat", "output"]


# -- 5. presets and refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["cifar-fs", "fc100", "flower"])
@pytest.mark.parametrize("method", ["none", "cml"])
def test_the_paper_preset_with_resnet12_is_table_9s_setting(task, method):
    cfg = preset("paper", task, method, data="-", backbone="resnet12")
    assert (cfg.backbone, cfg.resnet_widths, cfg.image_size) == ("resnet12", RESNET12_WIDTHS, 32)
    assert (cfg.inner_lr, cfg.inner_steps, cfg.meta_batch, cfg.queries, cfg.meta_lr, cfg.steps, cfg.first_order) == \
        (0.5, 1, 4, 15, 1e-3, 30000, False)
    assert (cfg.gamma, cfg.co_learner) == (1.0, "conv")
    for shots in (1, 5):
        values = matching({**cfg.replace(shots=shots).to_dict()}, task)
        assert [(v.table, v.backbone) for v in values] == [("9", "resnet12")]
    conv4 = preset("paper", task, method, data="-")
    assert conv4.backbone == "conv4" and conv4.resnet_widths == RESNET12_WIDTHS
    assert {v.table for v in matching(conv4.to_dict(), task)} == {"2"}
    quick = preset("quick", task, method, data="-", backbone="resnet12")
    assert quick.resnet_widths == (16, 40, 80, 160)


def test_the_command_lines_of_table_9_resolve_to_its_setting():
    common = ["--task", "fc100", "--data", "PATH", "--preset", "paper", "--backbone", "resnet12"]
    train = _config_from_args(build_parser().parse_args(["train", *common, "--method", "cml", "--shots", "5"]))
    assert train == preset("paper", "fc100", "cml", data="PATH", backbone="resnet12", shots=5)
    sweep = _config_from_args(build_parser().parse_args(["sweep", *common, "--methods", "none,cml", "--out", "x"]),
                              method="none")
    assert sweep == preset("paper", "fc100", "none", data="PATH", backbone="resnet12")
    small = _config_from_args(build_parser().parse_args(["train", *common, "--method", "cml", "--resnet-widths",
                                                         "4,6,8,10"]))
    assert small.resnet_widths == (4, 6, 8, 10) and small.inner_lr == 0.5


@pytest.mark.parametrize("kw, message", [
    (dict(task="sinusoid"), r"^backbone 'resnet12' is an image backbone; sinusoid has its own model"),
    (dict(task="graph"), r"^backbone 'resnet12' is an image backbone; the graph task has its own model"),
    (dict(task="fonts", image_size=12), r"^image_size 12 is too small for ResNet-12's four 2x2 poolings"),
    (dict(task="fonts", resnet_widths=(8, 8, 8)), r"^resnet_widths must be four positive channel counts"),
    (dict(task="fonts", resnet_widths=(8, 0, 8, 8)), r"^resnet_widths must be four positive channel counts"),
    (dict(task="fonts", backbone="conv4", resnet_widths=(8, 8, 8, 8)), r"^resnet_widths is read by backbone"),
    (dict(task="fonts", backbone="resnet18"), r"^unknown backbone 'resnet18'"),
])
def test_refusals_are_one_line(kw, message):
    with pytest.raises(ConfigError, match=message) as e:
        Config(method="cml", **{"backbone": "resnet12", **kw})
    assert "\n" not in str(e.value)


def test_the_cli_refuses_resnet12_on_sinusoid_in_one_line(tmp_path, capsys):
    rc = main(["train", "--task", "sinusoid", "--method", "cml", "--backbone", "resnet12", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: backbone 'resnet12' is an image backbone") and "\n" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("size", [28, 32, 84])
def test_resnet12_at_the_papers_image_sizes(size):
    net = ResNet12(3, (2, 3, 4, 5), size)
    out = net(torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0)))
    side = size // 2 // 2 // 2
    assert out["prepool"].shape == (4, 5, side, side) == (4, net.prepool_channels, net.prepool_size, net.prepool_size)
    assert out["flat"].shape == (4, net.out_features) == (4, 5 * (side // 2) ** 2)
    with pytest.raises(ValueError, match="at least 16"):
        ResNet12(3, (2, 3, 4, 5), 15)
    assert F.max_pool2d(out["prepool"], 2).flatten(1).equal(out["flat"])
