"""``python -m flujo`` is the ``flujo`` command."""

from flujo.cli import main

if __name__ == "__main__":
    main()
