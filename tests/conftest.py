"""Shared fixtures, and how the suite runs on parallel workers.

Fixtures: where the real Omniglot files are (:func:`omniglot_root`), one fonts cache for the whole session
(:func:`fonts_cache`) and the tiny real sweeps that the figure, report and TensorBoard tests draw
(:func:`figure_runs`).

Parallel runs (``make test``: ``pytest -n 2 --dist loadfile``, pytest-xdist):

* One torch thread per process, in a worker and in a plain serial run alike: the suite's models are tiny, and on
  a 2-core machine two workers with two intra-op threads each only wait on each other. OMP_NUM_THREADS=1 is set
  before torch is imported (pytest imports this file before any test module), so the processes the tests start
  (notebook kernels, the Ray driver and its workers, fresh interpreters) inherit it.
* Every number a test compares comes from an explicitly seeded generator, never from the global RNG or from
  which tests ran before, so a test gives the same result on whichever worker runs it, in whatever order.
* The unit of work sent to a worker is a test file (its module fixtures are then built once), or one of the
  groups of files in ``_GROUPS``: files that share an expensive session fixture, or whose tests start processes
  that want both cores (a Ray cluster of 2 CPUs, Jupyter kernels) and so must not run beside each other.
  Units holding the most tests marked ``slow`` are sent first, so that no worker is left with a long test at
  the end while the other waits.
"""

from __future__ import annotations

import fcntl
import os

os.environ["OMP_NUM_THREADS"] = "1"  # before torch: the thread pool is sized when torch starts

from pathlib import Path  # noqa: E402  (imports after the thread count, on purpose)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def _fresh_tqdm_lock() -> None:
    """In a child forked by a test (tests/test_reliability*.py, a killed sweep driver): a new tqdm write lock.

    tqdm guards its bars with a multiprocessing lock that the parent's other threads (tqdm's monitor) may hold at
    the moment of the fork; the child's copy then stays held forever and its first bar waits on it (seen: a
    forked training run blocked in SemLock.acquire while the worker waited for it)."""
    from tqdm import auto, std

    lock = std.TqdmDefaultWriteLock()
    for cls in {std.tqdm, auto.tqdm}:
        cls.set_lock(lock)


os.register_at_fork(after_in_child=_fresh_tqdm_lock)
# No monitor thread in the test processes at all: one thread fewer to hold a lock across a fork.
import tqdm  # noqa: E402

tqdm.tqdm.monitor_interval = 0

SHARED_OMNIGLOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"

# Test files that run on one worker as one unit, one test after another: {file: group}.
_GROUPS = {
    # The session fixture `figure_runs` (several minutes of tiny sweeps): built once, on one worker.
    "tests/test_figures.py": "figure-runs",
    "tests/test_report.py": "figure-runs",
    "tests/test_tensorboard.py": "figure-runs",
    # Jupyter kernels and a Ray cluster of 2 CPUs: never two of them at once.
    "tests/test_notebooks.py": "kernels-and-ray",
    "tests/test_sweep_engines.py": "kernels-and-ray",
}


def _unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its group, else its file."""
    path = nodeid.split("::", 1)[0]
    return _GROUPS.get(path, path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the tests that use the figure sweeps ``slow``; on an xdist worker, puts the slowest units first.

    The controller hands out units in the order the workers collected them (``--no-loadscope-reorder``, set by
    :func:`pytest_xdist_make_scheduler`), so sorting here sorts the schedule.
    """
    for item in items:
        if "figure_runs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slow: dict[str, int] = {}
        for item in items:
            unit = _unit(item.nodeid)
            slow[unit] = slow.get(unit, 0) + (item.get_closest_marker("slow") is not None)
        items.sort(key=lambda item: -slow[_unit(item.nodeid)])  # stable: collection order within a unit and a tie


@pytest.hookimpl(optionalhook=True)  # an xdist hook: without xdist installed, nothing calls it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadfile`` with the groups of ``_GROUPS``, in the order the workers collected (slowest first)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupedFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False  # keep the collected order; by default, the units with most tests first
    return GroupedFileScheduling(config, log)


def _run_temp(factory: pytest.TempPathFactory) -> Path:
    """A folder of this test run shared by all its xdist workers (each worker's own base folder is below it)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture
def float64():
    """torch's default dtype float64 for one test (meta-gradients compared in float64), float32's again after."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="session", autouse=True)
def _session_fonts_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``CML_CACHE`` for the whole session: the tests, and the processes they start, never touch the user's cache,
    and the fonts are rendered at most once per test run (see :func:`fonts_cache`)."""
    folder = _run_temp(tmp_path_factory) / "cml-cache"
    folder.mkdir(exist_ok=True)
    os.environ["CML_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def fonts_cache(_session_fonts_cache_folder: Path) -> Path:
    """The session's fonts cache folder (``CML_CACHE``) holding the default fonts data set, rendered on first use.

    The xdist workers share the folder: the first to need it renders under a lock while the others wait, then
    read the cached file.
    """
    from cml.data import fonts

    folder = _session_fonts_cache_folder
    with open(folder.parent / "cml-cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        fonts.load_fonts_data(28, cache=folder)  # renders and caches on a miss, reads on a hit
    return folder


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    """``<repo>/../shared/data/omniglot``; skipped when absent, a failure when ``CML_REQUIRE_SHARED_DATA=1`` (CI)."""
    if not (SHARED_OMNIGLOT / "images_background_small1.zip").is_file():
        message = (
            f"real Omniglot not found at {SHARED_OMNIGLOT}; put images_background_small1.zip and "
            f"images_background_small2.zip there (brendenlake/omniglot, python/) to run the tests that read it"
        )
        if os.environ.get("CML_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_OMNIGLOT


#: The figure sweeps' command lines (after ``sweep``), each ending with ``--out``: the folder is added per sweep.
SIN = ["--task", "sinusoid", "--steps", "30", "--record-interval", "3", "--val-interval", "10", "--val-tasks", "10",
       "--test-tasks", "20", "--record-tasks", "5", "--log-interval", "5", "--no-progress"]
FONTS = ["--task", "fonts", "--steps", "6", "--filters", "16", "--meta-batch", "2", "--record-interval", "2",
         "--val-interval", "3", "--val-tasks", "5", "--test-tasks", "10", "--record-tasks", "4", "--log-interval", "2",
         "--checkpoint-interval", "0", "--no-progress"]


def build_figure_runs(root: Path) -> dict[str, Path]:
    """Tiny real sweeps with learning-dynamics records, in ``root`` (the fonts from ``CML_CACHE``), trained by the
    CLI (so that each sweep folder records its command) with the older method names on MAML (so that they are
    read as every old folder is).

    Returns:
        ``{"sin": sinusoid 10-shot (maml, noisy-maml, cml x seeds 0, 1), "sin5": sinusoid 5-shot (maml, cml,
        seed 0), "fonts": fonts 5-way 1-shot (maml, noisy-maml, more-maml, cl, cml x seeds 0, 1), "cache": the
        fonts cache folder}``.
    """
    from cml.cli import main

    for name, argv in (("sin", [*SIN, "--methods", "maml,noisy-maml,cml", "--seeds", "0,1"]),
                       ("sin5", [*SIN, "--shots", "5", "--methods", "maml,cml", "--seeds", "0"]),
                       ("fonts", [*FONTS, "--methods", "maml,noisy-maml,more-maml,cl,cml", "--seeds", "0,1"])):
        assert main(["sweep", *argv, "--out", str(root / name)]) == 0
    return {"sin": root / "sin", "sin5": root / "sin5", "fonts": root / "fonts", "cache": Path(os.environ["CML_CACHE"])}


@pytest.fixture(scope="session")
def figure_runs(tmp_path_factory: pytest.TempPathFactory, fonts_cache: Path) -> dict[str, Path]:
    """The sweeps of :func:`build_figure_runs`, trained once per session (tests must not write into them)."""
    return build_figure_runs(tmp_path_factory.mktemp("figure-runs"))
