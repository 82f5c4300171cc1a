"""Creates the calls table and the idempotency table, as template.yaml defines them, in a DynamoDB Local
of your own (for the Docker-based `sam local` flow): python -m dev.create_table --endpoint http://localhost:8000"""

from __future__ import annotations

import argparse

import boto3

from dev.template import create_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", default="http://localhost:8000")
    parser.add_argument("--table-name", default="millis-sip-bridge-calls")
    parser.add_argument("--idempotency-table-name", default="millis-sip-bridge-idempotency")
    parser.add_argument("--region", default="us-west-2")
    args = parser.parse_args()
    client = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - DynamoDB Local accepts any credentials
    )
    print(f"created {create_table(client, table_name=args.table_name)} at {args.endpoint}")
    idempotency = create_table(client, "IdempotencyTable", table_name=args.idempotency_table_name)
    print(f"created {idempotency} at {args.endpoint}")


if __name__ == "__main__":
    main()
