"""``python -m bench.gateway [OPTIONS]`` is ``choreo bench gateway [OPTIONS]`` (see its help)."""

from bench import run

if __name__ == "__main__":
    run("gateway")
