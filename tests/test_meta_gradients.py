"""Meta-gradients are proven three ways: a case worked by hand, two independent engines agreeing, and
float64 finite-difference checks (gradcheck / gradgradcheck). Then the method's own properties."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cml.config import Config
from cml.data.base import Task
from cml.engines import FuncBackend, HigherBackend
from cml.meta import adapt, inner_spec, meta_gradient, task_losses
from cml.models import MetaModel, build_model, init_parameters

METHODS = ("maml", "cml", "noisy-maml", "more-maml", "cl")


# Every test here in float64 (the fixture in conftest.py): meta-gradients are compared to 1e-10.
pytestmark = pytest.mark.usefixtures("float64")


def sinusoid_cfg(method: str, **kw) -> Config:
    extra = {"noise_std": 0.1} if method == "noisy-maml" else {}
    return Config(method=method, task="sinusoid", hidden=40, inner_steps=2, inner_lr=0.05, **{**extra, **kw})


def image_cfg(method: str, **kw) -> Config:
    extra = {"noise_std": 0.1} if method == "noisy-maml" else {}
    base = dict(method=method, task="omniglot", data="unused", filters=4, image_size=16, ways=3, shots=2, queries=2,
                co_learner="conv", more_capacity="blocks", inner_steps=2, inner_lr=0.1)
    return Config(**{**base, **extra, **kw})


def model_for(cfg: Config, seed: int = 0) -> MetaModel:
    model = build_model(cfg, 1)
    init_parameters(model, torch.Generator().manual_seed(seed))
    return model.double()


def maml_twin(cml_model: MetaModel, maml_cfg: Config) -> MetaModel:
    """A MAML model holding the CML model's psi and theta (CML's parameters without phi)."""
    twin = model_for(maml_cfg)
    twin.load_state_dict({k: v for k, v in cml_model.state_dict().items() if not k.startswith("co_head")})
    return twin


def sinusoid_tasks(n: int, seed: int = 1, shots: int = 5) -> list[Task]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        amp, phase = 0.1 + 4.9 * torch.rand(1, generator=g), 3.14 * torch.rand(1, generator=g)
        xs, xq = 10 * torch.rand(shots, 1, generator=g) - 5, 10 * torch.rand(7, 1, generator=g) - 5
        out.append(Task((xs, amp * torch.sin(xs - phase)), (xq, amp * torch.sin(xq - phase))))
    return out


def image_tasks(cfg: Config, n: int, seed: int = 2) -> list[Task]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(cfg.ways)

    def images(k):
        return torch.rand(cfg.ways * k, 1, cfg.image_size, cfg.image_size, generator=g)

    return [Task((images(cfg.shots), labels.repeat_interleave(cfg.shots)),
                 (images(cfg.queries), labels.repeat_interleave(cfg.queries))) for _ in range(n)]


def run_adapt(backend, cfg, params, support, steps, order, test_time=False):
    """The adapted parameters of ``cfg``'s inner loop (the last entry of the trajectory)."""
    return adapt(backend, inner_spec(cfg, params, steps, order, test_time), params, support)[-1]


def grads(backend_cls, cfg, model, tasks, **kw):
    backend = backend_cls(model)
    return meta_gradient(backend, cfg, dict(model.named_parameters()), tasks, **kw)


# -- 1. a case worked by hand ----------------------------------------------------------------------------

class Scalar(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(value))


class ScalarFeatures(Scalar):
    def forward(self, x, step=0, norm=None):
        return {"flat": self.weight * x}


class ScalarHead(Scalar):
    def forward(self, feats, step=0, norm=None):
        return self.weight * feats["flat"]


@pytest.mark.parametrize("backend_cls", [HigherBackend, FuncBackend])
def test_second_order_meta_gradient_worked_by_hand(backend_cls):
    r"""A scalar model: features h = w x (psi = w), meta-learner a h (theta = a), co-learner c h (phi = c).

    Squared loss on one support point (x_s, y_s) and one query point (x_q, y_q); one inner step of size alpha:

        r_s = a w x_s - y_s,   w' = w - 2 alpha r_s a x_s,   a' = a - 2 alpha r_s w x_s,   c' = c.

    Outer loss L = (a' w' x_q - y_q)^2 + gamma (c w' x_q - y_q)^2 with residuals r_m, r_c:

        dL/dw' = 2 r_m a' x_q + 2 gamma r_c c x_q,   dL/da' = 2 r_m w' x_q,   dL/dc = 2 gamma r_c w' x_q.

    The inner step's Jacobian (the second-order terms):

        dw'/dw = 1 - 2 alpha a^2 x_s^2,          dw'/da = -2 alpha x_s (r_s + a w x_s),
        da'/dw = -2 alpha x_s (r_s + a w x_s),   da'/da = 1 - 2 alpha w^2 x_s^2.

    So g_w = dL/dw' dw'/dw + dL/da' da'/dw, g_a = dL/dw' dw'/da + dL/da' da'/da, g_c = dL/dc.
    """
    w, a, c, alpha, gamma = 0.7, -1.3, 0.4, 0.05, 0.8
    xs, ys, xq, yq = 1.5, 0.3, -0.8, 1.1
    model = MetaModel(ScalarFeatures(w), ScalarHead(a), ScalarHead(c))
    cfg = Config(method="cml", task="sinusoid", inner_lr=alpha, inner_steps=1, gamma=gamma)
    task = Task((torch.tensor([[xs]]), torch.tensor([[ys]])), (torch.tensor([[xq]]), torch.tensor([[yq]])))
    got = grads(backend_cls, cfg, model, [task]).total

    r_s = a * w * xs - ys
    w1, a1 = w - 2 * alpha * r_s * a * xs, a - 2 * alpha * r_s * w * xs
    r_m, r_c = a1 * w1 * xq - yq, c * w1 * xq - yq
    dL_dw1 = 2 * r_m * a1 * xq + 2 * gamma * r_c * c * xq
    dL_da1 = 2 * r_m * w1 * xq
    dw1_dw, dw1_da = 1 - 2 * alpha * a**2 * xs**2, -2 * alpha * xs * (r_s + a * w * xs)
    da1_dw, da1_da = -2 * alpha * xs * (r_s + a * w * xs), 1 - 2 * alpha * w**2 * xs**2
    expected = {
        "features.weight": dL_dw1 * dw1_dw + dL_da1 * da1_dw,
        "head.weight": dL_dw1 * dw1_da + dL_da1 * da1_da,
        "co_head.weight": 2 * gamma * r_c * w1 * xq,
    }
    for name, value in expected.items():
        assert got[name].item() == pytest.approx(value, rel=1e-12, abs=1e-14), name


# -- 2. two independent engines agree --------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("kind", ["sinusoid", "image"])
def test_higher_and_torch_func_agree(method, first_order, kind):
    cfg = (sinusoid_cfg(method, first_order=first_order) if kind == "sinusoid"
           else image_cfg(method, first_order=first_order))
    model = model_for(cfg)
    tasks = sinusoid_tasks(3) if kind == "sinusoid" else image_tasks(cfg, 2)
    gh = grads(HigherBackend, cfg, model, tasks).total
    gf = grads(FuncBackend, cfg, model, tasks).total
    assert gh.keys() == gf.keys()
    for name in gf:
        scale = gf[name].abs().max().clamp_min(1e-300)
        assert ((gh[name] - gf[name]).abs().max() / scale).item() <= 1e-10, name
    assert any(g.abs().sum() > 0 for g in gf.values())


@pytest.mark.parametrize("method", ["cml", "cl"])
@pytest.mark.parametrize("heads", [dict(co_learner_depth=0), dict(co_learner_depth=1), dict(co_learner_depth=3),
                                   dict(co_learner_depth=0, meta_head_like_co_learner=True),
                                   dict(meta_head_like_co_learner=True), "mlp"])
def test_higher_and_torch_func_agree_on_every_co_learner(method, heads):
    """The conv co-learner at the depths of the paper's Table 8, theta of its structure (Table 7), and the MLP
    co-learner of its sinusoid experiments, second order."""
    if heads == "mlp":
        cfg = sinusoid_cfg(method, co_learner="mlp")
        tasks = sinusoid_tasks(2)
    else:
        cfg = image_cfg(method, image_size=32, **heads)  # a 4x4 pre-pool map: a pooled block fits
        tasks = image_tasks(cfg, 2)
    model = model_for(cfg)
    gh = grads(HigherBackend, cfg, model, tasks).total
    gf = grads(FuncBackend, cfg, model, tasks).total
    whole = sum(float(g.pow(2).sum()) for g in gf.values()) ** 0.5
    assert max(float((gh[n] - gf[n]).norm()) for n in gf) / whole <= 1e-10
    assert all(gf[n].abs().sum() > 0 for n in gf if n.startswith("co_head.") and "norm.bias" not in n)


# -- 3. finite differences in float64 -------------------------------------------------------------------

def _outer_loss_fn(cfg, model, tasks, backend_cls):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    backend = backend_cls(model)

    def f(flat):
        params = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        order = "first" if cfg.first_order else "second"
        losses = [task_losses(backend, cfg, params, t, order).total(cfg.gamma) for t in tasks]
        return torch.stack(losses).mean()

    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).requires_grad_()
    return f, flat


@pytest.mark.parametrize("backend_cls", [HigherBackend, FuncBackend])
@pytest.mark.parametrize("method", ["cml", "cl"])
def test_gradcheck_meta_gradient_sinusoid(backend_cls, method):
    cfg = Config(method=method, task="sinusoid", hidden=3, inner_steps=2, inner_lr=0.1)
    model = model_for(cfg)
    f, flat = _outer_loss_fn(cfg, model, sinusoid_tasks(2, shots=3), backend_cls)
    assert torch.autograd.gradcheck(f, (flat,), eps=1e-6, atol=1e-7, rtol=1e-6)
    assert torch.autograd.gradgradcheck(f, (flat,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_gradcheck_meta_gradient_conv_with_batchnorm():
    cfg = Config(method="cml", task="omniglot", data="unused", filters=2, image_size=16, ways=2, shots=1, queries=1,
                 co_learner="conv", inner_steps=1, inner_lr=0.1)
    model = model_for(cfg)
    f, flat = _outer_loss_fn(cfg, model, image_tasks(cfg, 1), HigherBackend)
    assert torch.autograd.gradcheck(f, (flat,), eps=1e-6, atol=1e-6, rtol=1e-5)


# -- 4. the method's properties --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sinusoid", "image"])
def test_gamma_zero_cml_is_exactly_maml(kind):
    make = sinusoid_cfg if kind == "sinusoid" else image_cfg
    cml, maml = make("cml", gamma=0.0), make("maml")
    cml_model = model_for(cml)
    maml_model = maml_twin(cml_model, maml)
    tasks = sinusoid_tasks(3) if kind == "sinusoid" else image_tasks(cml, 2)
    g_cml = grads(HigherBackend, cml, cml_model, tasks).total
    g_maml = grads(HigherBackend, maml, maml_model, tasks).total
    for name, g in g_maml.items():
        assert torch.equal(g_cml[name], g), name
    phi = [n for n in g_cml if n.startswith("co_head")]
    assert phi and all(torch.count_nonzero(g_cml[n]) == 0 for n in phi)


@pytest.mark.parametrize("backend_cls", [HigherBackend, FuncBackend])
def test_inner_loop_leaves_phi_bit_identical_and_moves_psi_theta(backend_cls):
    cfg = image_cfg("cml")
    model = model_for(cfg)
    params = dict(model.named_parameters())
    support = image_tasks(cfg, 1)[0].support
    adapted = run_adapt(backend_cls(model), cfg, params, support, 2, "second")
    for name, p in params.items():
        if name.startswith("co_head"):
            assert adapted[name] is p or torch.equal(adapted[name], p), name
        elif name.endswith("weight") and "conv" in name or name.startswith("head"):
            assert not torch.equal(adapted[name], p), name
    # ...and psi', theta' are MAML's: the co-learner plays no part in the inner loop.
    maml_model = maml_twin(model, image_cfg("maml"))
    maml_params = dict(maml_model.named_parameters())
    maml_adapted = run_adapt(backend_cls(maml_model), image_cfg("maml"), maml_params, support, 2, "second")
    for name, p in maml_adapted.items():
        assert torch.equal(adapted[name], p), name


def test_cl_inner_loop_adapts_phi():
    cfg = image_cfg("cl")
    model = model_for(cfg)
    params = dict(model.named_parameters())
    adapted = run_adapt(FuncBackend(model), cfg, params, image_tasks(cfg, 1)[0].support, 1, "second")
    assert not torch.equal(adapted["co_head.fc.weight"], params["co_head.fc.weight"])


@pytest.mark.parametrize("kind", ["sinusoid", "image"])
def test_co_learner_loss_changes_theta_meta_gradient_through_inner_loop(kind):
    # theta does not appear in L_c directly; only the inner loop (psi' depends on theta) connects them.
    make = sinusoid_cfg if kind == "sinusoid" else image_cfg
    model = model_for(make("cml"))
    tasks = sinusoid_tasks(2) if kind == "sinusoid" else image_tasks(make("cml"), 2)
    with_co = grads(HigherBackend, make("cml", gamma=1.0), model, tasks).total
    without = grads(HigherBackend, make("cml", gamma=0.0), model, tasks).total
    theta = [n for n in with_co if n.startswith("head")]
    diff = max((with_co[n] - without[n]).abs().max().item() for n in theta)
    assert diff > 1e-6
    # ...and with first order the inner loop is cut, so L_c cannot reach theta at all.
    fo_with = grads(HigherBackend, make("cml", gamma=1.0, first_order=True), model, tasks).total
    fo_without = grads(HigherBackend, make("cml", gamma=0.0, first_order=True), model, tasks).total
    for n in theta:
        assert torch.allclose(fo_with[n], fo_without[n], rtol=0, atol=1e-14), n


@pytest.mark.parametrize("method", ["maml", "cml"])
def test_first_and_second_order_differ(method):
    cfg = sinusoid_cfg(method)
    model = model_for(cfg)
    tasks = sinusoid_tasks(3)
    so = grads(HigherBackend, cfg, model, tasks).total
    fo = grads(HigherBackend, cfg.replace(first_order=True), model, tasks).total
    rel = max(((so[n] - fo[n]).norm() / so[n].norm()).item() for n in so if so[n].norm() > 0)
    assert rel > 1e-3


@pytest.mark.parametrize("backend_cls", [HigherBackend, FuncBackend])
@pytest.mark.parametrize("method", ["maml", "cml", "cl"])
def test_first_order_is_query_gradient_at_adapted_parameters(backend_cls, method):
    cfg = sinusoid_cfg(method, first_order=True, gamma=0.7)
    model = model_for(cfg)
    task = sinusoid_tasks(1)[0]
    fo = grads(backend_cls, cfg, model, [task]).total
    backend = FuncBackend(model)
    adapted = run_adapt(backend, cfg, dict(model.named_parameters()), task.support, cfg.inner_steps, "none")
    meta, co = backend.forward(adapted, task.query[0])
    loss = torch.nn.functional.mse_loss(meta, task.query[1])
    if co is not None:
        loss = loss + cfg.gamma * torch.nn.functional.mse_loss(co, task.query[1])
    expected = torch.autograd.grad(loss, list(adapted.values()), allow_unused=True)
    for g, e in zip(fo.values(), expected):
        torch.testing.assert_close(g, torch.zeros_like(g) if e is None else e, rtol=1e-12, atol=1e-14)


def test_split_meta_gradient_leaves_total_unchanged_and_parts_add_up():
    cfg = image_cfg("cml")
    model = model_for(cfg)
    tasks = image_tasks(cfg, 2)
    plain = grads(HigherBackend, cfg, model, tasks)
    split = grads(HigherBackend, cfg, model, tasks, split=True)
    for n in plain.total:
        assert torch.equal(plain.total[n], split.total[n]), n
    meta_only = grads(HigherBackend, cfg.replace(gamma=0.0), model, tasks).total
    for n in meta_only:
        torch.testing.assert_close(split.meta_part[n], meta_only[n], rtol=1e-10, atol=1e-13)
    # total - meta_part is the co-learner's part: twice gamma doubles it
    double = grads(HigherBackend, cfg.replace(gamma=2 * cfg.gamma), model, tasks).total
    for n in meta_only:
        co = split.total[n] - split.meta_part[n]
        torch.testing.assert_close(double[n] - meta_only[n], 2 * co, rtol=1e-8, atol=1e-12)
    assert any(co.abs().max() > 1e-8 for co in (split.total[n] - split.meta_part[n] for n in meta_only))


@pytest.mark.parametrize("method", ["cml", "cl"])
def test_meta_gradient_is_the_mean_over_tasks(method):
    cfg = sinusoid_cfg(method)
    model = model_for(cfg)
    tasks = sinusoid_tasks(3)
    together = grads(FuncBackend, cfg, model, tasks).total
    alone = [grads(FuncBackend, cfg, model, [t]).total for t in tasks]
    for n in together:
        torch.testing.assert_close(together[n], sum(a[n] for a in alone) / 3, rtol=1e-10, atol=1e-14)


def test_cl_adapts_like_maml_at_test_time():
    # phi is dropped at test time: scaling it must not change theta's adapted predictions.
    cfg = sinusoid_cfg("cl")
    model = model_for(cfg)
    task = sinusoid_tasks(1)[0]
    backend = FuncBackend(model)

    def prediction():
        adapted = run_adapt(backend, cfg, dict(model.named_parameters()), task.support, 3, "none", test_time=True)
        return backend.forward(adapted, task.query[0])[0]

    before = prediction()
    with torch.no_grad():
        model.co_head.fc.weight.mul_(3.0)
    torch.testing.assert_close(prediction(), before, rtol=0, atol=0)
