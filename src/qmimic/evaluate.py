"""``python -m qmimic.evaluate``: see :mod:`qmimic.cli.evaluate`."""

if __name__ == "__main__":
    from qmimic.cli.evaluate import main

    main()
