"""``python -m qmimic.pipeline``: see :mod:`qmimic.cli.pipeline`."""

if __name__ == "__main__":
    from qmimic.cli.pipeline import main

    main()
