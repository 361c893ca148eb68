"""Every command's --help: one meaning per short option, choices listed, examples at the end."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import typer
from typer.testing import CliRunner

from caloforge.cli import app

CHOICES = {  # options whose values come from a fixed set, and the values their help must show
    "mode": ("fast", "full"),
    "preset": ("auto", "cpu", "paper"),
    "device": ("auto", "cpu", "cuda"),
    "backend": ("torch", "onnxruntime"),
    "order": ("calochallenge", "par04"),
    "precision": ("auto", "fp32", "bf16"),
    "particle": ("photon", "electron", "pion"),
    "family": ("gan", "flow", "diffusion", "vae", "parametric"),
    "fmt": ("onnx",),
}


def _commands(command=None, prefix=()):
    command = command or typer.main.get_command(app)
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*prefix, name))
    else:
        yield prefix, command


COMMANDS = list(_commands())


def _help(words):
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_walked():
    names = {" ".join(words) for words, _ in COMMANDS}
    assert {"demo", "simulate", "train", "generate", "evaluate", "leaderboard", "bench", "export", "info", "env",
            "campaign run", "campaign report"} <= names


def test_no_short_option_has_two_meanings():
    meanings = defaultdict(set)
    for _, command in COMMANDS:
        for param in command.params:
            if param.param_type_name != "option":
                continue
            longs = [o for o in param.opts if o.startswith("--")]
            for short in (o for o in param.opts if re.fullmatch(r"-[A-Za-z]", o)):
                meanings[short].add(longs[0])
    assert {s: m for s, m in meanings.items() if len(m) > 1} == {}


@pytest.mark.parametrize("words", [words for words, _ in COMMANDS], ids=lambda w: " ".join(w))
def test_help_lists_choices_shows_flags_and_ends_with_examples(words):
    text = _help(list(words))
    command = dict((w, c) for w, c in COMMANDS)[words]
    for param in command.params:
        if param.param_type_name == "option" and param.name in CHOICES and not param.hidden:
            long = next(o for o in param.opts if o.startswith("--"))
            line = next(ln for ln in text.splitlines() if re.match(rf"\s+(-\w, )?{long}[ ,<]", ln))
            assert all(choice in line for choice in CHOICES[param.name]), line
    assert "<bool>" not in text  # flags are shown as flags
    assert text.rstrip().rsplit("Options:", 1)[1].count("Examples:") == 1, text  # after the options
    assert f"caloforge {' '.join(words)}" in text.rsplit("Examples:", 1)[1]


def test_train_help_says_a_budget_is_needed_and_markup_is_not_eaten():
    assert "--max-iterations" in _help(["train"]) and "budget is required" in _help(["train"])
    assert "bf16" in _help(["evaluate"])


def test_renamed_options_keep_their_old_spelling_hidden(tmp_path):
    assert "--n-per-energy" in _help(["generate"]) and "--n " not in _help(["generate"])
    assert "--family" in _help(["train"]) and "--model " not in _help(["train"])
    assert "--max-minutes" in _help(["demo"]) and "--minutes " not in _help(["demo"])
