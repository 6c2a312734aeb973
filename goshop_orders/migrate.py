"""``python -m goshop_orders.migrate``: the seed's goose commands for the orders schema."""

import sys
from pathlib import Path

from goshop_common.db.migrate import run

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")


def main(argv: list[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, ALEMBIC_INI, prog="python -m goshop_orders.migrate")


if __name__ == "__main__":
    sys.exit(main())
