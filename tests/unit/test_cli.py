"""The command line's shape: where options may stand (edge_sched/cli.py)."""

from __future__ import annotations

import pytest

from edge_sched.cli import _parser


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "x.toml", "run"],
        ["run", "--config", "x.toml"],
        ["config", "--sources", "--config", "x.toml"],
        ["scheduler-config", "--config", "x.toml", "--no-node-cache"],
    ],
)
def test_config_is_taken_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert _parser().parse_args(argv).config == "x.toml"


def test_config_after_the_subcommand_wins_over_the_one_before() -> None:
    assert _parser().parse_args(["--config", "a.toml", "run", "--config", "b.toml"]).config == "b.toml"


def test_without_config_it_is_none() -> None:
    assert _parser().parse_args(["run"]).config is None
