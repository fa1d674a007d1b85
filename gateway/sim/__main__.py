"""`python -m gateway.sim`: the simulate command on its own, for demos and tests."""

import argparse
import sys

from gateway.sim.cli import add_arguments, run

parser = argparse.ArgumentParser(prog="python -m gateway.sim", description="Serve simulated BCPM boards on a pty.")
add_arguments(parser)
sys.exit(run(parser.parse_args()))
