"""``python -m bench.saga [OPTIONS]`` is ``choreo bench saga [OPTIONS]`` (see its help)."""

from bench import run

if __name__ == "__main__":
    run("saga")
