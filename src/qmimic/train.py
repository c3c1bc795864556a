"""``python -m qmimic.train``: see :mod:`qmimic.cli.train`."""

if __name__ == "__main__":
    from qmimic.cli.train import main

    main()
