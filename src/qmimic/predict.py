"""``python -m qmimic.predict``: see :mod:`qmimic.cli.predict`."""

if __name__ == "__main__":
    from qmimic.cli.predict import main

    main()
