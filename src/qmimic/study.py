"""``python -m qmimic.study --phase tuning|confirmation ...``: see :mod:`qmimic.cli.study`."""

if __name__ == "__main__":
    from qmimic.cli.study import main

    main()
