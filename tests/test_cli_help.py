"""Every command-line flag explains itself: help text beyond its default, choices where the values are a set."""
import argparse
import importlib

import pytest

CLIS = ["radioml.synthetic", "radioml", "train", "train.compare", "train.table3", "train.report", "train.fidelity",
        "train.import_sandbox", "export.to_finn", "export.check", "export.finn_env", "build", "build.compare",
        "driver.validate", "driver.wheel", "compress"]


class Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def parser_of(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a command's main() builds (captured when it starts parsing)."""
    def capture(self, *a, **k):
        raise Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    packages = ("radioml", "train", "build", "compress")  # run as python -m PACKAGE
    mod = importlib.import_module(f"{module}.__main__" if module in packages else module)
    with pytest.raises(Captured) as e:
        mod.main([])
    return e.value.parser


def _actions(parser):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                yield from _actions(sub)
        elif not isinstance(a, argparse._HelpAction):
            yield a


@pytest.mark.parametrize("module", CLIS)
def test_every_flag_has_help_beyond_its_default(module, monkeypatch):
    bare = [a.option_strings or a.dest for a in _actions(parser_of(module, monkeypatch))
            if not a.help or a.help.strip().startswith("(default")]
    assert bare == [], f"{module}: flags without help: {bare}"


def test_enumerated_training_fields_offer_their_choices_and_booleans_refuse_other_words(monkeypatch):
    actions = {a.dest: a for a in _actions(parser_of("train", monkeypatch))}
    assert actions["prune.strategy"].choices == ("none", "imp", "imp-converge", "fmp", "precision")
    assert actions["prune.structure"].choices == ("unstructured", "filters", "hybrid")
    assert actions["prune.scope"].choices == ("global", "layer")
    assert actions["data.feedback_split"].choices == ("val", "test")
    assert actions["precision.objective"].choices == ("cost", "hardware")
    assert "a GPU if there is one" in actions["device"].help
    with pytest.raises(argparse.ArgumentTypeError, match="expected true or false, got 'maybe'"):
        actions["data.resample_subset"].type("maybe")
    assert actions["data.resample_subset"].type("True") is True
