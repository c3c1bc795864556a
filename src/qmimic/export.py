"""``python -m qmimic.export ckpt=PATH ...``: see :mod:`qmimic.cli.export`."""

if __name__ == "__main__":
    from qmimic.cli.export import main

    main()
