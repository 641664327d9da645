"""Base learners (MAML++, BOIL, Sharp-MAML, ANIL) on the seam: each proven by a hand-worked case, by the two
engines agreeing, and by float64 gradient checks; plus the properties that tie each one to MAML."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from cml.bases import BASE_TABLE, BASES as ALL_BASES, get_base
from cml.config import Config, ConfigError, preset
from cml.data.base import Task
from cml.bases.maml_pp import msl_weights
from cml.engines import FuncBackend, HigherBackend
from cml.meta import adapt, inner_spec, meta_gradient, outer_gradient, task_losses
from cml.models import MetaModel, build_model, init_parameters
from cml.roles import is_norm
from cml.trainer import Trainer
from cml import records


#: The bases that run on every task family (the MLP and Conv-4 cases below); the graph bases' own tests are in
#: tests/test_graph_bases.py.
BASES = tuple(b for b in ALL_BASES if not get_base(b).families)


# Every test here in float64 (the fixture in conftest.py): meta-gradients are compared to 1e-10.
pytestmark = pytest.mark.usefixtures("float64")


# Each base with its own machinery switched on (the MLP has no BatchNorm, so no per-step BatchNorm there).
def base_options(base: str, kind: str) -> dict:
    if base == "maml++":
        opts = dict(msl=True, msl_anneal_steps=10, learn_inner_lr=True, cosine_lr=True)
        if kind == "image":
            opts["per_step_bn"] = True
        return opts
    if base == "sharp-maml":
        return dict(sharp_variant="both", sharp_rho_lower=0.05, sharp_rho_upper=0.05)
    return {}


def mlp_cfg(base: str, method: str, **kw) -> Config:
    values = dict(base=base, method=method, task="sinusoid", hidden=5, inner_steps=2, test_inner_steps=2,
                  inner_lr=0.05)
    return Config(**{**values, **base_options(base, "sinusoid"), **kw})


def conv_cfg(base: str, method: str, **kw) -> Config:
    values = dict(base=base, method=method, task="omniglot", data="unused", filters=4, image_size=16, ways=3,
                  shots=2, queries=2, co_learner="conv", inner_steps=2, test_inner_steps=2, inner_lr=0.1)
    return Config(**{**values, **base_options(base, "image"), **kw})


def model_for(cfg: Config, seed: int = 0) -> MetaModel:
    model = build_model(cfg, 1)
    init_parameters(model, torch.Generator().manual_seed(seed))
    return model.double()


def sinusoid_tasks(n: int, seed: int = 1, shots: int = 4) -> list[Task]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        amp, phase = 0.1 + 4.9 * torch.rand(1, generator=g), 3.14 * torch.rand(1, generator=g)
        xs, xq = 10 * torch.rand(shots, 1, generator=g) - 5, 10 * torch.rand(5, 1, generator=g) - 5
        out.append(Task((xs, amp * torch.sin(xs - phase)), (xq, amp * torch.sin(xq - phase))))
    return out


def image_tasks(cfg: Config, n: int, seed: int = 2) -> list[Task]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(cfg.ways)

    def images(k):
        return torch.rand(cfg.ways * k, 1, cfg.image_size, cfg.image_size, generator=g)

    return [Task((images(cfg.shots), labels.repeat_interleave(cfg.shots)),
                 (images(cfg.queries), labels.repeat_interleave(cfg.queries))) for _ in range(n)]


def outer(backend_cls, cfg, model, tasks, outer_step=3, **kw):
    return outer_gradient(backend_cls(model), cfg, dict(model.named_parameters()), tasks, outer_step=outer_step, **kw)


def adapted(backend_cls, cfg, model, support, order="second"):
    params = dict(model.named_parameters())
    return params, adapt(backend_cls(model), inner_spec(cfg, params, cfg.inner_steps, order), params, support)[-1]


def assert_bitwise(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for n in a:
        assert torch.equal(a[n], b[n]), n


# -- the seam ---------------------------------------------------------------------------------------------

def test_every_base_is_discovered_from_its_file():
    assert set(ALL_BASES) == {"maml", "maml++", "boil", "sharp-maml", "anil", "gmeta", "amm-gnn"}
    assert set(BASES) == {"maml", "maml++", "boil", "sharp-maml", "anil"}
    assert get_base("anil").label == "ANIL" and get_base("boil").role_rates(conv_cfg("boil", "none"))["theta"] == 0
    with pytest.raises(KeyError, match="unknown base learner 'reptile'"):
        get_base("reptile")


def test_legacy_method_names_load_and_refuse_another_base():
    assert Config(method="noisy-maml", noise_std=0.1).method == "noisy"
    assert Config.from_dict({"method": "maml", "task": "sinusoid"}).method == "none"
    with pytest.raises(ConfigError, match="with base 'boil' write --method none"):
        Config(base="boil", method="maml")


@pytest.mark.parametrize("values, field", [
    (dict(base="maml", msl=True), "msl"),
    (dict(base="boil", sharp_rho_lower=0.1), "sharp_rho_lower"),
    (dict(base="sharp-maml", learn_inner_lr=True), "learn_inner_lr"),
    (dict(base="maml++", per_step_bn=True, task="sinusoid"), "per_step_bn"),
    (dict(base="anil", inner_lr=0.1, head_inner_lr=0.0), "adapts nothing"),
    (dict(base="sharp-maml", sharp_variant="middle"), "sharp_variant"),
])
def test_options_of_another_base_are_refused_with_the_reason(values, field):
    with pytest.raises(ConfigError, match=field):
        Config(**{"method": "none", **values})


def test_base_presets_set_their_switches_and_overrides_win():
    pp = preset("quick", "fonts", "cml", base="maml++")
    assert pp.msl and pp.learn_inner_lr and pp.per_step_bn and pp.cosine_lr and pp.inner_steps >= 2
    assert not preset("quick", "fonts", "cml", base="maml++", msl=False).msl
    paper = preset("paper", "omniglot", "none", base="maml++", data="x")
    assert (paper.filters, paper.inner_steps, paper.meta_batch, paper.inner_lr) == (64, 5, 8, 0.1)
    assert paper.msl_anneal_steps == 5000 and paper.steps == 50000 and paper.min_meta_lr == 1e-5
    mini = preset("paper", "miniimagenet", "none", base="maml++", data="x")
    assert ((mini.filters, mini.image_size, mini.meta_batch, mini.queries, mini.msl_anneal_steps)
            == (48, 84, 2, 15, 7500))
    sharp = preset("quick", "sinusoid", "none", base="sharp-maml")
    assert sharp.sharp_rho_lower == sharp.sharp_rho_upper == 0.05


# -- each base tied to MAML -------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [mlp_cfg, conv_cfg])
@pytest.mark.parametrize("method", ["none", "cml"])
@pytest.mark.parametrize("base, same", [
    ("maml++", {}),                                        # every switch off
    ("boil", {"head_inner_lr": 0.1}),                      # head rate = body rate (conv: 0.1, MLP: set below)
    ("sharp-maml", {"sharp_rho_lower": 0.0, "sharp_rho_upper": 0.0}),  # rho = 0
])
def test_base_reduces_to_maml_bit_for_bit(make, method, base, same, monkeypatch):
    cfg_maml = make("maml", method)
    opts = {k: (cfg_maml.inner_lr if k == "head_inner_lr" else v) for k, v in same.items()}
    cfg = Config(**{**cfg_maml.to_dict(), "base": base, **opts})
    if base == "maml++":  # MAML++ never adapts BatchNorm (as its reference): MAML with BatchNorm kept out of the inner
        # loop (on the MLP, which has none, MAML itself)
        maml_row = dataclasses.replace(get_base("maml"), adapts=lambda cfg, name: not is_norm(name))
        monkeypatch.setitem(BASE_TABLE, "maml", maml_row)
    tasks = sinusoid_tasks(2) if make is mlp_cfg else image_tasks(cfg, 2)
    g_base = outer(HigherBackend, cfg, model_for(cfg), tasks, split=method == "cml")
    g_maml = outer(HigherBackend, cfg_maml, model_for(cfg_maml), tasks, split=method == "cml")
    assert_bitwise(g_base.total, g_maml.total)
    if method == "cml":
        assert_bitwise(g_base.meta_part, g_maml.meta_part)


@pytest.mark.parametrize("backend_cls", [HigherBackend, FuncBackend])
def test_anil_body_and_boil_head_are_bit_identical_after_the_inner_loop(backend_cls):
    for base, frozen, moved in (("anil", "features.", "head."), ("boil", "head.", "features.")):
        cfg = conv_cfg(base, "cml")
        model = model_for(cfg)
        params, new = adapted(backend_cls, cfg, model, image_tasks(cfg, 1)[0].support)
        for name, p in params.items():
            if name.startswith(frozen) or name.startswith("co_head."):
                assert torch.equal(new[name], p), (base, name)
            elif name.startswith(moved) and name.endswith("weight") and "norm" not in name:
                assert not torch.equal(new[name], p), (base, name)


def test_maml_pp_does_not_adapt_batchnorm_and_per_step_rows_are_used():
    cfg = conv_cfg("maml++", "none")
    model = model_for(cfg)
    params, new = adapted(FuncBackend, cfg, model, image_tasks(cfg, 1)[0].support)
    norms = [n for n in params if ".norm." in n]
    assert norms and all(torch.equal(new[n], params[n]) for n in norms)
    assert params["features.block1.norm.weight"].shape == (2, 4)  # (steps, channels)
    # Changing row 1 of a per-step BatchNorm changes the step-1 forward and not the step-0 one.
    x = image_tasks(cfg, 1)[0].support[0]
    backend = FuncBackend(model)
    before = [backend.forward(params, x, step=k)[0] for k in (0, 1)]
    bumped = dict(params)
    bumped["features.block1.norm.bias"] = params["features.block1.norm.bias"] + torch.tensor([[0.0], [0.5]])
    after = [backend.forward(bumped, x, step=k)[0] for k in (0, 1)]
    assert torch.equal(before[0], after[0]) and not torch.allclose(before[1], after[1])


@pytest.mark.parametrize("switches", [dict(), dict(msl=True, msl_anneal_steps=3), dict(cosine_lr=True)])
def test_maml_pp_never_adapts_batchnorm_whichever_switches_are_on(switches):
    """The reference never adapts BatchNorm in the inner loop, in any configuration (earlier versions did, with the
    multi-step loss alone or with every switch off)."""
    off = dict(learn_inner_lr=False, per_step_bn=False, msl=False, cosine_lr=False, msl_anneal_steps=0)
    cfg = conv_cfg("maml++", "none", **{**off, **switches})
    model = model_for(cfg)
    params, new = adapted(FuncBackend, cfg, model, image_tasks(cfg, 1)[0].support)
    norms = [n for n in params if ".norm." in n]
    assert norms and all(torch.equal(new[n], params[n]) for n in norms)
    assert all(not torch.equal(new[n], params[n]) for n in params if n.endswith("conv.weight"))
    maml = conv_cfg("maml", "none")
    params, new = adapted(FuncBackend, maml, model_for(maml), image_tasks(maml, 1)[0].support)
    assert all(not torch.equal(new[n], params[n]) for n in params if n.endswith("norm.weight"))  # MAML adapts it


def test_maml_pp_rows_are_the_training_steps_and_a_later_test_step_uses_the_last():
    """Per-step BatchNorm rows and learned rates: one per training step (2); test-time step 3 reads row 2 (index 1),
    trained, rather than a row no training step reached."""
    cfg = conv_cfg("maml++", "cml", inner_steps=2, test_inner_steps=3)
    model = model_for(cfg)
    params = dict(model.named_parameters())
    assert params["features.block1.norm.weight"].shape == (2, 4) and params["co_head.block_a.norm.bias"].shape == (2, 4)
    assert {p.shape for n, p in params.items() if n.startswith("inner_lr.")} == {(2,)}
    with torch.no_grad():  # rows made to differ, as trained ones do
        for n, p in params.items():
            if ".norm." in n or n.startswith("inner_lr."):
                p.add_(torch.rand(p.shape, generator=torch.Generator().manual_seed(len(n))) * 0.1)
    spec = inner_spec(cfg, params, 3, "none", test_time=True)
    for name, rates in spec.rates.items():
        assert len(rates) == 3 and torch.equal(rates[2], rates[1]) and not torch.equal(rates[1], rates[0]), name
    x = image_tasks(cfg, 1)[0].support[0]
    out = [FuncBackend(model).forward(params, x, step=k)[0] for k in range(3)]
    assert torch.equal(out[2], out[1]) and not torch.allclose(out[1], out[0])


def test_maml_pp_checkpoints_with_rows_for_the_test_steps_still_load_and_resume(tmp_path):
    """Checkpoints written when the rows were sized max(inner, test) steps: the extra rows never trained (their
    initial values, Adam's moments zero) are dropped; the run evaluates and resumes."""
    from cml.trainer import load_model
    from test_trainer import image_cfg, synthetic_splits

    torch.set_default_dtype(torch.float32)
    cfg = image_cfg("cml", base="maml++", inner_steps=2, test_inner_steps=3, msl=True, msl_anneal_steps=3,
                    learn_inner_lr=True, per_step_bn=True, steps=3, checkpoint_interval=3)
    Trainer(cfg, tmp_path / "run", splits=synthetic_splits()).train()
    path = tmp_path / "run" / records.CHECKPOINT
    state = torch.load(path, weights_only=True)
    names = list(state["model"])
    old = dict(state, model=dict(state["model"]))
    for name in names:  # what the earlier version wrote: a third row at its initial value
        t = state["model"][name]
        if name.startswith("inner_lr."):
            old["model"][name] = torch.cat([t, torch.full((1,), cfg.inner_lr)])
        elif ".norm." in name:
            old["model"][name] = torch.cat([t, (torch.ones if name.endswith("weight") else torch.zeros)(1, t.shape[1])])
    order = [n for n, _ in build_model(cfg, 1).named_parameters()]
    old["optimizer"] = {**state["optimizer"], "state": {
        i: {k: (torch.cat([v, torch.zeros_like(v[:1])]) if v.ndim and old["model"][order[i]].shape != v.shape else v)
            for k, v in st.items()} for i, st in state["optimizer"]["state"].items()}}
    records.atomic_torch_save(old, path)
    model, _ = load_model(tmp_path / "run")
    for name, p in model.state_dict().items():
        assert torch.equal(p, state["model"][name]), name
    resumed = Trainer(cfg.replace(steps=4), tmp_path / "run", splits=synthetic_splits(), resume=True)
    for p in resumed.model.parameters():
        for v in resumed.optimizer.state[p].values():
            assert not v.ndim or v.shape == p.shape
    resumed.train()
    assert records.read_json(tmp_path / "run" / records.TEST)["step"] == 4


def test_the_paper_presets_run_maml_pp_and_sharp_maml_as_the_references_do():
    mini = preset("paper", "miniimagenet", "cml", base="maml++", data="x")
    assert mini.min_meta_lr == mini.meta_lr == 1e-3 and mini.grad_clamp == 10.0 and mini.inner_steps == 5
    assert {get_base("maml++").outer_lr(mini, k) for k in (0, 1000, 40000)} == {1e-3}  # no annealing in effect
    for task in ("omniglot", "fonts"):
        assert preset("paper", task, "cml", base="maml++", data="x").grad_clamp == 0.0
    assert preset("quick", "miniimagenet", "cml", base="maml++", data="x").grad_clamp == 0.0
    for task in ("omniglot", "miniimagenet"):
        sharp = preset("paper", task, "cml", base="sharp-maml", data="x")
        assert (sharp.inner_steps, sharp.test_inner_steps, sharp.inner_lr) == (5, 5, 0.1)
    assert preset("paper", "sinusoid", "cml", base="sharp-maml").inner_steps == 1


# -- MAML++ -----------------------------------------------------------------------------------------------

def test_msl_weights_follow_the_reference_formula():
    w = msl_weights(5, 5, 15)
    assert w[:4] == pytest.approx([0.2 - 5 / 75] * 4) and w[4] == pytest.approx(0.2 + 20 / 75)
    assert [round(v, 3) for v in w] == [0.133, 0.133, 0.133, 0.133, 0.467]
    assert msl_weights(5, 0, 15) == pytest.approx([0.2] * 5)
    assert msl_weights(5, 14, 15)[:4] == pytest.approx([max(0.2 - 14 / 75, 0.006)] * 4)
    assert msl_weights(5, 15, 15) == [0, 0, 0, 0, 1.0] == msl_weights(5, 400, 15)
    assert msl_weights(4, 100, 1000) == pytest.approx([0.25 - 0.025] * 3 + [0.25 + 0.075])
    assert sum(msl_weights(5, 7, 15)) == pytest.approx(1.0)


def test_msl_outer_loss_is_the_weighted_sum_of_every_step():
    cfg = mlp_cfg("maml++", "cml", learn_inner_lr=False, cosine_lr=False, msl_anneal_steps=10)
    model = model_for(cfg)
    backend = FuncBackend(model)
    params = dict(model.named_parameters())
    task = sinusoid_tasks(1)[0]
    got = task_losses(backend, cfg, params, task, "second", outer_step=4)
    trajectory = adapt(backend, inner_spec(cfg, params, 2, "second"), params, task.support)
    w = msl_weights(2, 4, 10)
    mse = torch.nn.functional.mse_loss
    meta = sum(wk * mse(backend.forward(trajectory[k + 1], task.query[0])[0], task.query[1]) for k, wk in enumerate(w))
    co = sum(wk * mse(backend.forward(trajectory[k + 1], task.query[0])[1], task.query[1]) for k, wk in enumerate(w))
    torch.testing.assert_close(got.meta, meta, rtol=1e-14, atol=0)
    torch.testing.assert_close(got.co, co, rtol=1e-14, atol=0)


class ScalarFeatures(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(value))

    def forward(self, x, step=0, norm=None):
        return {"flat": self.weight * x}


class ScalarHead(ScalarFeatures):
    def forward(self, feats, step=0, norm=None):
        return self.weight * feats["flat"]


@pytest.mark.parametrize("backend_cls", [HigherBackend, FuncBackend])
def test_learnable_per_step_rates_worked_by_hand(backend_cls):
    r"""One adapted parameter w (the head h = 1 is frozen: head_inner_lr 0), squared loss, two inner steps with
    learnable rates a0, a1. With c = 2 x_s^2 and d = 2 x_s y_s the support gradient is g(w) = c w - d, and

        w1 = w - a0 g(w),   w2 = w1 - a1 g(w1),   L = (w2 x_q - y_q)^2,   q = dL/dw2 = 2 x_q (w2 x_q - y_q).

    Differentiating through both steps (dg/dw = c):

        dL/dw  = q (1 - a1 c)(1 - a0 c),
        dL/da1 = -q g(w1),
        dL/da0 = -q (1 - a1 c) g(w).
    """
    w, a0, a1 = 0.7, 0.11, 0.05
    xs, ys, xq, yq = 1.5, 0.3, -0.8, 1.1
    cfg = Config(base="maml++", method="none", task="sinusoid", inner_steps=2, test_inner_steps=2, inner_lr=0.1,
                 head_inner_lr=0.0, learn_inner_lr=True)
    model = MetaModel(ScalarFeatures(w), ScalarHead(1.0), None,
                      nn.ParameterDict({"features-weight": nn.Parameter(torch.tensor([a0, a1]))}))
    task = Task((torch.tensor([[xs]]), torch.tensor([[ys]])), (torch.tensor([[xq]]), torch.tensor([[yq]])))
    got = meta_gradient(backend_cls(model), cfg, dict(model.named_parameters()), [task]).total

    c, d = 2 * xs**2, 2 * xs * ys
    g = lambda v: c * v - d  # noqa: E731
    w1 = w - a0 * g(w)
    w2 = w1 - a1 * g(w1)
    q = 2 * xq * (w2 * xq - yq)
    assert got["features.weight"].item() == pytest.approx(q * (1 - a1 * c) * (1 - a0 * c), rel=1e-12)
    rates = got["inner_lr.features-weight"]
    assert rates[1].item() == pytest.approx(-q * g(w1), rel=1e-12)
    assert rates[0].item() == pytest.approx(-q * (1 - a1 * c) * g(w), rel=1e-12)


def test_learnable_rates_are_trained_by_the_outer_optimiser(tmp_path):
    cfg = preset("quick", "sinusoid", "cml", base="maml++", steps=4, meta_batch=2, test_tasks=4, val_tasks=2,
                 val_interval=0, checkpoint_interval=0, progress=False)
    trainer = Trainer(cfg, tmp_path / "run")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if n.startswith("inner_lr.")}
    assert before and all(torch.all(v == cfg.inner_lr) for v in before.values())
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert all(not torch.equal(after[n], v) for n, v in before.items())


def test_derivative_order_annealing_switches_at_step_k_exactly():
    cfg = mlp_cfg("maml++", "cml", msl=False, learn_inner_lr=False, cosine_lr=False, first_order_steps=3)
    first = Config(**{**mlp_cfg("maml", "cml").to_dict(), "first_order": True})
    second = mlp_cfg("maml", "cml")
    model, tasks = model_for(cfg), sinusoid_tasks(2)
    for step, ref in ((0, first), (2, first), (3, second), (10, second)):
        got = meta_gradient(FuncBackend(model), cfg, dict(model.named_parameters()), tasks, outer_step=step).total
        want = meta_gradient(FuncBackend(model), ref, dict(model.named_parameters()), tasks, outer_step=step).total
        assert_bitwise(got, want)
    g2 = meta_gradient(FuncBackend(model), cfg, dict(model.named_parameters()), tasks, outer_step=2).total
    g3 = meta_gradient(FuncBackend(model), cfg, dict(model.named_parameters()), tasks, outer_step=3).total
    assert any(not torch.allclose(g2[n], g3[n]) for n in g2)


def test_cosine_outer_learning_rate():
    cfg = preset("quick", "sinusoid", "none", base="maml++", steps=100, meta_lr=1e-3, min_meta_lr=1e-5)
    assert get_base(cfg.base).outer_lr(cfg, 0) == pytest.approx(1e-3)
    assert get_base(cfg.base).outer_lr(cfg, 50) == pytest.approx((1e-3 + 1e-5) / 2)
    assert get_base(cfg.base).outer_lr(cfg, 100) == pytest.approx(1e-5)
    assert get_base(cfg.base).outer_lr(cfg.replace(cosine_lr=False), 70) == 1e-3


# -- Sharp-MAML -------------------------------------------------------------------------------------------

def _scalar_maml_gradient(w, a, xs, ys, xq, yq, alpha):
    """MAML's hand-derived second-order meta-gradient of the scalar model h = w x, prediction a h (one step)."""
    r_s = a * w * xs - ys
    w1, a1 = w - 2 * alpha * r_s * a * xs, a - 2 * alpha * r_s * w * xs
    r_m = a1 * w1 * xq - yq
    dL_dw1, dL_da1 = 2 * r_m * a1 * xq, 2 * r_m * w1 * xq
    dw1_dw, dw1_da = 1 - 2 * alpha * a**2 * xs**2, -2 * alpha * xs * (r_s + a * w * xs)
    da1_dw, da1_da = -2 * alpha * xs * (r_s + a * w * xs), 1 - 2 * alpha * w**2 * xs**2
    return dL_dw1 * dw1_dw + dL_da1 * da1_dw, dL_dw1 * dw1_da + dL_da1 * da1_da


@pytest.mark.parametrize("backend_cls", [HigherBackend, FuncBackend])
def test_sam_upper_level_worked_by_hand(backend_cls):
    """Upper level: G = the meta-gradient at (w, a); the step uses G at (w, a) + rho G / ||G||."""
    w, a, rho, alpha = 0.7, -1.3, 0.2, 0.05
    xs, ys, xq, yq = 1.5, 0.3, -0.8, 1.1
    cfg = Config(base="sharp-maml", method="none", task="sinusoid", inner_lr=alpha, inner_steps=1,
                 sharp_variant="upper", sharp_rho_upper=rho)
    model = MetaModel(ScalarFeatures(w), ScalarHead(a), None)
    task = Task((torch.tensor([[xs]]), torch.tensor([[ys]])), (torch.tensor([[xq]]), torch.tensor([[yq]])))
    got = outer(backend_cls, cfg, model, [task], outer_step=0).total
    gw, ga = _scalar_maml_gradient(w, a, xs, ys, xq, yq, alpha)
    norm = math.hypot(gw, ga)
    ew, ea = _scalar_maml_gradient(w + rho * gw / norm, a + rho * ga / norm, xs, ys, xq, yq, alpha)
    assert got["features.weight"].item() == pytest.approx(ew, rel=1e-12)
    assert got["head.weight"].item() == pytest.approx(ea, rel=1e-12)


@pytest.mark.parametrize("backend_cls", [HigherBackend, FuncBackend])
def test_sam_lower_level_worked_by_hand(backend_cls):
    r"""Lower level on a quadratic: only w adapts (head h = 1 frozen), g(w) = c w - d with c = 2 x_s^2,
    d = 2 x_s y_s. With e = rho g(w) / (|g(w)| + eps):

        w1 = w - alpha g(w + e) = w - alpha (c (w + e) - d),   de/dw = rho c eps / (|g| + eps)^2,
        dL/dw = q dw1/dw = q (1 - alpha c (1 + de/dw)),   q = 2 x_q (w1 x_q - y_q).
    """
    w, rho, alpha, eps = 0.7, 0.3, 0.05, 1e-12
    xs, ys, xq, yq = 1.5, 0.3, -0.8, 1.1
    cfg = Config(base="sharp-maml", method="none", task="sinusoid", inner_lr=alpha, head_inner_lr=0.0,
                 inner_steps=1, sharp_variant="lower", sharp_rho_lower=rho)
    model = MetaModel(ScalarFeatures(w), ScalarHead(1.0), None)
    task = Task((torch.tensor([[xs]]), torch.tensor([[ys]])), (torch.tensor([[xq]]), torch.tensor([[yq]])))
    params, new = adapted(backend_cls, cfg, model, task.support)
    c, d = 2 * xs**2, 2 * xs * ys
    g = c * w - d
    e = rho * g / (abs(g) + eps)
    w1 = w - alpha * (c * (w + e) - d)
    assert new["features.weight"].item() == pytest.approx(w1, rel=1e-13)
    got = outer(backend_cls, cfg, model, [task], outer_step=0).total
    q = 2 * xq * (w1 * xq - yq)
    de_dw = rho * c * eps / (abs(g) + eps) ** 2
    assert got["features.weight"].item() == pytest.approx(q * (1 - alpha * c * (1 + de_dw)), rel=1e-12)


# -- both engines, every base -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("method", ["none", "cml"])
@pytest.mark.parametrize("base", BASES)
def test_higher_and_torch_func_agree_for_every_base(base, method, first_order, kind):
    make = mlp_cfg if kind == "mlp" else conv_cfg
    cfg = make(base, method, first_order=first_order)
    model = model_for(cfg)
    tasks = sinusoid_tasks(2) if kind == "mlp" else image_tasks(cfg, 2)
    gh = outer(HigherBackend, cfg, model, tasks, split=method == "cml")
    gf = outer(FuncBackend, cfg, model, tasks, split=method == "cml")
    for part in ("total",) + (("meta_part",) if method == "cml" else ()):
        a, b = getattr(gh, part), getattr(gf, part)
        assert a.keys() == b.keys()
        whole = math.sqrt(sum(float(v.pow(2).sum()) for v in b.values()))
        assert whole > 0
        for n in b:  # each tensor's error against the whole gradient's norm (BatchNorm-fed conv biases are ~0)
            assert float((a[n] - b[n]).norm()) <= 1e-10 * whole, (part, n)


@pytest.mark.parametrize("backend_cls", [HigherBackend, FuncBackend])
@pytest.mark.parametrize("base", BASES)
def test_gradcheck_meta_gradient_every_base(base, backend_cls):
    cfg = mlp_cfg(base, "cml", hidden=3)
    model = model_for(cfg)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    backend = backend_cls(model)
    tasks = sinusoid_tasks(2, shots=3)

    def f(flat):
        params = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        return torch.stack([task_losses(backend, cfg, params, t, "second", outer_step=2).total(cfg.gamma)
                            for t in tasks]).mean()

    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).requires_grad_()
    assert torch.autograd.gradcheck(f, (flat,), eps=1e-6, atol=1e-7, rtol=1e-6)


# -- training -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base", BASES)
def test_every_base_with_cml_trains_and_resumes_exactly(tmp_path, base):
    torch.set_default_dtype(torch.float32)
    kw = dict(steps=8, meta_batch=2, log_interval=2, val_interval=4, val_tasks=3, test_tasks=4, checkpoint_interval=2,
              progress=False, record_interval=3)
    cfg = preset("quick", "sinusoid", "cml", base=base, **kw)
    straight = Trainer(cfg, tmp_path / "straight", recorder=lambda step, mg: None)
    straight.train()

    def crash(step, mg):  # interrupted inside step 6, after the checkpoint of step 4 (cosine schedules included)
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "resumed", recorder=crash).train()
    again = Trainer(cfg, tmp_path / "resumed", resume=True, recorder=lambda step, mg: None)
    assert again.step == 4
    again.train()
    for name, p in straight.model.state_dict().items():
        assert torch.equal(p, again.model.state_dict()[name]), name
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(records.read_jsonl(tmp_path / "straight" / records.METRICS)) == \
        strip(records.read_jsonl(tmp_path / "resumed" / records.METRICS))
    test = records.read_json(tmp_path / "straight" / records.TEST)
    assert test["base"] == base and test["variant"] == cfg.variant
