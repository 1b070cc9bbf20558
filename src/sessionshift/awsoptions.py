"""The AWS options of the controller-side services (the alarm watcher, the metrics publisher).

Both reach CloudWatch (the watcher SNS too) with boto3's credential chain; the endpoint is a
moto server in the local setup.
"""

from __future__ import annotations

import argparse
import os

DEFAULT_REGION = "ap-northeast-1"


def add_aws_options(parser: argparse.ArgumentParser, services: str) -> None:
    """--endpoint-url and --region, defaulting to boto3's own environment variables."""
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                        help=f"{services} endpoint (a moto server in the local setup)")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", DEFAULT_REGION))


def aws_client(args: argparse.Namespace, service: str):
    """A boto3 client for *service* at the endpoint and region that add_aws_options() parsed."""
    import boto3  # only the services that talk to AWS need it

    return boto3.client(service, region_name=args.region, endpoint_url=args.endpoint_url)
