"""Mutation testing of the modules a site depends on most, with cosmic-ray: each mutant (a
comparison turned round, a number changed, a condition negated, an exception not caught, ...) is
applied to a copy of the module and that module's fast tests are run; a mutant they do not fail
on "survives". Not part of CI: it runs the tests once per mutant.

Each module's run works in a scratch copy of the repository (the checkout is never touched), with
the lean set of operators below (cosmic-ray's full set adds every binary operator swapped for every
other, mostly the same finding many times), on all the mutants or a seeded sample of them, one
test process at a time. Prints one JSON object: per module the mutants run, their outcomes, the
survivors (each with its line, operator and diff), and the score: the share of the mutants judged
(killed, timed out or survived) that the tests caught.

    python bench/mutation.py --list               # the modules and their tests
    python bench/mutation.py discovery state      # every mutant of these modules
    python bench/mutation.py --sample 40 all      # 40 mutants of each module, seed 1
    pip install -e '.[mutation]'                  # cosmic-ray, pinned
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# module name -> (file, its fast tests): what one mutant is checked against.
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "rtu": ("gateway/bus/rtu.py", ("tests/bus/test_rtu.py", "tests/bus/test_rtu_timing.py")),
    "scheduler": ("gateway/bus/scheduler.py", ("tests/bus/test_scheduler.py",)),
    "discovery": ("gateway/nodes/discovery.py", ("tests/nodes/test_discovery.py", "tests/nodes/test_lifecycle.py")),
    "state": ("gateway/state.py", ("tests/test_state.py", "tests/test_state_saves.py")),
    "snmp_writes": (
        "gateway/snmp/controller.py",
        ("tests/snmp/test_agent.py", "tests/snmp/test_fast.py", "tests/snmp/test_notifications.py"),
    ),
    "snmp_agent": ("gateway/snmp/agent.py", ("tests/snmp/test_agent.py",)),
    "doctor": ("gateway/bacnet/doctor.py", ("tests/bacnet/test_doctor.py",)),
    "fastpath": ("gateway/bacnet/fastpath.py", ("tests/bacnet/test_fastpath.py", "tests/bacnet/test_limits.py")),
}

# The operators kept: each turns one decision of the code into another plausible one.
KEPT_OPERATORS = re.compile(
    r"core/("
    r"ReplaceComparisonOperator_(Eq_NotEq|NotEq_Eq|Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt|Lt_Gt|Gt_Lt|In_NotIn|NotIn_In|Is_IsNot|IsNot_Is)"
    r"|ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Mul|Mod_FloorDiv|BitOr_BitAnd|BitAnd_BitOr"
    r"|LShift_RShift|RShift_LShift|BitXor_BitOr|Pow_Mul)"
    r"|ReplaceUnaryOperator_.*|AddNot|NumberReplacer|ReplaceTrueWithFalse|ReplaceFalseWithTrue"
    r"|ReplaceAndWithOr|ReplaceOrWithAnd|ReplaceBreakWithContinue|ReplaceContinueWithBreak"
    r"|ZeroIterationForLoop|ExceptionReplacer"
    r")$"
)


def _cosmic_ray(*args: str, cwd: Path) -> str:
    command = [str(Path(sys.executable).parent / "cosmic-ray"), *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout


def _scratch_copy(folder: Path) -> Path:
    """The repository's tracked files (as they are now, edits included) and its virtualenv, by link."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    copy = folder / "repo"
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


def _keep(session: Path, sample: int | None, seed: int) -> int:
    """Skip the mutants of operators not kept, then all but `sample` of the rest; how many remain."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        pending = [item for item in db.pending_work_items if KEPT_OPERATORS.match(item.mutations[0].operator_name)]
        chosen = {item.job_id for item in pending}
        if sample is not None and sample < len(pending):
            chosen = {item.job_id for item in random.Random(seed).sample(pending, sample)}
        for item in list(db.pending_work_items):
            if item.job_id not in chosen:
                db.set_result(item.job_id, WorkResult(output="not run", worker_outcome=WorkerOutcome.SKIPPED))
    return len(chosen)


def mutate(name: str, sample: int | None, seed: int) -> dict[str, Any]:
    module, tests = MODULES[name]
    with tempfile.TemporaryDirectory(prefix=f"mutation-{name}-") as folder:
        copy = _scratch_copy(Path(folder))
        # -x: the first failure kills the mutant; `python -m` puts the copy first on the path.
        pytest = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider", *tests]
        for _ in range(3):  # a timing test may fail once on a busy machine; three times is the code
            started = time.monotonic()
            baseline = subprocess.run(pytest, cwd=copy, capture_output=True, text=True)
            if baseline.returncode == 0:
                break
        else:
            raise RuntimeError(f"{name}: the tests fail without any mutant:\n{baseline.stdout[-3000:]}")
        seconds = time.monotonic() - started
        config = Path(folder) / "cosmic-ray.toml"
        config.write_text(
            "[cosmic-ray]\n"
            f'module-path = "{module}"\n'
            f"timeout = {max(60.0, 4 * seconds):.0f}\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(' '.join(pytest))}\n"
            '[cosmic-ray.distributor]\nname = "local"\n'
        )
        session = Path(folder) / "session.sqlite"
        _cosmic_ray("init", str(config), str(session), cwd=copy)
        run = _keep(session, sample, seed)
        _cosmic_ray("exec", str(config), str(session), cwd=copy)
        results = [json.loads(line) for line in _cosmic_ray("dump", str(session), cwd=copy).splitlines()]
    outcomes: dict[str, int] = {}
    survivors = []
    for item, result in results:
        if result is None or result["worker_outcome"] == "skipped":
            continue
        outcome = result["test_outcome"] if result["worker_outcome"] == "normal" else result["worker_outcome"]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome == "survived":
            mutation = item["mutations"][0]
            survivors.append(
                {
                    "line": mutation["start_pos"][0],
                    "operator": mutation["operator_name"].removeprefix("core/"),
                    "diff": result["diff"],
                }
            )
    # A mutant the tests time out on is caught too; one that does not even import (incompetent,
    # exception) says nothing either way.
    killed = outcomes.get("killed", 0) + outcomes.get("timeout", 0)
    judged = killed + outcomes.get("survived", 0)
    return {
        "module": module,
        "tests": list(tests),
        "tests_seconds_unmutated": round(seconds, 1),
        "mutants_run": run,
        "outcomes": outcomes,
        "score": round(killed / judged, 3) if judged else None,
        "survivors": sorted(survivors, key=lambda survivor: survivor["line"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"{', '.join(MODULES)}, or all")
    parser.add_argument("--sample", type=int, help="mutants of each module (default: all)")
    parser.add_argument("--seed", type=int, default=1, help="of the sample")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests")
    args = parser.parse_args()
    if args.list or not args.modules:
        for name, (module, tests) in MODULES.items():
            print(f"{name:12} {module:30} {' '.join(tests)}")
        return
    names = list(MODULES) if args.modules == ["all"] else args.modules
    unknown = [name for name in names if name not in MODULES]
    if unknown:
        parser.error(f"unknown modules {', '.join(unknown)}; known: {', '.join(MODULES)}")
    report = {"benchmark": "mutation", "sample": args.sample, "seed": args.seed, "modules": {}}
    for name in names:
        print(f"mutation: {name}", file=sys.stderr, flush=True)
        report["modules"][name] = mutate(name, args.sample, args.seed)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
