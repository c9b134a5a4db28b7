"""`dmmp-rec COMMAND [options] [key.path=value ...]`: one entry point, one module per command.

Each command module in `dmmp_rec.commands` defines `HELP`, `add_arguments(parser)` and
`run(args) -> int`. Commands that take `--config` also take dotted overrides after their
options, validated exactly like the file (`dmmp-rec train --config F train.max_steps=20`).
Bad input raises a `DmmpError`: one line on stderr, exit code 2, for every command; so does a
path the operating system refuses (an `OSError` naming a file: no such folder, no permission).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from types import ModuleType
from typing import Any, NoReturn

from dmmp_rec.commands.option_types import OptionError
from dmmp_rec.config import DmmpConfig, load_config
from dmmp_rec.console import benign_warnings
from dmmp_rec.errors import EXIT_USER_ERROR, DmmpError

COMMANDS = {
    "synth": "dmmp_rec.commands.synth",
    "convert-aliccp": "dmmp_rec.commands.convert_aliccp",
    "plan": "dmmp_rec.commands.plan",
    "train": "dmmp_rec.commands.train",
    "eval": "dmmp_rec.commands.evaluate",
    "export": "dmmp_rec.commands.export",
    "retrieve": "dmmp_rec.commands.retrieve",
    "compare": "dmmp_rec.commands.compare",
    "demo": "dmmp_rec.commands.demo",
}


# a value that starts with "-" but is a number, or a comma-separated list of them: -2, -0.5,
# -1e-3, -inf, "-inf,-2,0,2,inf" (argparse's own pattern knows no inf, exponent or list, and
# would take `--betas -inf,0` for an unknown option)
_NUMBER = r"(inf|\d+(\.\d*)?([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)"
NEGATIVE_NUMBERS = re.compile(rf"^-{_NUMBER}(\s*,\s*[-+]?{_NUMBER})*$", re.IGNORECASE)


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are `OptionError`s, so a bad option prints the same one
    line as any other bad input (argparse's own would print the usage and a second line)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBERS  # no option of ours looks like one

    def error(self, message: str) -> NoReturn:
        raise OptionError(self.prog, message.removeprefix("argument "))


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The shared `--config FILE` option and trailing `key.path=value` overrides."""
    parser.add_argument("--config", required=required, help="YAML config (configs/*.yaml)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.path=value",
        help="dotted config overrides, e.g. train.max_steps=20",
    )


def config_from_args(args: argparse.Namespace) -> DmmpConfig:
    return load_config(args.config, args.overrides)


def available_commands() -> dict[str, ModuleType]:
    """The command modules present in this install; a module that imports something missing
    is a bug and raises."""
    modules = {}
    for name, module in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    return modules


def build_parser(modules: dict[str, ModuleType]) -> OneLineParser:
    """`dmmp-rec` with one subcommand per module, each adding its own options."""
    parser = OneLineParser(prog="dmmp-rec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in modules.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    benign_warnings.install()
    modules = available_commands()
    parser = build_parser(modules)
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # named with the command, as every other refused option is
            raise OptionError(f"dmmp-rec {args.command}", f"unknown option(s): {' '.join(unknown)}")
    except OptionError as e:  # refused while parsing: before any config, data or process
        print(f"{e.prog}: {one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return int(modules[args.command].run(args) or 0)
    except DmmpError as e:  # bad input: the message names the file, row, key or option
        print(f"dmmp-rec {args.command}: {one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:  # a path the system refused (missing folder, no permission)
        if e.filename is None:
            raise
        print(f"dmmp-rec {args.command}: {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_USER_ERROR


def one_line(error: BaseException) -> str:
    """The error's message on one line, so every command reports bad input the same way."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip())


if __name__ == "__main__":
    sys.exit(main())
