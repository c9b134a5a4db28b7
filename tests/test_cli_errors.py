"""Bad input to any command: one `DmmpError`, one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import CONFIG, REPO

from dmmp_rec.cli import available_commands, build_parser, main
from dmmp_rec.commands import option_types
from dmmp_rec.errors import EXIT_USER_ERROR, DmmpError


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_every_project_error_is_a_dmmp_error() -> None:
    from dmmp_rec.config import ConfigError
    from dmmp_rec.data.aliccp.parse import MalformedRowError
    from dmmp_rec.data.id_policy import OutOfRangeIdError
    from dmmp_rec.data.loader import DataError
    from dmmp_rec.distributed.checkpoint import CheckpointError
    from dmmp_rec.distributed.planning.config import PlanError
    from dmmp_rec.serving.requests import RequestError
    from dmmp_rec.serving.weights import ExportError

    for cls in (ConfigError, MalformedRowError, OutOfRangeIdError, DataError, CheckpointError):
        assert issubclass(cls, DmmpError), cls
    for cls in (PlanError, RequestError, ExportError):
        assert issubclass(cls, DmmpError), cls


def test_bad_config_value_exits_2_with_one_line(capsys) -> None:  # noqa: ANN001
    code = main(["train", "--config", str(CONFIG), "train.max_steps=many"])
    assert code == EXIT_USER_ERROR
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert line.startswith("dmmp-rec train: ") and "train.max_steps" in line


def test_export_without_a_run_exits_2_with_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    code = main(["export", "--checkpoint", str(tmp_path / "no_run")])
    assert code == EXIT_USER_ERROR
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("dmmp-rec export: ") and "no config.json in the run directory" in line


def test_bad_option_in_a_subprocess_exits_2_on_stderr(tmp_path: Path) -> None:
    """Through the real entry point: the stream and the exit code a shell script sees."""
    argv = ["eval", "--config", str(CONFIG), "--checkpoint", str(tmp_path), "--k", "10,x"]
    proc = subprocess.run(
        [sys.executable, "-m", "dmmp_rec.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    line = _one_error_line(proc.stderr)
    assert line == "dmmp-rec eval: --k: must be comma-separated integers >= 1, got '10,x'"


# The options a command needs before it reaches the one under test (paths are never opened:
# a bad number must stop the command while its line is parsed).
_BASE = {
    "compare": ["--config", str(CONFIG), "--out", "unused"],
    "convert-aliccp": ["--skeleton", "unused.csv", "--common", "unused.csv"],
    "demo": ["--config", str(CONFIG)],
    "eval": ["--checkpoint", "unused"],
    "export": ["--checkpoint", "unused"],
    "plan": ["--out", "unused.json", "--config", str(CONFIG)],
    "retrieve": ["--export", "unused", "--demo-users", "3"],
}
# (command, option, a value it must refuse): every numeric option of every command
BAD_NUMBERS = [
    ("compare", "--steps", "-1"),
    ("compare", "--steps", "0"),
    ("compare", "--nproc", "0"),
    ("compare", "--seeds", "0"),
    ("compare", "--oracle-users", "-1"),
    ("compare", "--teacher-users", "-1"),
    ("compare", "--threads", "-1"),
    ("compare", "--threads", "two"),
    ("convert-aliccp", "--rows-per-group", "0"),
    ("convert-aliccp", "--rows-per-part", "-5"),
    ("demo", "--nproc", "0"),
    ("demo", "--users", "0"),
    ("eval", "--k", "10,0"),
    ("eval", "--k", "10,x"),
    ("eval", "--oracle-users", "-1"),
    ("eval", "--teacher-users", "-3"),
    ("eval", "--encode-batch", "0"),
    ("eval", "--betas", "0,nan"),
    ("eval", "--betas", "0,big"),
    ("export", "--recall-queries", "0"),
    ("export", "--recall-k", "0"),
    ("export", "--recall-target", "0"),
    ("export", "--recall-target", "1.5"),
    ("export", "--recall-target", "nan"),
    ("plan", "--world-size", "0"),
    ("plan", "--local-world-size", "-8"),
    ("retrieve", "--demo-users", "0"),
    ("retrieve", "-k", "0"),
    ("retrieve", "-k", "2.5"),
    ("retrieve", "--conversion-shift", "nan"),
]
NUMERIC_TYPES = {
    option_types.positive_int,
    option_types.non_negative_int,
    option_types.probability,
    option_types.number,
    option_types.positive_int_list,
    option_types.number_list,
}


@pytest.mark.parametrize(("command", "option", "value"), BAD_NUMBERS)
def test_bad_number_stops_at_parsing_with_one_line(
    command: str,
    option: str,
    value: str,
    capsys,  # noqa: ANN001
    monkeypatch,  # noqa: ANN001
) -> None:
    module = available_commands()[command]

    def must_not_run(args: object) -> int:
        raise AssertionError(f"{command} started with {option} {value}")

    monkeypatch.setattr(module, "run", must_not_run)
    code = main([command, *_BASE[command], option, value])  # "-1" is a value, not an option
    assert code == EXIT_USER_ERROR
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert captured.out == ""
    assert line.startswith(f"dmmp-rec {command}: {option}: must be "), line
    assert line.endswith(f"got {value!r}"), line


def test_every_numeric_option_is_checked_and_has_a_bad_value_case() -> None:
    """A numeric option added without a parse-time check or a case above fails here."""
    sub = next(a for a in build_parser(available_commands())._actions if a.dest == "command")
    found = set()
    for command, parser in sub.choices.items():  # type: ignore[union-attr]
        for action in parser._actions:
            assert action.type not in (int, float), (command, action.option_strings)
            if action.type in NUMERIC_TYPES:
                found.add((command, action.option_strings[0]))
    assert found == {(command, option) for command, option, _ in BAD_NUMBERS}


@pytest.mark.parametrize(
    ("check", "text", "value"),
    [
        (option_types.positive_int, "1", 1),
        (option_types.non_negative_int, "0", 0),
        (option_types.probability, "1", 1.0),
        (option_types.probability, "0.95", 0.95),
        (option_types.number, "-inf", float("-inf")),
        (option_types.number, "0.5", 0.5),
        (option_types.positive_int_list, "10, 50,100", [10, 50, 100]),
        (option_types.number_list, "-inf,0,inf", [float("-inf"), 0.0, float("inf")]),
    ],
)
def test_good_numbers_pass_through(check, text: str, value: object) -> None:  # noqa: ANN001
    assert check(text) == value


def test_a_missing_required_option_is_one_line_too(capsys) -> None:  # noqa: ANN001
    assert main(["plan", "--config", str(CONFIG)]) == EXIT_USER_ERROR
    line = _one_error_line(capsys.readouterr().err)
    assert line == "dmmp-rec plan: the following arguments are required: --out"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--local-world-size", "5"],
            "local world size (--local-world-size, or the job's ranks per host): "
            "12 ranks cannot be split into hosts of 5",
        ),
        (
            ["--device", "cuda"],
            "ranks per host (default 8 on cuda; give --local-world-size): "
            "12 ranks cannot be split into hosts of 8",
        ),
    ],
)
def test_plan_names_where_the_ranks_per_host_came_from(
    extra: list[str],
    message: str,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    out = tmp_path / "p.json"
    argv = ["plan", "--config", str(CONFIG), "--out", str(out), "--world-size", "12", *extra]
    assert main(argv) == EXIT_USER_ERROR
    assert _one_error_line(capsys.readouterr().err) == f"dmmp-rec plan: {message}"
    assert not out.exists()


def test_train_without_data_exits_2_with_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    missing = tmp_path / "no_data"
    argv = ["train", "--config", str(CONFIG), f"data.path={missing}", f"train.out={tmp_path}/r"]
    assert main(argv) == EXIT_USER_ERROR
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"dmmp-rec train: no Parquet files in {missing / 'train'}"), line


def test_a_missing_input_is_still_a_file_not_found_error() -> None:
    """Code that tolerates a missing file (`except FileNotFoundError`) keeps doing so."""
    from dmmp_rec.data.schema import split_files
    from dmmp_rec.data.synthetic.world import GroundTruth

    for load in (lambda: split_files("/nonexistent", "train"), lambda: GroundTruth.load("/no")):
        with pytest.raises(FileNotFoundError) as e:
            load()
        assert isinstance(e.value, DmmpError)


def test_an_output_path_the_system_refuses_is_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    not_a_folder = tmp_path / "a_file"
    not_a_folder.write_text("")
    argv = ["plan", "--config", str(CONFIG), "--world-size", "2"]
    assert main([*argv, "--out", str(not_a_folder / "p.json")]) == EXIT_USER_ERROR
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"dmmp-rec plan: {not_a_folder}: "), line  # then the OS's reason


def test_export_of_a_missing_checkpoint_names_the_checkpoint(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Not the data: the checkpoint is checked first, as it is what the user just typed."""
    argv = ["export", "--config", str(CONFIG), "--checkpoint", str(tmp_path / "no_run")]
    assert main([*argv, "--out", str(tmp_path / "out"), f"data.path={tmp_path}"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"dmmp-rec export: {tmp_path / 'no_run'}: no checkpoint found"), line
    assert not (tmp_path / "out").exists()


def test_negative_numbers_and_inf_are_values_not_options() -> None:
    """As the docs write them: `--betas -inf,-2,0,2,inf`, `--conversion-shift -inf`."""
    parser = build_parser(available_commands())
    args = parser.parse_args(["eval", "--checkpoint", "r", "--betas", "-inf,-2,0,2.5,inf"])
    assert args.betas == [float("-inf"), -2.0, 0.0, 2.5, float("inf")]
    for text, value in [("-inf", float("-inf")), ("-1e-3", -0.001), ("-.5", -0.5), ("-2", -2.0)]:
        argv = ["retrieve", "--export", "e", "--demo-users", "2", "--conversion-shift", text]
        assert parser.parse_args(argv).conversion_shift == value


def test_an_unknown_option_is_named_with_its_command(capsys, monkeypatch) -> None:  # noqa: ANN001
    module = available_commands()["train"]
    monkeypatch.setattr(module, "run", lambda args: pytest.fail("train started"))
    assert main(["train", "--config", str(CONFIG), "--max-steps", "3"]) == EXIT_USER_ERROR
    line = _one_error_line(capsys.readouterr().err)
    assert line == "dmmp-rec train: unknown option(s): --max-steps"
