"""``python -m bench.hop [OPTIONS]`` is ``choreo bench hop [OPTIONS]`` (see its help)."""

from bench import run

if __name__ == "__main__":
    run("hop")
