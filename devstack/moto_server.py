"""A real moto server over HTTP on a free loopback port, for tests and molecule.

    with MotoServer.start() as moto:
        client = boto3.client("elasticache", **moto.client_kwargs())

It is the embedded stand-in for AWS (ElastiCache, CloudWatch, SNS, KMS, Secrets
Manager, EC2, IAM, Logs). ``reset()`` wipes its state between tests.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import urllib.request

from .ports import free_port
from .processes import Stoppable, stop_process, wait_until_ready

REGION = "ap-northeast-1"
# moto accepts any credentials; these keep boto3 from looking for real ones.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


def moto_server_command(port: int) -> list[str]:
    binary = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if not binary:
        raise RuntimeError(
            "moto_server is not installed: run 'make setup' (moto[server] is a dev dependency)"
        )
    return [binary, "-H", "127.0.0.1", "-p", str(port)]


@dataclasses.dataclass
class MotoServer(Stoppable):
    port: int
    process: subprocess.Popen

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, port: int | None = None, timeout: float = 30.0) -> MotoServer:
        port = port or free_port()
        process = subprocess.Popen(
            moto_server_command(port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **FAKE_CREDENTIALS},
        )
        server = cls(port, process)
        try:
            server.wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_ready(self, timeout: float) -> None:
        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=1):
                    return True
            except OSError:
                return False

        wait_until_ready(answers, what=f"moto_server on {self.endpoint_url}", timeout=timeout,
                         process=self.process)

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def client_kwargs(self) -> dict:
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def module_args(self) -> dict:
        """The amazon.aws connection options for a module under test: client_kwargs() by their names."""
        names = {"region_name": "region", "aws_access_key_id": "access_key",
                 "aws_secret_access_key": "secret_key"}
        return {names.get(name, name): value for name, value in self.client_kwargs().items()}

    def stop(self) -> None:
        stop_process(self.process)
