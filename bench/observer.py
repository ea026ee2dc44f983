"""``python -m bench.observer [OPTIONS]`` is ``choreo bench observer [OPTIONS]`` (see its help)."""

from bench import run

if __name__ == "__main__":
    run("observer")
