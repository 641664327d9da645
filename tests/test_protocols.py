"""The paper's protocols: the evaluation protocols of cml.meta.PROTOCOLS (CML† as the authors' code reads it, the
paper's Eq. (9), phi without adaptation), each against an independent computation; the paper's sinusoid preset
and the MAML paper's beside it; the co-learner kinds, depths and same-capacity heads, with the refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from cml import records
from cml.cli import main
from cml.config import Config, ConfigError, preset
from cml.engines import BatchedBackend, FuncBackend, HigherBackend
from cml.meta import PROTOCOLS, EvalResult, evaluate_tasks
from cml.models import build_model, more_maml_width, parameter_counts
from cml.trainer import Trainer, summarize

from test_bases import conv_cfg, image_tasks, mlp_cfg, model_for, sinusoid_tasks

ENGINES = (HigherBackend, FuncBackend, BatchedBackend)


# -- the protocols, each computed independently ----------------------------------------------------------------

def _mlp_features(w: dict, x: torch.Tensor) -> torch.Tensor:
    """The sinusoid MLP's psi written out: relu(W2 relu(W1 x + b1) + b2)."""
    h = torch.relu(x @ w["features.layer1.weight"].T + w["features.layer1.bias"])
    return torch.relu(h @ w["features.layer2.weight"].T + w["features.layer2.bias"])


def _head(w: dict, prefix: str, feats: torch.Tensor) -> torch.Tensor:
    return feats @ w[f"{prefix}.fc.weight"].T + w[f"{prefix}.fc.bias"]


def _sgd(w: dict, names: list[str], loss_of, lr: float, steps: int) -> dict:
    """``steps`` plain gradient steps on ``names`` (the others fixed), by hand."""
    for _ in range(steps):
        grads = torch.autograd.grad(loss_of(w), [w[n] for n in names])
        w = {**w, **{n: w[n] - lr * g for n, g in zip(names, grads)}}
    return w


@pytest.mark.parametrize("method", ["cml", "cl", "random"])
def test_eq9_is_psi_alone_adapted_on_phis_loss_and_dagger_is_phi_after_mamls_adaptation(float64, method):
    cfg = mlp_cfg("maml", method, test_inner_steps=3)
    model = model_for(cfg)
    params = dict(model.named_parameters())
    tasks = sinusoid_tasks(3)
    got = evaluate_tasks(HigherBackend(model), cfg, params, tasks, cfg.test_inner_steps)
    psi = [n for n in params if n.startswith("features.")]
    theta = [n for n in params if n.startswith("head.")]
    for i, task in enumerate(tasks):
        (xs, ys), (xq, yq) = task.support, task.query
        w0 = {n: p.detach().clone().requires_grad_() for n, p in params.items()}

        def phi_loss(w, xs=xs, ys=ys):
            return F.mse_loss(_head(w, "co_head", _mlp_features(w, xs)), ys)

        def theta_loss(w, xs=xs, ys=ys):
            return F.mse_loss(_head(w, "head", _mlp_features(w, xs)), ys)

        eq9 = _sgd(w0, psi, phi_loss, cfg.inner_lr, 3)  # Eq. (9): psi alone, phi's support loss
        maml = _sgd(w0, psi + theta, theta_loss, cfg.inner_lr, 3)  # MAML's test: psi and theta on theta's loss
        with torch.no_grad():
            want = {
                "": F.mse_loss(_head(maml, "head", _mlp_features(maml, xq)), yq),
                "_dagger": F.mse_loss(_head(maml, "co_head", _mlp_features(maml, xq)), yq),
                "_dagger_eq9": F.mse_loss(_head(eq9, "co_head", _mlp_features(eq9, xq)), yq),
                "_dagger_noadapt": F.mse_loss(_head(w0, "co_head", _mlp_features(w0, xq)), yq),
            }
        for key, value in want.items():
            assert got.loss[key][i] == pytest.approx(value.item(), rel=1e-12), key
    # the four differ: each is its own reading of the model
    assert len({round(got.loss[k][0], 12) for k in want}) == 4


@pytest.mark.parametrize("engine", ENGINES)
def test_cl_dagger_without_adaptation_is_phis_forward_on_the_unadapted_model(float64, engine):
    cfg = conv_cfg("maml", "cl")
    model = model_for(cfg)
    tasks = image_tasks(cfg, 4)
    got = evaluate_tasks(engine(model), cfg, dict(model.named_parameters()), tasks, cfg.test_inner_steps)
    for i, task in enumerate(tasks):
        xq, yq = task.query
        with torch.no_grad():
            _, co = model(xq)  # the module's own forward: PyTorch's batch-norm kernel, no engine
        assert got.loss["_dagger_noadapt"][i] == pytest.approx(F.cross_entropy(co, yq).item(), rel=1e-10)
        assert got.acc["_dagger_noadapt"][i] == pytest.approx((co.argmax(1) == yq).double().mean().item())
    assert got.acc.keys() == {p.key for p in PROTOCOLS}


def test_eq9_adapts_nothing_where_the_base_adapts_no_psi(float64):
    cfg = conv_cfg("anil", "cml")  # ANIL: psi's inner rate is 0
    model = model_for(cfg)
    got = evaluate_tasks(FuncBackend(model), cfg, dict(model.named_parameters()), image_tasks(cfg, 3), 2)
    assert got.loss["_dagger_eq9"] == got.loss["_dagger_noadapt"]
    # ANIL adapts theta alone: phi reads the same psi after MAML's adaptation too, while theta moved
    assert got.loss["_dagger"] == pytest.approx(got.loss["_dagger_noadapt"], rel=1e-12)
    assert got.loss[""] != pytest.approx(got.pre_loss, rel=1e-6)


def test_the_aggregate_summarises_every_protocols_key():
    from cml.sweep import TEST_METRICS

    assert TEST_METRICS == tuple(f"{m}{p.key}" for m in ("acc", "mse") for p in PROTOCOLS) + ("mse_before",)


def test_the_sweep_summary_prints_every_protocols_accuracy_in_percent(tmp_path):
    from cml.sweep import summary

    entry = {"seeds": 3, "params": {"train": 10, "test": 8}, "base": "maml", "method": "cml"}
    accs = (("acc", 0.9), ("acc_dagger", 0.91), ("acc_dagger_eq9", 0.85), ("acc_dagger_noadapt", 0.2))
    entry.update({m: {"mean": v, "ci95": 0.01, "values": [v] * 3} for m, v in accs})
    line = next(x for x in summary({"cml": entry}, tmp_path).splitlines() if x.startswith("cml"))
    assert line.split()[2:] == ["90.00", "±", "1.00", "91.00", "±", "1.00", "85.00", "±", "1.00", "20.00", "±", "1.00"]


def test_methods_without_a_co_learner_have_theta_s_protocol_only(float64):
    cfg = mlp_cfg("maml", "none")
    model = model_for(cfg)
    got = evaluate_tasks(FuncBackend(model), cfg, dict(model.named_parameters()), sinusoid_tasks(2), 2)
    assert list(got.loss) == [""] and got.co_loss == []


def test_validation_measures_todays_keys_and_the_test_every_protocol(tmp_path):
    cfg = preset("quick", "sinusoid", "cml", steps=4, meta_batch=2, val_interval=2, val_tasks=3, test_tasks=5,
                 checkpoint_interval=0, progress=False)
    test = Trainer(cfg, tmp_path / "run").train()
    keys = {"mse", "mse_dagger", "mse_dagger_eq9", "mse_dagger_noadapt"}
    assert keys | {k + "_ci95" for k in keys} | {"mse_before"} <= set(test)
    for line in records.read_jsonl(tmp_path / "run" / records.VAL):
        assert {"mse", "mse_dagger"} <= set(line) and not {"mse_dagger_eq9", "mse_dagger_noadapt"} & set(line)


def test_a_diverged_phi_adaptation_is_null_and_said(recwarn):
    cfg = conv_cfg("maml", "cml")
    res = EvalResult(loss={"": [0.5, 0.7], "_dagger": [0.6, 0.4], "_dagger_eq9": [0.5, math.inf],
                           "_dagger_noadapt": [1.0, 1.1]},
                     acc={"": [0.5, 1.0], "_dagger": [0.5, 0.5], "_dagger_eq9": [1.0, 0.0], "_dagger_noadapt": [0, 0]},
                     pre_loss=[1.0, 1.0])
    out = summarize(cfg, res, "test")
    assert out["acc_dagger_eq9"] is None and out["acc_dagger_eq9_ci95"] is None
    assert out["acc"] == 0.75 and out["acc_dagger_noadapt"] == 0.0
    assert any("acc_dagger_eq9 in the test: adaptation diverged" in str(w.message) for w in recwarn)


def test_evaluate_prints_every_reading_and_reproduces_test_json(tmp_path, capsys):
    assert main(["train", "--method", "cml", "--task", "sinusoid", "--out", str(tmp_path), "--name", "run",
                 "--steps", "4", "--test-tasks", "10", "--val-tasks", "3", "--no-progress"]) == 0
    test = json.loads((tmp_path / "run" / records.TEST).read_text())
    assert test["selected"] == "last" and test["selected_step"] == 4
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for key, how in (("mse_dagger", "CML† (phi) "), ("mse_dagger_eq9", "CML† (phi) by Eq. (9) "),
                     ("mse_dagger_noadapt", "CML† (phi) without adaptation ")):
        assert f"{how}{test[key]:.4f}" in out, key
    assert out.rstrip().endswith("[last checkpoint, step 4]")


# -- the sinusoid presets --------------------------------------------------------------------------------------

def test_the_paper_sinusoid_preset_is_cmls_and_mamls_is_kept_as_maml_paper(capsys):
    cml = preset("paper", "sinusoid", "cml")
    assert (cml.co_learner, cml.meta_batch, cml.inner_steps, cml.inner_lr, cml.gamma, cml.test_inner_steps) == \
        ("mlp", 4, 1, 0.01, 0.2, 1)
    assert cml.select == "best-val" and preset("paper", "sinusoid", "cml", shots=20).shots == 20
    maml = preset("maml-paper", "sinusoid", "cml")
    assert (maml.co_learner, maml.meta_batch, maml.test_inner_steps, maml.gamma, maml.steps) == \
        ("linear", 25, 10, 1.0, 70000)
    assert preset("maml-paper", "sinusoid", "none", base="maml++").msl  # bases read it as a paper preset
    with pytest.raises(ConfigError, match=r"'maml-paper' does not apply to task 'fonts' \(its presets: quick, paper\)"):
        preset("maml-paper", "fonts", "cml")
    assert main(["train", "--task", "fonts", "--method", "cml", "--preset", "maml-paper", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: preset 'maml-paper'") and len(err.splitlines()) == 1


def test_the_paper_presets_select_the_best_validation():
    for task in ("sinusoid", "fonts", "graph"):
        assert preset("paper", task, "cml").select == "best-val"
        assert preset("quick", task, "cml").select == "last"


# -- co-learner kinds, depths and same-capacity heads ----------------------------------------------------------

def test_the_mlp_co_learner_is_a_hidden_layer_and_an_output():
    cfg = preset("paper", "sinusoid", "cml")
    model = build_model(cfg)
    shapes = {n: tuple(p.shape) for n, p in model.co_head.named_parameters()}
    assert shapes == {"hidden.weight": (40, 40), "hidden.bias": (40,), "fc.weight": (1, 40), "fc.bias": (1,)}
    counts = parameter_counts(cfg)
    assert counts["phi"] == 40 * 40 + 40 + 41 and counts["test"] == counts["psi"] + counts["theta"] == 1761
    more = parameter_counts(preset("paper", "sinusoid", "more"))
    assert abs(more["test"] - counts["train"]) <= 0.05 * counts["train"]  # More-MAML sized against it


@pytest.mark.parametrize("values, match", [
    (dict(task="fonts", co_learner="mlp"), r"co_learner 'mlp' does not apply to task 'fonts' \(its models take "
                                           r"linear or conv"),
    (dict(task="graph", co_learner="conv"), r"co_learner 'conv' does not apply to task 'graph' \(its models take "
                                            r"linear or mlp"),
    (dict(task="fonts", co_learner="conv", co_learner_depth=5), "co_learner_depth must be 0 to 4"),
    (dict(task="fonts", co_learner="linear", co_learner_depth=1), "co_learner 'linear' has none"),
    (dict(task="sinusoid", co_learner="mlp", co_learner_depth=0), "co_learner 'mlp' has none"),
    (dict(task="fonts", co_learner="linear", meta_head_like_co_learner=True), "set --co-learner conv"),
    (dict(task="sinusoid", meta_head_like_co_learner=True), "set --co-learner conv"),
    (dict(task="fonts", co_learner="conv", method="more", meta_head_like_co_learner=True),
     "method 'more' sizes its own extra capacity"),
])
def test_heads_where_they_mean_nothing_are_refused_in_one_line(values, match):
    with pytest.raises(ConfigError, match=match) as e:
        Config(**{"method": "cml", **values})
    assert "\n" not in str(e.value)


def test_co_learner_depth_counts_conv_blocks_and_two_is_the_authors_co_learner():
    counts = {}
    for depth in range(5):
        cfg = preset("paper", "miniimagenet", "cml", data="x", co_learner_depth=depth)
        model = build_model(cfg, 3)
        blocks = {n.split(".")[0] for n, _ in model.co_head.named_parameters()} - {"fc"}
        assert len(blocks) == depth
        counts[depth] = parameter_counts(cfg, 3)
    # The authors' co-learner (the default depth) keeps its parameter names and the paper's 203K / 121K.
    default = build_model(preset("paper", "miniimagenet", "cml", data="x"), 3)
    assert [n for n, _ in default.co_head.named_parameters()][:2] == ["block_a.conv.weight", "block_a.conv.bias"]
    assert (counts[2]["train"], counts[2]["test"]) == (203210, 121093)
    # depth 0: a linear layer on block 4's 10x10 pre-pool map (64 filters at 84 px), 5 ways
    assert counts[0]["phi"] == 64 * 10 * 10 * 5 + 5
    # each further block adds one conv block (3x3x64x64 + 64) and its BatchNorm (128); 1 -> 2 pools nothing more
    assert counts[3]["phi"] - counts[2]["phi"] == counts[4]["phi"] - counts[3]["phi"] == 3 * 3 * 64 * 64 + 64 + 128


def test_same_capacity_heads_give_theta_the_co_learners_structure(float64):
    for depth in (0, 2):
        cfg = conv_cfg("maml", "cml", co_learner_depth=depth, meta_head_like_co_learner=True)
        model = model_for(cfg)
        theta = {n: p.shape for n, p in model.head.named_parameters()}
        assert theta == {n: p.shape for n, p in model.co_head.named_parameters()}
        counts = parameter_counts(cfg)
        assert counts["theta"] == counts["phi"] and counts["test"] == counts["psi"] + counts["theta"]
        # and the two heads still differ (own initialisation), so both protocols read two models
        tasks = image_tasks(cfg, 2)
        res = evaluate_tasks(FuncBackend(model), cfg, dict(model.named_parameters()), tasks, 2)
        assert res.meta_loss != res.co_loss
    baseline = build_model(conv_cfg("maml", "none", meta_head_like_co_learner=True), 1)
    assert {n.split(".")[0] for n, _ in baseline.head.named_parameters()} == {"block_a", "block_b", "fc"}


def test_more_maml_is_matched_to_cml_at_each_depth():
    for depth in (0, 1, 3):
        cfg = preset("paper", "omniglot", "more", data="x", co_learner_depth=depth)
        target = parameter_counts(cfg.replace(method="cml"), 1)["train"]
        assert abs(parameter_counts(cfg, 1)["test"] - target) <= 0.05 * target
        assert more_maml_width(cfg, 1) > cfg.filters
        blocks = cfg.replace(more_capacity="blocks")
        assert {n.split(".")[0] for n, _ in build_model(blocks, 1).head.named_parameters()} == \
            set(["block_a", "block_b", "block_c"][:depth]) | {"fc"}


def test_cml_params_takes_the_depth_and_the_same_heads(capsys):
    def rows(*flags):
        assert main(["params", "--task", "miniimagenet", "--preset", "paper", *flags]) == 0
        return {line.split()[0]: [int(v) for v in line.split()[1:3]] for line in
                capsys.readouterr().out.splitlines()[1:]}

    plain, shallow, same = rows(), rows("--co-learner-depth", "0"), rows("--meta-head-like-co-learner")
    assert plain["cml"] == [203210, 121093] and shallow["cml"] == [153098, 121093]
    assert same["cml"] == [277322, 195205] and same["maml"][1] == 195205
    assert same["more-maml"] == plain["more-maml"]  # More sizes its own head against CML's linear theta
