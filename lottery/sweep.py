"""Sweeps: the seed x method grid of one run description as Ray tasks, written as a run group.

``python -m lottery sweep --preset smoke --seeds 0 1 2`` writes::

    OUT/group.json       the group manifest (artifacts.run_format.write_group_manifest)
    OUT/seed-0/          an ordinary run of the description with seed 0
    OUT/seed-1/ ...

The driver schedules three kinds of work and polls them with ``ray.wait``:

1. One *prepare* task per seed writes what every method of that run shares:
   its manifest, theta_0 and probe batch. It runs once, before any method task
   of the seed starts. Two method tasks of one run folder are then never both
   creating it: the engine refuses a non-empty folder without a manifest, and
   a theta_0 file being written by one task must not be drawn again by another.
2. One task per (seed, method) trains that method's levels and resumes: the
   engine skips finished levels and writes each level folder atomically, so a
   killed sweep, run again, finishes exactly the levels that were missing.
3. ``rtl`` and ``independent`` draw identical ticket masks and reuse the ones
   the other already wrote (:mod:`lottery.tickets`). The second of them (in the
   description's order) therefore starts when the first has ended and skips
   ticket extraction, about half of its work; ``imp`` starts at once.

Outputs must land on a filesystem every Ray node sees (the driver counts the
finished level folders for the progress bar and writes the group manifest).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from artifacts import run_format as rf
from lottery.config import RunDescription, add_overrides_argument, apply_overrides, replace

REPO = Path(__file__).resolve().parents[1]
POLL_SECONDS = 0.5


def seed_run_name(seed: int) -> str:
    """Folder name of the run of ``seed`` inside a group (``seed-3``)."""
    return f"seed-{seed}"


def group_hash(desc: RunDescription) -> str:
    """Hash of a description with its seed left out: names the default group folder."""
    return replace(desc, seed=0).hash()


def default_group_dir(preset: str, desc: RunDescription, root: str | Path = "runs") -> Path:
    """``runs/<preset>-<hash>-seeds``: the sweep's default output folder."""
    return Path(root) / f"{preset}-{group_hash(desc)}-seeds"


def override_description(desc: RunDescription, assignments: Sequence[str]) -> RunDescription:
    """``desc`` with ``key=value`` assignments applied (:func:`lottery.config.apply_overrides`)."""
    return apply_overrides(desc, list(assignments)) if assignments else desc


def _domain():
    # the classification domain of the engine: context, manifest, method registry
    from lottery.pipeline import CLASSIFICATION

    return CLASSIFICATION


def _planned(desc: RunDescription) -> tuple[str, ...]:
    from lottery.protocol import planned_methods

    return planned_methods(desc)


def _ticket_methods() -> tuple[str, ...]:
    from lottery.tickets import TICKET_METHODS

    return tuple(TICKET_METHODS)


# ----------------------------------------------------------------------------- the tasks' work


def prepare_run(
    desc: RunDescription,
    run_dir: str | Path,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    name: str | None = None,
) -> None:
    """Write what every method of a run shares: manifest, theta_0, probe batch (idempotent).

    The first half of :func:`lottery.context.run_domain`, without the methods.

    Raises
    ------
    ValueError
        When ``run_dir`` holds another run, or other files and no run.
    """
    from lottery.context import open_run

    open_run(_domain(), desc, Path(run_dir), name, device=device, data_dir=data_dir)


def train_method(
    desc: RunDescription,
    run_dir: str | Path,
    method: str,
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    threads: int = 1,
) -> list[int]:
    """Train (or resume) one method of a prepared run; returns its completed levels.

    Parameters
    ----------
    threads : int
        Torch intra-op threads (the CPUs Ray gave the task).
    """
    import torch

    from lottery.context import check_run_dir

    domain = _domain()
    run_dir = Path(run_dir)
    if not (run_dir / rf.MANIFEST).is_file() or not (run_dir / rf.THETA0).is_file():
        raise rf.RunFormatError(
            f"{run_dir} is not prepared (no manifest or theta_0): is the group folder on a filesystem "
            "every Ray node shares?"
        )
    check_run_dir(run_dir, desc, domain.task)
    torch.set_num_threads(max(1, int(threads)))
    ctx = domain.build(desc, run_dir, device=device, data_dir=data_dir)
    domain.methods[method](ctx, False)  # its level loop cleans partial levels and skips finished ones
    return rf.completed_levels(run_dir, method)


# ----------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised: which run and method (``"prepare"`` for the shared files), and the error."""

    run: str
    method: str
    error: str

    def __str__(self) -> str:
        return f"{self.run} {self.method}: {self.error}"


@dataclass
class SweepResult:
    """What a sweep did.

    Attributes
    ----------
    group_dir : Path
    finished : list of (run, method)
        Tasks that completed.
    failures : list of TaskFailure
    levels_done, levels_total : int
        Completed level folders over the grid, and how many the grid has.
    """

    group_dir: Path
    finished: list[tuple[str, str]] = field(default_factory=list)
    failures: list[TaskFailure] = field(default_factory=list)
    levels_done: int = 0
    levels_total: int = 0

    @property
    def ok(self) -> bool:
        """No task failed."""
        return not self.failures


def _described(desc: RunDescription) -> dict:
    return {k: v for k, v in desc.to_dict().items() if k != "seed"}


def check_group_dir(group_dir: str | Path, desc: RunDescription) -> rf.RunGroup | None:
    """The group already in ``group_dir`` (None if there is none) after checking it fits ``desc``.

    Raises
    ------
    ValueError
        When ``group_dir`` holds a group of another description, or other files.
    """
    group_dir = Path(group_dir)
    if rf.is_group(group_dir):
        old = rf.load_group(group_dir)
        if old.manifest.get("description") != _described(desc):
            raise ValueError(
                f"{group_dir} holds a sweep of another description (hash {old.manifest.get('group_hash')}, "
                f"this one {group_hash(desc)}); choose another --out"
            )
        return old
    if group_dir.exists() and (not group_dir.is_dir() or any(group_dir.iterdir())):
        raise ValueError(f"{group_dir} is not empty and holds no run group; choose another --out")
    return None


def write_group(
    group_dir: Path, desc: RunDescription, seeds: Sequence[int], *, preset: str, overrides: Sequence[str]
) -> list[int]:
    """Create or extend the group manifest; returns the group's seeds (old ones first).

    Raises
    ------
    ValueError
        When ``group_dir`` holds a group of another description, or other files.
    """
    from lottery.context import manifest_header

    old = check_group_dir(group_dir, desc)
    old_seeds = old.seeds if old is not None else []
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if old is not None:
        created = old.manifest.get("created", created)
    all_seeds = old_seeds + [s for s in dict.fromkeys(seeds) if s not in old_seeds]
    rf.write_group_manifest(
        group_dir,
        {
            "name": group_dir.name,
            "preset": preset,
            "overrides": list(overrides),
            "seeds": all_seeds,
            "methods": list(desc.methods),
            "runs": [seed_run_name(s) for s in all_seeds],
            "description": _described(desc),
            "group_hash": group_hash(desc),
            "created": created,
            "git_commit": manifest_header(desc, group_dir)["git_commit"],
        },
    )
    return all_seeds


def ray_init_options() -> dict:
    """Keyword arguments of ``ray.init`` for sweeps: quiet, no dashboard, this checkout importable."""
    return {
        "include_dashboard": False,
        "logging_level": logging.ERROR,
        "log_to_driver": False,  # task errors come back as exceptions; tqdm in tasks is off
        # workers import lottery/ and artifacts/ from this checkout (same path on every node)
        "runtime_env": {
            "env_vars": {
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
            }
        },
    }


def _connect(address: str | None, local_cpus: int | None = None) -> bool:
    """Start a local Ray of ``local_cpus`` (default all cores) or join ``address``; False if Ray ran."""
    import ray

    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, **ray_init_options())
        else:
            # "local": a new instance even when `ray start` left one running on this machine (or
            # another sweep's local Ray: two sweeps of one local CPU each share a 2-core machine)
            ray.init(address="local", num_cpus=local_cpus or os.cpu_count() or 1, **ray_init_options())
    except (ConnectionError, RuntimeError) as e:
        hint = (
            " (a cluster started with `ray start` uses token authentication: set RAY_AUTH_MODE=token "
            "and make its token available, see `ray get-auth-token`)"
            if address
            else ""
        )
        raise ValueError(f"cannot start or reach Ray at {address or 'local'}: {_error_text(e)}{hint}") from e
    return True


def _error_text(err: BaseException) -> str:
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        err = cause
    first = str(err).strip().splitlines()
    return f"{type(err).__name__}: {first[0] if first else ''}".rstrip(": ")


def run_sweep(
    desc: RunDescription,
    seeds: Sequence[int],
    group_dir: str | Path,
    *,
    preset: str,
    overrides: Sequence[str] = (),
    address: str | None = None,
    local_cpus: int | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0,
    device: str = "auto",
    data_dir: str | None = None,
    show_progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run (or resume) every (seed, method) of ``desc`` as Ray tasks into a run group.

    Parameters
    ----------
    desc : RunDescription
        The description every run shares (its ``seed`` is replaced per run).
    seeds : sequence of int
    group_dir : str or Path
        The group folder (created; an existing group of the same description is resumed).
    preset : str
        Preset name, recorded in the group manifest.
    overrides : sequence of str
        The ``key=value`` assignments applied to the preset (recorded).
    address : str, optional
        Address of a running Ray cluster; default a local Ray with the machine's cores.
        When Ray is already initialised in this process, it is used as it is.
    local_cpus : int, optional
        CPUs of the local Ray (default: all cores); not with ``address``.
    cpus_per_run, gpus_per_run : float
        Resources Ray reserves for each task.
    echo : callable, optional
        Where failure lines go (default: written above the progress bar).

    Returns
    -------
    SweepResult
    """
    from tqdm import tqdm

    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ValueError("no seeds given")
    if cpus_per_run <= 0:
        raise ValueError("--cpus-per-run must be positive")
    if local_cpus is not None and (address or local_cpus < 1):
        raise ValueError("--local-cpus needs a positive count and no --address (it sizes a local Ray)")
    known = _domain().methods
    methods = _planned(desc)  # the description's methods and its dense reference
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {sorted(known)}")
    group_dir = Path(group_dir).expanduser().resolve()
    check_group_dir(group_dir, desc)  # before the slow Ray start
    runs = {s: group_dir / seed_run_name(s) for s in seeds}
    per_run = sum(1 if m == "dense" else desc.prune.levels + 1 for m in methods)
    result = SweepResult(group_dir, levels_total=len(seeds) * per_run)

    def count_levels() -> int:
        return sum(len(rf.completed_levels(runs[s], m)) for s in seeds for m in methods)

    import ray

    owns = _connect(address, local_cpus)
    try:
        write_group(group_dir, desc, seeds, preset=preset, overrides=overrides)
    except BaseException:
        if owns:
            ray.shutdown()
        raise
    bar = tqdm(
        total=result.levels_total,
        initial=count_levels(),  # a resumed sweep starts at the levels already written
        desc="sweep levels",
        unit="level",
        disable=not show_progress,
    )
    say = echo or (lambda line: tqdm.write(line))
    try:
        prepare = ray.remote(prepare_run).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)
        method_task = ray.remote(train_method).options(
            num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0
        )
        threads = max(1, int(cpus_per_run))
        ticket = _ticket_methods()
        pending: dict = {}

        def submit(seed: int, method: str) -> None:
            ref = method_task.remote(
                replace(desc, seed=seed),
                runs[seed],
                method,
                device=device,
                data_dir=data_dir,
                threads=threads,
            )
            pending[ref] = (seed, method)

        for s in seeds:
            name = f"{group_dir.name}/{seed_run_name(s)}"
            ref = prepare.remote(replace(desc, seed=s), runs[s], device=device, data_dir=data_dir, name=name)
            pending[ref] = (s, None)
        # ticket methods of one seed run one after the other (the second reuses the first's masks)
        chains = {s: [m for m in methods if m in ticket] for s in seeds}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                seed, method = pending.pop(ref)
                try:
                    ray.get(ref)
                except Exception as e:  # a task's error (RayTaskError) or a lost worker
                    failure = TaskFailure(seed_run_name(seed), method or "prepare", _error_text(e))
                    result.failures.append(failure)
                    say(f"failed: {failure}")
                    if method is None:
                        continue  # no method of this seed can run without its shared files
                else:
                    if method is not None:
                        result.finished.append((seed_run_name(seed), method))
                if method is None:
                    for m in methods:
                        if m not in ticket:
                            submit(seed, m)
                    if chains[seed]:
                        submit(seed, chains[seed].pop(0))
                elif method in ticket and chains[seed]:
                    submit(seed, chains[seed].pop(0))
            done = count_levels()
            bar.update(done - bar.n)
    finally:
        bar.close()
        if owns:
            ray.shutdown()
    result.levels_done = count_levels()
    return result


# ----------------------------------------------------------------------------- command line


def add_sweep_command(sub) -> None:
    """Add ``sweep`` to the ``python -m lottery`` subcommands."""
    p = sub.add_parser(
        "sweep", help="train a preset for several seeds (x methods) as Ray tasks, into a run group"
    )
    p.add_argument("--preset", required=True, help="preset name (see `python -m lottery presets`)")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="one run per seed")
    add_overrides_argument(p, "prune.levels=20 --set train.epochs=5")
    p.add_argument("--methods", nargs="+", help="methods to run (default: the preset's)")
    p.add_argument("--out", type=Path, help="group folder (default: runs/<preset>-<hash>-seeds)")
    p.add_argument("--address", help="address of a running Ray cluster (default: a local Ray on all cores)")
    p.add_argument(
        "--local-cpus", type=int, help="CPUs of the local Ray (default: all cores; not with --address)"
    )
    p.add_argument("--cpus-per-run", type=float, default=1, help="CPUs Ray reserves per task (default 1)")
    p.add_argument("--gpus-per-run", type=float, default=0, help="GPUs Ray reserves per task (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--data-dir", help="folder holding the dataset files, on every node")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=sweep_command)


def sweep_command(args) -> int:
    """Run ``python -m lottery sweep``; exit code 1 when a task failed."""
    from lottery.presets import get_preset

    overrides = list(args.overrides)
    if args.methods:  # the same as --set methods=a,b
        overrides.append("methods=" + ",".join(dict.fromkeys(args.methods)))
    desc = override_description(get_preset(args.preset), overrides)
    out = args.out or default_group_dir(args.preset, desc)
    result = run_sweep(
        desc,
        args.seeds,
        out,
        preset=args.preset,
        overrides=overrides,
        address=args.address,
        local_cpus=args.local_cpus,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
        device=args.device,
        data_dir=args.data_dir,
        show_progress=not args.quiet,
    )
    print(
        f"run group {result.group_dir}: {len(result.finished)} task(s) finished, "
        f"{len(result.failures)} failed, {result.levels_done}/{result.levels_total} levels"
    )
    for failure in result.failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 0 if result.ok else 1
