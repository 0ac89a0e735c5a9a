"""Every code block of the README runs as a reader would paste it: each ``sh`` block as one
bash script, each ``python`` block as one program, in a fresh folder beside this checkout's
``.venv``. Budgets are made small (a run stops at 4,000-6,000 env steps, a target is met
as soon as the return window fills); the lines that cannot run inside the suite are named
below with the reason, and nothing else is left out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
NOT_HERE = {
    "make run": "the Makefile's main job: a Ray run of 100,000 env steps (the Ray runs are "
                "tests/launcher/test_train_ray.py's)",
    "make test": "this test runs under it",
    ".venv/bin/tensorboard --logdir runs": "a server that runs until it is stopped (the "
                                           "files it serves are read back in "
                                           "tests/launcher/test_train_local.py)",
}
RUN_BUDGET = 4_000
MAX_BUDGET = 6_000
BLOCK_TIMEOUT = 600  # seconds; the tour's block runs two trainings, five other commands


def readme_blocks() -> list[tuple[str, str]]:
    return [(language, code) for language, code in
            BLOCK.findall((REPOSITORY / "README.md").read_text())]


def small(script: str) -> str:
    """The block with small budgets: targets met once the return window fills, step
    budgets capped, and a budget for every ``shoal train`` that has none."""
    script = re.sub(r"--target-return \S+", "--target-return -1000000", script)
    script = re.sub(r"--total-env-steps (\d+)",
                    lambda m: f"--total-env-steps {min(int(m.group(1)), MAX_BUDGET)}", script)
    script = re.sub(r"total_env_steps=([\d_]+)",
                    lambda m: f"total_env_steps={min(int(m.group(1)), RUN_BUDGET)}", script)
    lines = []
    for line in script.splitlines():
        command = line.split("  #")[0].rstrip()
        if "shoal train" in command and "--total-env-steps" not in command and \
                "--print-config" not in command and not command.endswith("\\"):
            line = f"{command} --total-env-steps {RUN_BUDGET}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def runnable(code: str) -> str:
    kept = []
    for line in code.splitlines():
        command = line.split("#")[0].strip()
        if command in NOT_HERE:
            continue
        kept.append(line)
    return "\n".join(kept)


BLOCKS = readme_blocks()


def test_the_readme_has_blocks_of_each_kind_and_every_left_out_line_is_in_it():
    languages = [language for language, _ in BLOCKS]
    assert languages.count("sh") >= 3 and languages.count("python") >= 2, languages
    assert set(languages) <= {"sh", "python", ""}, languages
    text = "\n".join(code for _, code in BLOCKS)
    for line in NOT_HERE:  # a reason kept for a line that is gone would excuse nothing
        assert line in text, line
    for language, code in BLOCKS:
        if language == "":  # the picture: no command in it
            assert ".venv/bin/" not in code and "import " not in code, code


@pytest.mark.timeout(BLOCK_TIMEOUT + 60)
@pytest.mark.parametrize(("language", "code"),
                         [block for block in BLOCKS if block[0] in ("sh", "python")],
                         ids=[f"{language}-{index}" for index, (language, _)
                              in enumerate(b for b in BLOCKS if b[0] in ("sh", "python"))])
def test_a_readme_block_runs(tmp_path, language, code):
    (tmp_path / ".venv").symlink_to(REPOSITORY / ".venv")
    script = small(runnable(code))
    command = ["bash", "-euc", script] if language == "sh" else [sys.executable, "-c", script]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                            timeout=BLOCK_TIMEOUT)
    assert result.returncode == 0, (f"{language} block exited {result.returncode}:\n{script}"
                                    f"\n--- stdout\n{result.stdout[-3000:]}"
                                    f"\n--- stderr\n{result.stderr[-3000:]}")
