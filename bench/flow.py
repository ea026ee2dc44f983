"""``python -m bench.flow [OPTIONS]`` is ``choreo bench flow [OPTIONS]`` (see its help)."""

from bench import run

if __name__ == "__main__":
    run("flow")
