"""The ``lr-finder`` command. Argument parsing only: every command calls the public API."""

from __future__ import annotations

import sys

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lr-finder")
def cli() -> None:
    """Find a good learning rate for a PyTorch model with the LR range test."""


@cli.command()
@click.option("--out", "out_dir", default="lr_finder_demo", show_default=True, help="Folder for the outputs.")
@click.option("--num-iter", default=100, show_default=True, type=click.IntRange(min=2), help="Steps of the sweep.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def demo(out_dir: str, num_iter: int, no_progress: bool) -> None:
    """Run a real range test on scikit-learn's bundled digits data (no download).

    Writes lr_finder_plot.png, lr_finder_log.csv, best_lr.txt and lr_finder_summary.json into OUT.
    """
    from .demo import run_demo

    try:
        lr = run_demo(out_dir, num_iter=num_iter, show_progress=not no_progress)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Suggested learning rate: {lr:.3e}" if lr is not None else "No learning rate could be suggested.")
    click.echo(f"Outputs written to {out_dir}/")
    if lr is None:
        sys.exit(1)


def main() -> None:
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
