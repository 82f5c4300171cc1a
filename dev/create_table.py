"""Creates the template's tables (calls, idempotency, number routes), as template.yaml defines them, in a
DynamoDB Local of your own (for the Docker-based `sam local` flow):
python -m dev.create_table --endpoint http://localhost:8000 (names millis-sip-bridge-calls, -idempotency, -numbers,
as events/env.json expects)."""

from __future__ import annotations

import argparse

from dev.function_env import Tables
from dev.template import create_tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", default="http://localhost:8000")
    parser.add_argument("--prefix", default="millis-sip-bridge", help="table names: <prefix>-calls, ...")
    parser.add_argument("--region", default="us-west-2")
    args = parser.parse_args()
    tables = Tables.named(args.prefix)
    create_tables(args.endpoint, tables, region=args.region)
    for name in (tables.calls, tables.idempotency, tables.numbers):
        print(f"created {name} at {args.endpoint}")


if __name__ == "__main__":
    main()
