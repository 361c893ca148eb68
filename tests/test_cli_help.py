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
    assert "--classifier-minutes" in _help(["evaluate"]) and "--max-minutes" not in _help(["evaluate"])
    assert "--max-minutes" in _help(["leaderboard"]) and "--minutes-per-model" not in _help(["leaderboard"])


def _options(command):
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            yield next(o for o in param.opts if o.startswith("--")), param


def test_every_option_has_one_meaning_and_every_meaning_one_name():
    """Each option name is in the vocabulary, its help says the vocabulary's meaning, and no meaning has two names."""
    from caloforge.cli.common import DEPRECATED, VOCABULARY

    meanings = [meaning for meaning, _ in VOCABULARY.values()]
    assert len(set(meanings)) == len(meanings)  # one meaning, one name
    wrong = []
    for words, command in [((), typer.main.get_command(app)), *COMMANDS]:
        for long, param in _options(command):
            if long not in VOCABULARY:
                wrong.append(f"{' '.join(words)} {long}: not in cli.common.VOCABULARY")
                continue
            help_text = (param.help or "").lower()
            if not any(word in help_text for word in VOCABULARY[long][1]):  # the same name, another meaning
                wrong.append(f"{' '.join(words)} {long}: help '{param.help}' is not '{VOCABULARY[long][0]}'")
            for opt in param.opts:  # a second visible spelling must not be another option's name
                assert opt == long or opt not in VOCABULARY, (words, opt)
        for old, new in DEPRECATED.get(words[-1] if words else "", {}).items():
            assert new in dict(_options(command)), (words, new)
            assert old not in dict(_options(command)), (words, old)
    assert wrong == []


def test_writing_commands_take_out_and_devices_default_to_auto():
    for words, command in COMMANDS:
        options = dict(_options(command))
        if "--device" in options:
            assert options["--device"].default == "auto", words
        if "--force" in options:  # the commands that write files
            assert "-o" in options["--out"].opts, words


@pytest.mark.parametrize(("old", "new"), [("--max-minutes", "--classifier-minutes"),
                                          ("--max-showers", "--classifier-showers")])
def test_a_deprecated_spelling_still_works_and_says_the_new_name(tmp_path, old, new):
    # the value reaches the new option: a bad value gives the new option's error, after the one deprecation line
    value = "-1" if old == "--max-minutes" else "x"
    result = CliRunner().invoke(app, ["evaluate", "-r", "r.h5", "-i", "g.h5", old, value])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert f"caloforge: {old} is deprecated, use {new}" in lines[0]
    assert lines.count(lines[0]) == 1
    assert new in result.output.split("\n", 1)[1]
    assert old + " " not in _help(["evaluate"])


def test_choices_and_names_are_case_insensitive(tmp_path):
    # --family GAN is gan: the run fails later, on the missing data file, not on the family
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "none.h5"), "-o", str(tmp_path / "run"),
                                      "--family", "GAN", "--preset", "CPU", "--max-iterations", "1"])
    assert result.exit_code == 2, result.output
    assert "none.h5" in result.output and "family" not in result.output.lower()
    result = CliRunner().invoke(app, ["evaluate", "-r", "r.h5", "-i", "g.h5", "--mode", "FULL",
                                      "--classifier-minutes", "0"])
    assert "expected --classifier-minutes > 0" in result.output  # FULL was accepted as full
    out = tmp_path / "s.h5"
    result = CliRunner().invoke(app, ["simulate", "-g", "ds1-photons", "-p", "PHOTON", "--physics", "GFLASH",
                                      "--n", "10", "--energies", "1024", "-o", str(out)])
    assert result.exit_code == 0 and out.is_file(), result.output


def test_library_parameter_names_become_option_names():
    from caloforge.cli.common import cli_names

    assert cli_names("expected a budget (max_iterations or max_minutes) but got neither") == \
        "expected a budget (--max-iterations or --max-minutes) but got neither"
    assert cli_names("in /data/max_minutes/x.h5: max_showers") == "in /data/max_minutes/x.h5: --classifier-showers"


def test_python_warnings_are_one_clean_line(monkeypatch):
    import subprocess
    import sys
    import warnings

    from caloforge.cli.common import install_warning_format

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    install_warning_format()
    assert warnings.formatwarning("outside the fitted\n range", RuntimeWarning, "/src/x.py", 3, "warn(...)") == \
        "caloforge: warning (RuntimeWarning): outside the fitted range\n"
    with pytest.warns(RuntimeWarning, match="still recorded"):  # record mode (pytest.warns) is not broken
        warnings.warn("still recorded", RuntimeWarning, stacklevel=1)
    code = ("import warnings; from caloforge.cli.common import install_warning_format; install_warning_format(); "
            "warnings.warn('the validation sample has fewer\\n than 200 showers')")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err.splitlines() == ["caloforge: warning: the validation sample has fewer than 200 showers"]
