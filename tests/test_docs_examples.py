"""Every command the README and docs/*.md show, checked as written: each `twostream ...` parses (its subcommand and
every flag exist, each flag is in its --help) and its config resolves; the cluster examples run with --dry-run /
--no-submit; the first run on one's own videos runs at the tiny preset's sizes; the shell launcher and the
benchmark scripts take the flags shown."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO, run_cli

from twostream.launch import cli, config_args
from twostream.trainer import config as config_lib

HELPS = os.path.join(REPO, "tests", "helpers", "script_helps.py")
PAGES = [os.path.join(REPO, "README.md"), *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]


def shell_blocks(path: str) -> list[tuple[int, str]]:
    """(line number, command) of every line in the page's ```bash blocks, continuation lines joined."""
    found, in_block, pending, start = [], False, "", 0
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.startswith("```"):
                in_block = line.strip() == "```bash"
                continue
            if not in_block or not line.strip():
                continue
            if not pending:
                start = number
            pending += line.rstrip("\n")
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            found.append((start, pending.strip()))
            pending = ""
    return found


def examples() -> list[tuple[str, list[str]]]:
    """(where, tokens) of every shell line of every page, comments and leading VAR=value removed."""
    lines = []
    for page in PAGES:
        for number, line in shell_blocks(page):
            tokens = shlex.split(line, comments=True)
            while tokens and re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):
                tokens.pop(0)
            lines.append((f"{os.path.relpath(page, REPO)}:{number}", tokens))
    return lines


def twostream_commands() -> list[tuple[str, list[str]]]:
    """(where, arguments after `twostream`) of every example that runs twostream (also after `ray job submit --`)."""
    commands = []
    for where, tokens in examples():
        for i, token in enumerate(tokens):
            if token == "twostream" or token.endswith("/twostream"):
                commands.append((where, tokens[i + 1 :]))
                break
    return commands


COMMANDS = twostream_commands()
IDS = [f"{where} {' '.join(args[:2])}" for where, args in COMMANDS]


def test_the_pages_show_commands():
    shown = {" ".join(args[:2]) for _, args in COMMANDS}
    for expected in [
        "train --preset",
        "evaluate --workdir",
        "predict",
        "prepare --preset",
        "doctor",
        "models --preset",
        "launch horovod",
        "launch ray",
        "launch slurm",
        "launch k8s",
        "synth",
    ]:
        assert any(s.startswith(expected) for s in shown), expected


def _parse(args: list[str]):
    try:
        return cli.build_parser().parse_args(args)
    except SystemExit as stop:
        raise AssertionError(f"`twostream {' '.join(args)}` does not parse (exit {stop.code})") from None


def _help(args: list[str]) -> str:
    """--help of the (sub)command that `args` names."""
    path = [a for a in args[:2] if not a.startswith("-")]
    if path[:1] != ["launch"]:
        path = path[:1]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        cli.build_parser().parse_args([*path, "--help"])
    assert stop.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("where,args", COMMANDS, ids=IDS)
def test_each_command_parses_and_its_flags_are_in_its_help(where, args):
    parsed = _parse(args)
    shown = _help(args)
    for flag in (a.split("=")[0] for a in args if a.startswith("-")):
        assert re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", shown), f"{where}: {flag} not in --help"
    if hasattr(parsed, "overrides"):  # the config it names resolves: every --set key and value accepted
        debug = config_args.debug_overrides() if getattr(parsed, "debug", False) else []
        config_lib.load(getattr(parsed, "preset", None), getattr(parsed, "config", None), debug + parsed.overrides)


def _localised(args: list[str], tmp_path) -> list[str]:
    """The example's placeholder paths (/shared/..., /path/to/...) moved under tmp_path (a pod's /mnt stays)."""
    out = []
    for arg in args:
        for prefix in ("/shared/", "/path/to/"):
            arg = arg.replace(prefix, f"{tmp_path}/")
        out.append(arg)
    return out


def _run_in(folder, argv: list[str]) -> tuple[int, str, str]:
    cwd = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        os.chdir(cwd)
    return code, out.getvalue(), err.getvalue()


LAUNCHES = [
    (where, args)
    for where, args in COMMANDS
    if args[:2] in (["launch", "horovod"], ["launch", "slurm"], ["launch", "k8s"])
]


@pytest.mark.parametrize("where,args", LAUNCHES, ids=[f"{w} {' '.join(a[:2])}" for w, a in LAUNCHES])
def test_cluster_examples_run_without_starting_a_job(where, args, tmp_path, tiny_dataset):
    """launch horovod with --dry-run, launch slurm with --no-submit, launch k8s as written (it only writes YAML);
    the example's shared data folder is the test's small dataset."""
    (tmp_path / "hosts.txt").write_text("node1 slots=4\nnode2 slots=4\n")  # what the hostfile example reads
    (tmp_path / "hosts.sh").write_text("#!/bin/sh\necho node1:2\necho node2:2\n")
    os.chmod(tmp_path / "hosts.sh", 0o755)
    argv = _localised(args, tmp_path)
    extra = {"horovod": ["--dry-run"], "slurm": ["--no-submit"], "k8s": []}[args[1]]
    argv += [flag for flag in extra if flag not in argv]
    data = argv[argv.index("--data") + 1] if "--data" in argv else None
    if data and data.startswith(str(tmp_path)) and not os.path.exists(data):
        os.makedirs(os.path.dirname(data), exist_ok=True)
        os.symlink(tiny_dataset, data)
    code, out, err = _run_in(tmp_path, argv)
    assert code == 0, f"{where}: exit {code}\n{err[-2000:]}"
    if args[1] == "horovod":
        printed = out.strip().splitlines()[-1]
        assert "horovodrun" in printed and " train " in printed and "--gloo" in printed
    if args[1] == "slurm":
        workdir = argv[argv.index("--workdir") + 1]
        assert os.path.isfile(os.path.join(workdir, "launch", "twostream.sbatch"))
    if args[1] == "k8s":
        name = argv[argv.index("--name") + 1]
        written = (tmp_path / f"{name}.yaml").read_text()  # what the page's `kubectl apply -f` names
        assert "kind: MPIJob" in written


def test_the_shell_launcher_example_prints_its_command(tmp_path):
    for where, tokens in examples():
        if tokens and tokens[0] == "launch/jobs/horovodrun.sh":
            line = next(
                text
                for n, text in shell_blocks(os.path.join(REPO, where.split(":")[0]))
                if n == int(where.split(":")[1])
            )
            env = dict(re.findall(r"\b([A-Z_]+)=(\S+)", line.split("launch/jobs/horovodrun.sh")[0]))
            done = subprocess.run(
                ["bash", os.path.join(REPO, "launch", "jobs", "horovodrun.sh"), *tokens[1:]],
                cwd=REPO,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{where}: {done.stderr[-2000:]}"
            assert env.get("DRY_RUN") and "horovodrun -np 2" in done.stdout, where
            return
    pytest.fail("no launch/jobs/horovodrun.sh example found")


@pytest.mark.tensorflow
def test_benchmark_and_example_scripts_take_the_flags_shown(tmp_path):
    shown = []  # (where, script, flags after it)
    for where, tokens in examples():
        scripts = [t for t in tokens if re.fullmatch(r"(benchmarks|examples)/\w+\.py", t)]
        if scripts:
            shown.append((where, scripts[0], [a for a in tokens[tokens.index(scripts[0]) + 1 :] if a.startswith("--")]))
    assert shown
    # Every script's --help from one Python (tests/helpers/script_helps.py): TensorFlow is imported once, not per line.
    paths = sorted({os.path.join(REPO, script) for _, script, _ in shown})
    done = subprocess.run(
        [sys.executable, HELPS, str(tmp_path / "helps.json"), *paths],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    helps = json.loads((tmp_path / "helps.json").read_text())
    for where, script, flags in shown:
        shown_help = helps[os.path.join(REPO, script)]
        assert shown_help["exit"] == 0, f"{where}: {shown_help['help'][-1000:]}"
        for flag in flags:
            assert flag.split("=")[0] in shown_help["help"], f"{where}: {script} has no {flag}"


@pytest.mark.timeout(420)
@pytest.mark.tensorflow
def test_first_run_on_your_own_videos_runs_at_tiny_size(tiny_dataset, tmp_path):
    """The README's first run, as written, with the tiny preset for the demo one and the test's videos."""
    block = next(
        tokens
        for where, tokens in examples()
        if where.startswith("README.md") and tokens[:2] == [".venv/bin/twostream", "doctor"]
    )
    assert block  # the block starts with doctor; its next lines are prepare, train, evaluate, predict
    readme = [tokens for where, tokens in examples() if where.startswith("README.md")]
    start = readme.index(block)
    steps = readme[start + 1 : start + 5]
    assert [s[1] for s in steps] == ["prepare", "train", "evaluate", "predict"]
    videos = sorted(glob.glob(os.path.join(tiny_dataset, "*", "*.avi")))[:2]
    for tokens in steps:
        args = [a.replace("/path/to/videos", tiny_dataset) for a in tokens[1:]]
        args = [{"/path/to/some.mp4": videos[0], "/path/to/other.avi": videos[1]}.get(a, a) for a in args]
        args = ["tiny" if a == "demo" and args[i - 1] == "--preset" else a for i, a in enumerate(args)]
        if args[0] in ("prepare", "train"):
            args += ["--set", "data.num_actors=1", "--set", "data.object_store_mb=128"]
        done = run_cli(*args, cwd=str(tmp_path), timeout=300)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stderr[-3000:]}"
    assert os.path.isfile(tmp_path / "runs" / "mine" / "eval.json")
    assert os.listdir(tmp_path / "runs" / "mine" / "flow_cache")  # prepare filled the cache train read
    lines = done.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == videos and all(len(row.split("\t")) >= 3 for row in lines)
    final = [json.loads(row) for row in open(tmp_path / "runs" / "mine" / "metrics.jsonl")]
    assert [r["kind"] for r in final].count("final") == 1
