"""The paper's published numbers, as data: every value of Tables 1-5 and 7-9 of Shin, Han & Kim, *Cooperative
Meta-Learning with Gradient Augmentation* (UAI 2024, PMLR 244:3198-3210), with the setting it was measured in.

Transcribed from the published tables (the project's copy: ``shared/paper/cml-uai2024.md``). A value is test
accuracy in percent; ``ci`` is the "±" as printed (over 3 runs for Tables 1, 4, 7, 8; Table 3 over 5 runs;
Tables 2, 5, 9 print none). Each value names the cell that reproduces it in this suite's terms — task (data set),
N-way K-shot, backbone, base learner, method, which prediction (``metric``: the key of a run's ``test.json``) and
any other config field the table varies (``setting``) — so that a report can put the paper's value beside a run's
exactly when the run's config matches (:func:`matching`; a run's data set is its task family's
``paper_dataset``), and ``cml paper`` can print the command for each.

Torch-free, like the other tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .bases import get_base

#: The suite's keys of ``test.json`` that paper values refer to: theta's accuracy after adaptation, and phi's
#: (CML†/CL†) as the authors' code evaluates it (adapt psi and theta with the meta-learner's loss, read phi on the
#: adapted features), as the paper's Eq. (9) defines it (adapt psi alone with phi's support loss, predict with
#: phi), and without any adaptation (Table 4's "CL† without adaptation").
METRICS = ("acc", "acc_dagger", "acc_dagger_eq9", "acc_dagger_noadapt")
#: The backbone a config without a ``backbone`` field has (every run written before ResNet-12 existed).
DEFAULT_BACKBONE = "conv4"


@dataclass(frozen=True)
class PaperValue:
    """One published number and the cell it belongs to.

    Attributes:
        table: the paper's table (``"1"``, ..., ``"9"``).
        row: the row as printed ("MAML++ + CML†", "CL⋆ (meta-learner)").
        dataset: the data set: this suite's task name for images (``miniimagenet``, ``omniglot``, ``cifar-fs``,
            ``fc100``, ``flower``), the graph's name for node classification (``citeseer``,
            ``amazon-computer``, ``corafull``).
        task: the suite's task family member that runs it (``graph`` for the three graphs).
        ways, shots: N-way K-shot.
        backbone: ``conv4``, ``resnet12`` or ``gcn``.
        base, method: the suite's base learner and method (``gmeta``, ``amm-gnn`` for Table 3).
        metric: which prediction (:data:`METRICS`).
        value: the published accuracy (%).
        ci: the printed "±" (None where the table prints none).
        setting: other config fields the value was measured at (Table 5's ``gamma``, Tables 7-8's co-learner).
        note: what the table says about the value (its source, a caveat).
    """

    table: str
    row: str
    dataset: str
    task: str
    ways: int
    shots: int
    backbone: str
    base: str
    method: str
    metric: str
    value: float
    ci: float | None = None
    setting: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


def _t1() -> list[PaperValue]:
    rows = {  # base: ((alone 1-shot, 5-shot), (+ CML), (+ CML†)), each value with its ±
        "maml": (((47.44, 0.23), (61.75, 0.42)), ((49.32, 0.37), (65.84, 0.46)), ((50.35, 0.15), (66.43, 0.43))),
        "maml++": (((52.15, 0.26), (68.32, 0.44)), ((52.46, 0.05), (70.08, 0.61)), ((52.86, 0.17), (70.69, 0.49))),
        "boil": (((49.61, 0.61), (66.45, 0.37)), ((50.04, 0.30), (66.91, 0.13)), ((50.83, 0.25), (67.50, 0.48))),
        "sharp-maml": (((49.06, 0.52), (65.63, 0.54)), ((49.56, 0.45), (66.90, 0.20)),
                       ((49.70, 0.62), (67.06, 0.16))),
    }
    out = []
    for base, cells in rows.items():
        for (method, metric, suffix), by_shot in zip((("none", "acc", ""), ("cml", "acc", " + CML"),
                                                      ("cml", "acc_dagger", " + CML†")), cells):
            for shots, (value, ci) in zip((1, 5), by_shot):
                note = ("re-run with its official code" if base == "sharp-maml" and method == "none" else
                        "taken from the BOIL and MAML++ papers" if method == "none" else "")
                out.append(PaperValue("1", get_base(base).label + suffix, "miniimagenet", "miniimagenet", 5, shots,
                                      "conv4", base, method, metric, value, ci, note=note))
    return out


def _t2() -> list[PaperValue]:
    rows = {"omniglot": ((91.78, 93.99), (96.59, 97.15)), "cifar-fs": ((56.55, 57.67), (70.10, 73.87)),
            "fc100": ((36.07, 36.90), (48.03, 51.06)), "flower": ((63.17, 64.31), (74.48, 77.03))}
    out = []
    for dataset, by_shot in rows.items():
        for shots, (maml, cml) in zip((1, 5), by_shot):
            out.append(PaperValue("2", "MAML", dataset, dataset, 5, shots, "conv4", "maml", "none", "acc", maml))
            out.append(PaperValue("2", "CML", dataset, dataset, 5, shots, "conv4", "maml", "cml", "acc", cml))
    return out


def _t3() -> list[PaperValue]:
    columns = (("citeseer", 2, 1), ("citeseer", 2, 5), ("amazon-computer", 2, 1), ("amazon-computer", 2, 5),
               ("corafull", 5, 1), ("corafull", 5, 5))
    rows = {("gmeta", "none", "G-Meta"): (55.15, 64.53, 70.57, 85.96, 60.44, 75.84),
            ("gmeta", "cml", "G-Meta + CML"): (61.17, 76.07, 72.26, 87.10, 60.49, 76.02),
            ("amm-gnn", "none", "AMM-GNN"): (54.53, 62.93, 74.29, 80.10, 58.77, 75.61),
            ("amm-gnn", "cml", "AMM-GNN + CML"): (61.13, 66.88, 78.91, 86.68, 63.27, 76.19)}
    return [PaperValue("3", label, dataset, "graph", ways, shots, "gcn", base, method, "acc", value,
                       note="mean of 5 runs; the G-Meta and AMM-GNN of Tan et al. 2022")
            for (base, method, label), values in rows.items() for (dataset, ways, shots), value in zip(columns, values)]


def _t4() -> list[PaperValue]:
    rows = (("MAML", "none", "acc", (47.44, 0.23), (61.75, 0.42), ""),
            ("More-MAML", "more", "acc", (48.48, 0.60), (62.53, 0.12), ""),
            ("CL⋆ (meta-learner)", "cl", "acc", (47.45, 0.13), (61.60, 1.39), ""),
            ("CML", "cml", "acc", (49.32, 0.37), (65.84, 0.46), ""),
            ("CL† (co-learner)", "cl", "acc_dagger", (48.45, 0.40), (62.50, 0.62),
             "the paper does not say how CL† adapts; compared with the suite's acc_dagger of CL runs"),
            ("CL† without adaptation", "cl", "acc_dagger_noadapt", (20.66, 0.38), (20.54, 2.61), ""),
            ("CML†", "cml", "acc_dagger", (50.35, 0.15), (66.43, 0.43), ""))
    out = [PaperValue("4", row, "miniimagenet", "miniimagenet", 5, shots, "conv4", "maml", method, metric, v, ci,
                      note=note)
           for row, method, metric, one, five, note in rows for shots, (v, ci) in ((1, one), (5, five))]
    # The paper's "CL" row (203K parameters at test: both heads kept) has no counterpart here: which head's (or
    # which combination's) prediction it reports is not stated. Its values are kept, without a cell to match.
    for shots, (v, ci) in ((1, (47.57, 0.15)), (5, (62.36, 1.02))):
        out.append(PaperValue("4", "CL", "miniimagenet", "miniimagenet", 5, shots, "conv4", "maml", "cl", "unstated",
                              v, ci, note="both heads at test (203K); the prediction it reports is not stated"))
    return out


def _t5() -> list[PaperValue]:
    rows = {0.2: (49.07, 64.39), 0.5: (49.61, 65.53), 0.8: (49.07, 64.73), 1.0: (49.32, 65.84)}
    return [PaperValue("5", f"γ = {g}", "miniimagenet", "miniimagenet", 5, shots, "conv4", "maml", "cml", "acc", v,
                       setting={"gamma": g})
            for g, values in rows.items() for shots, v in zip((1, 5), values)]


def _t7() -> list[PaperValue]:
    # Meta-learner and co-learner of the same structure: Conv(k) = k conv layers before the linear layer, in both.
    rows = ((0, "acc", "meta-learner", (49.52, 0.41), (65.82, 0.55)),
            (0, "acc_dagger", "co-learner", (49.16, 0.47), (65.13, 0.27)),
            (2, "acc", "meta-learner", (48.06, 0.97), (66.20, 0.44)),
            (2, "acc_dagger", "co-learner", None, (65.44, 0.27)))
    out = []
    for depth, metric, who, one, five in rows:
        for shots, cell in ((1, one), (5, five)):
            if cell is None:  # "failed to converge"
                continue
            out.append(PaperValue("7", f"Conv({depth}) {who}", "miniimagenet", "miniimagenet", 5, shots, "conv4",
                                  "maml", "cml", metric, cell[0], cell[1],
                                  setting={"co_learner_depth": depth, "meta_head_like_co_learner": True}))
    return out


def _t8() -> list[PaperValue]:
    cml = ((49.52, 0.41), (49.39, 0.51), (49.32, 0.37), (48.85, 0.28), (49.36, 0.23))
    dagger = ((49.16, 0.47), (50.21, 0.60), (50.35, 0.15), (49.82, 0.29), (50.17, 0.28))
    return [PaperValue("8", f"{label} Conv({depth})", "miniimagenet", "miniimagenet", 5, 1, "conv4", "maml", "cml",
                       metric, v, ci, setting={"co_learner_depth": depth})
            for label, metric, values in (("CML", "acc", cml), ("CML†", "acc_dagger", dagger))
            for depth, (v, ci) in enumerate(values)]


def _t9() -> list[PaperValue]:
    rows = {"cifar-fs": ((61.86, 62.11), (73.32, 78.31)), "flower": ((63.43, 66.07), (75.42, 81.15)),
            "fc100": ((36.61, 37.56), (47.48, 51.51))}
    out = []
    for dataset, by_shot in rows.items():
        for shots, (maml, cml) in zip((1, 5), by_shot):
            for method, row, value in (("none", "MAML", maml), ("cml", "CML", cml)):
                out.append(PaperValue("9", row, dataset, dataset, 5, shots, "resnet12", "maml", method, "acc", value))
    return out


#: Every published value, table by table.
PAPER: tuple[PaperValue, ...] = tuple(_t1() + _t2() + _t3() + _t4() + _t5() + _t7() + _t8() + _t9())
#: The tables, in the paper's order, with their captions.
TABLES: dict[str, str] = {
    "1": "4-conv, MiniImagenet 5-way: CML on each base learner",
    "2": "5-way, MAML and CML (4-conv) on four data sets",
    "3": "few-shot node classification (5 runs)",
    "4": "parameters and accuracy, MiniImagenet 5-way, MAML base",
    "5": "the co-learner's weight γ, MiniImagenet 5-way, MAML base",
    "7": "meta-learner and co-learner of the same structure, MiniImagenet 5-way",
    "8": "the co-learner's conv layers, MiniImagenet 5-way 1-shot, MAML base",
    "9": "ResNet-12, 5-way, MAML and CML",
}


def cell_of(config: Mapping[str, Any], dataset: str | None) -> dict[str, Any]:
    """What a paper value is matched on, read from a run's ``config.json`` (a dict) and its data set's name."""
    return {"dataset": dataset, "ways": config.get("ways"), "shots": config.get("shots"),
            "backbone": config.get("backbone", DEFAULT_BACKBONE), "base": config.get("base", "maml"),
            "method": config.get("method")}


def matching(config: Mapping[str, Any], dataset: str | None, metric: str | None = None) -> list[PaperValue]:
    """The paper values measured in the setting of a run with ``config`` on ``dataset`` (every field a value
    names, its ``setting`` included, equal), of ``metric`` when given. A graph run's data set is its graph's
    name; an image run's, its task."""
    cell = cell_of(config, dataset)
    out = []
    for v in PAPER:
        if (v.dataset, v.ways, v.shots, v.base, v.method) != (cell["dataset"], cell["ways"], cell["shots"],
                                                               cell["base"], cell["method"]):
            continue
        # Every graph value is a GCN's: a graph run has no image backbone to compare.
        if v.backbone != "gcn" and v.backbone != cell["backbone"]:
            continue
        if any(config.get(k) != x for k, x in v.setting.items()):
            continue
        if metric is None or v.metric == metric:
            out.append(v)
    return out


#: What each metric of a test.json is, for the lines of ``cml paper``.
METRIC_TEXT = {
    "acc": "acc: θ after adaptation",
    "acc_dagger": "acc_dagger: φ as the official code evaluates it",
    "acc_dagger_eq9": "acc_dagger_eq9: φ as Eq. (9) defines it",
    "acc_dagger_noadapt": "acc_dagger_noadapt: φ without adaptation",
}
#: The config field a graph value's data set is chosen by.
GRAPH_FIELD = "graph_split"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def reproduce(value: PaperValue, prog: str = "python -m cml") -> tuple[str | None, str]:
    """The command that trains the cell of a published value in this suite, or why it cannot yet.

    Built from the value's fields: its task (``--data`` for a data set that must be downloaded), ``--ways``,
    ``--shots``, ``--base``, ``--method``, ``--preset paper``, its ``setting`` as flags, ``--backbone`` when not
    Conv-4 and, for a graph, the graph's split field. A field, base or backbone this suite's config does not have
    (yet) makes the value one it cannot run: the reason names it.

    Returns:
        ``(command, what to read)``: the command (None when the suite cannot run the cell) and which key of the
        run's ``test.json`` is the value (or the reason it cannot run).
    """
    import dataclasses

    from .bases import BASES
    from .config import FIELD_CHOICES, Config
    from .methods import METHODS
    from .tasks import TASK_TABLE

    fields = {f.name for f in dataclasses.fields(Config)}
    if value.metric not in METRICS:
        return None, "the paper does not say which prediction this row reports; no cell reproduces it"
    if value.task not in TASK_TABLE:
        return None, f"task {value.task!r} is not one of this suite's tasks"
    if value.base not in BASES:
        return None, f"base learner {value.base!r} is not in this suite yet (its bases: {', '.join(BASES)})"
    if value.method not in METHODS:
        return None, f"method {value.method!r} is not in this suite"
    flags = [f"--task {value.task}"]
    if TASK_TABLE[value.task].needs_data:
        flags.append(f"--data DATA/{value.dataset}")
    elif value.backbone == "gcn":  # the paper's graph, as a .npz the user exports (README, 'Graphs'), with its split
        flags.append(f"--data DATA/{value.dataset}.npz")
    flags += [f"--ways {value.ways}", f"--shots {value.shots}", f"--base {value.base}", f"--method {value.method}",
              "--preset paper"]
    setting = dict(value.setting)
    if value.backbone == "gcn":
        setting[GRAPH_FIELD] = value.dataset
    elif value.backbone != DEFAULT_BACKBONE:
        setting["backbone"] = value.backbone
    for name, v in setting.items():
        if name not in fields:
            return None, f"this suite's config has no {name} field yet (the value is measured at {name}={v})"
        choices = FIELD_CHOICES.get(name)
        if choices and v not in choices:
            return None, f"{name} {v!r} is not one of this suite's choices ({', '.join(map(str, choices))})"
        if isinstance(v, bool):
            flags.append(_flag(name) if v else f"--no-{name.replace('_', '-')}")
        else:
            flags.append(f"{_flag(name)} {v}")
    return f"{prog} train {' '.join(flags)}", f"read {value.metric} in its test.json ({METRIC_TEXT[value.metric]})"


def format_tables(tables: Sequence[str] | None = None, prog: str = "python -m cml") -> str:
    """The paper's tables as text, each published value with the command that reproduces it (:func:`reproduce`).

    Args:
        tables: the tables to print (default: all, in the paper's order).
        prog: the program name the commands start with.

    Raises:
        KeyError: for a table the paper does not have, naming those it has.
    """
    wanted = list(tables) if tables else list(TABLES)
    unknown = [t for t in wanted if t not in TABLES]
    if unknown:
        raise KeyError(f"the paper has no Table {', '.join(unknown)}; its tables: {', '.join(TABLES)}")
    lines = ["The published values of Shin, Han & Kim, Cooperative Meta-Learning with Gradient Augmentation",
             "(UAI 2024), each with the command that trains its cell here (DATA: the folder of the data sets; the",
             "paper reports 3 runs: add --seed 1 and --seed 2, or run `sweep --bases B --methods M --seeds 0,1,2`).",
             "A value's ± is as printed (3 runs for Tables 1, 4, 7, 8; none in Tables 2, 5, 9; Table 3: mean of 5).",
             ""]
    for table in wanted:
        lines.append(f"Table {table}: {TABLES[table]}")
        for v in (v for v in PAPER if v.table == table):
            where = f"{v.dataset}, {v.ways}-way {v.shots}-shot" + (f", {v.backbone}" if v.backbone != "conv4" else "")
            extra = "".join(f", {k}={x}" for k, x in v.setting.items())
            ci = f" ± {v.ci:.2f}" if v.ci is not None else ""
            note = f" ({v.note})" if v.note else ""
            lines.append(f"  {v.row} — {where}{extra}: {v.value:.2f}{ci}{note}")
            command, what = reproduce(v, prog)
            lines.append(f"    {command}  # {what}" if command else f"    not runnable here: {what}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["DEFAULT_BACKBONE", "METRICS", "PAPER", "PaperValue", "TABLES", "cell_of", "format_tables", "matching",
           "reproduce"]
